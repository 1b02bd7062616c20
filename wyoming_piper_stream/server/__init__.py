"""The Wyoming server: event handler, speech jobs, the step scheduler, and its settings."""
