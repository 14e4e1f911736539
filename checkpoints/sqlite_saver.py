"""`AsyncSqliteSaver` with compact channel versions (`keel.checkpoints.versions`) and
compressed values (`keel.checkpoints.compression`).

SQLite keeps every channel value inside its checkpoint row, so versions need no random tag.
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from keel.checkpoints.compression import compressed
from keel.checkpoints.versions import CompactVersions

__all__ = ["KeelSqliteSaver"]


class KeelSqliteSaver(CompactVersions, AsyncSqliteSaver):
    """The library's SQLite saver, writing compact versions and compressed values."""

    tagged_versions = False

    def __init__(self, conn: Any, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(conn, serde=compressed(serde))
