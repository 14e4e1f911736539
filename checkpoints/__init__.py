"""Checkpoint storage: savers and the idempotency journal from a URL, and retention."""

from keel.checkpoints.savers import Storage, open_saver, open_storage, sqlite_path

__all__ = ["Storage", "open_saver", "open_storage", "sqlite_path"]
