"""Checkpoint storage: savers built from a URL."""

from checkpoints.savers import open_saver, sqlite_path

__all__ = ["open_saver", "sqlite_path"]
