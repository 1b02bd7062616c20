"""Our own status in the info event: whether the default voice is usable.

Home Assistant and other Wyoming clients ignore the extra key; the health check
reads it. Kept apart from the handler so the health check imports almost nothing.
"""

from __future__ import annotations

STATUS_KEY = "wyoming_piper_stream"
"""Key of the status object in the info event's data."""

DEFAULT_VOICE = "default_voice"
"""Its entry for the default voice: ``{"name", "ready", "state"}``."""
