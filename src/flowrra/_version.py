"""The installed flowrra version."""

__version__ = "0.2.0"
