"""Wyoming TTS server that streams Piper speech chunk by chunk."""

__version__ = "0.1.0"
