"""The one error type a client is told about."""


class SpeechError(Exception):
    """A request cannot be served; the message is sent to the client as an ``error`` event."""
