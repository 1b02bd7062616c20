"""What a client is told when a request fails: a message and a stable ``error`` code.

The codes are part of the protocol (clients may match on them), so each is an
explicit string here, never derived from a class name.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """The ``code`` of every ``error`` event the server sends."""

    PROTOCOL = "protocol"
    """An event could not be read (not JSON, bad lengths, too long a line)."""
    REQUEST = "request"
    """A readable event asks for something we refuse (bad text or voice fields, too long)."""
    BUSY = "busy"
    """Too many connections."""
    VOICE = "voice"
    """The voice or speaker is unknown, or its files cannot be loaded."""
    PHONEMIZER = "phonemizer"
    """The text cannot be turned into phonemes (phonemizer missing or failed)."""
    DOWNLOAD = "download"
    """A catalogue voice could not be downloaded."""
    SYNTHESIS = "synthesis"
    """Anything else that went wrong while speaking."""


class SpeechError(Exception):
    """A request cannot be served; the message is sent to the client as an ``error`` event."""

    code: ClassVar[ErrorCode] = ErrorCode.SYNTHESIS
