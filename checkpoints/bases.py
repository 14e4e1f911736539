"""Checkpoints compressed against a base: which base a saver compresses a checkpoint against.

A checkpoint repeats most of the one before it (the same channels, versions and per-run
values, a step's changes apart), and a run writes one per graph step. Keel's SQLite and
Postgres savers compress each checkpoint against a *base*: the plaintext of an earlier
checkpoint of its branch, stored once in the table `keel_checkpoint_bases` (thread,
namespace, random id, value) and never changed (`ZlibCipher`'s `zb:<id>`). A checkpoint
starts a new base (its own plaintext) when it is a run's input checkpoint, when its parent
was not written by the same saver object (a new process, a fork of an old checkpoint), when
the base has served `BASE_USES` checkpoints, and never when it is large (`BASE_MAX`: stored
`+z1` on its own).

A task's packed writes are compressed against the base of the last checkpoint the same
saver object wrote on their thread: the one they belong to, or, under durability "async"
(LangGraph may store a task's writes before their checkpoint), an earlier one's
(`keel.checkpoints.packed_writes`). Since bases never change, rewriting a checkpoint in
place (retention does) or deleting its ancestors leaves every other checkpoint and write
readable; a base is deleted with the last checkpoint or write that uses it. A read loads
the thread's bases the first time one is missing.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

from keel.checkpoints.compression import ZlibCipher

__all__ = ["BASE_MAX", "BASE_USES", "BaseChooser", "Encoded", "base_of"]

BASE_USES = 8
"""Checkpoints compressed against one base before the next checkpoint starts a new one."""
BASE_MAX = 16_384
"""A checkpoint larger than this (serialised) is stored on its own, and is no base."""
_LAST_KEPT = 2048
"""Threads whose last checkpoint (and its base) a saver remembers."""
BASE_MARK = "+zb:"
"""What a stored type holds before the base id (`msgpack+zb:<id>`)."""


def base_of(stored_type: str | None) -> str | None:
    """The base id a stored type names, if any."""
    if not stored_type or BASE_MARK not in stored_type:
        return None
    return stored_type.split(BASE_MARK, 1)[1]


@dataclass(frozen=True)
class Encoded:
    """A checkpoint as stored: its type and bytes, and the base to store with it if new
    (id, type, bytes)."""

    type: str
    blob: bytes
    new_base: tuple[str, str, bytes] | None


class BaseChooser:
    """Picks the base of each checkpoint a saver writes, and compresses it."""

    def __init__(self, serde: Any) -> None:
        self.serde = serde
        self.cipher = cast(ZlibCipher, serde.cipher)
        self._last: OrderedDict[tuple[str, str], tuple[str, str, int]] = OrderedDict()
        """(thread, ns) -> (the last checkpoint id written, its base id, the base's uses)."""

    def encode(
        self,
        thread_id: str,
        ns: str,
        parent_id: str | None,
        checkpoint_id: str,
        value: Any,
        *,
        starts_run: bool = False,
    ) -> Encoded:
        """`value` compressed against its branch's base, or against a new one (itself).
        `starts_run`: the checkpoint is a run's input (`source` "input"); it starts a new
        base, since a run's checkpoints share more with each other than with the run before
        (the bases then fall at the same step of every run, so each turn of a conversation
        stores about the same bytes)."""
        type_, plain = self.serde.serde.dumps_typed(value)
        last = self._last.pop((thread_id, ns), None)
        if starts_run:
            last = None
        if len(plain) > BASE_MAX:
            name, blob = self.cipher.encrypt(plain)
            return Encoded(f"{type_}+{name}", blob, None)
        new_base = None
        if (
            last is not None
            and last[0] == parent_id
            and last[2] < BASE_USES
            and last[1] in self.cipher.bases
        ):
            base_id, uses = last[1], last[2] + 1
        else:
            base_id, uses = secrets.token_urlsafe(9), 1
            self.cipher.add_base(base_id, plain)
            base_cipher, base_blob = self.cipher.encrypt(plain)
            new_base = (base_id, f"{type_}+{base_cipher}", base_blob)
        name, blob = self.cipher.encrypt_against(plain, base_id)
        self._last[(thread_id, ns)] = (checkpoint_id, base_id, uses)
        while len(self._last) > _LAST_KEPT:
            self._last.popitem(last=False)
        return Encoded(f"{type_}+{name}", blob, new_base)

    def base_for(self, thread_id: str, ns: str) -> str | None:
        """The base a task's writes on a thread are compressed against: that of the last
        checkpoint this saver wrote there, if still loaded. Usually the writes' own
        checkpoint; under durability "async" LangGraph may store a task's writes before
        their checkpoint, and the last one's base serves as well (any stored base can be
        read back: the stored type names it, and it is kept while a write uses it)."""
        last = self._last.get((thread_id, ns))
        if last is None or last[1] not in self.cipher.bases:
            return None
        return last[1]

    def add(self, base_id: str, stored_type: str, value: bytes) -> None:
        """A base read from storage."""
        if base_id not in self.cipher.bases:
            plain = self.cipher.decrypt(stored_type.split("+", 1)[1], value)
            self.cipher.add_base(base_id, plain, evict=False)

    def loaded(self) -> list[str]:
        return list(self.cipher.bases)

    def forget(self, thread_id: str) -> None:
        for key in [k for k in self._last if k[0] == thread_id]:
            del self._last[key]
