"""Short channel versions for Keel's savers, ordered after every version already stored.

A checkpoint stores the version of every channel (`channel_versions`) and, per node, the
versions it last read (`versions_seen`). The stock savers make each version a ~50-character
string (`00000000000000000000000000000012.0.8444218515250481`: a 32-digit counter, then a
random float), so with the agent state's ~30 channels the versions were ~2 KB of every
checkpoint: over half of what a turn stored.

A compact version is the same counter written short, after a letter that says how many
digits follow (`a1` … `a9`, `b10` … `b99`, `c100` …), so comparing two versions as strings
(as LangGraph does) still compares the counters. A letter sorts after every digit, so a
compact version is greater than every stock version, and a thread written by an earlier Keel
(or a stock saver) goes on: the next version counts on from the stored counter and compares
greater than everything that thread holds. The converse does not hold: a stock saver cannot
continue a thread Keel's savers wrote (it cannot parse the counter and fails loudly).

Where channel values are stored apart, keyed by (channel, version) — Postgres'
`checkpoint_blobs`, the memory saver's blobs — two branches of a forked thread reach the
same counter with different values, so the version also carries a short random tag
(`b12.k3Xq9Z`, ~36 bits) that keeps their keys apart, as the stock float does. SQLite keeps
every value inside its checkpoint, and needs no tag.
"""

from __future__ import annotations

import random
import string
from typing import Any

__all__ = ["CompactVersions", "compact_version", "counter_of"]

_TAG_ALPHABET = string.digits + string.ascii_letters
TAG_LENGTH = 6
"""Random base-62 characters after the counter where values are keyed by version."""
_MAX_DIGITS = 26


def counter_of(version: str | int | float | None) -> int:
    """The counter a stored version carries: 0 for none, the int of a stock
    `000…012.0.84…` version, the digits after the length letter of a compact one."""
    if version is None:
        return 0
    if isinstance(version, (int, float)):
        return int(version)
    head = version.split(".", 1)[0]
    if head[:1].isdigit():
        return int(head)
    return int(head[1:])


def compact_version(counter: int, *, tagged: bool) -> str:
    """`counter` as a compact version (`counter` ≥ 1), with a random tag if `tagged`."""
    digits = str(counter)
    if counter < 1 or len(digits) > _MAX_DIGITS:
        raise ValueError(f"a channel version counter must be 1..10^{_MAX_DIGITS}, got {counter}")
    head = chr(ord("a") + len(digits) - 1) + digits
    if not tagged:
        return head
    return head + "." + _tag()


_TAGS = len(_TAG_ALPHABET) ** TAG_LENGTH


def _tag() -> str:
    """`TAG_LENGTH` random base-62 characters. From `random`'s shared generator, as the
    stock versions' float is (reseeded in a forked child); a tag keeps two branches' values
    apart, it guards no secret, and `secrets` would read the OS for every character."""
    n = random.randrange(_TAGS)
    chars = []
    for _ in range(TAG_LENGTH):
        n, digit = divmod(n, len(_TAG_ALPHABET))
        chars.append(_TAG_ALPHABET[digit])
    return "".join(chars)


class CompactVersions:
    """Mixin for a saver: `get_next_version` makes compact versions (see the module note).
    `tagged_versions` is True for savers that key stored values by version."""

    tagged_versions: bool = True

    def get_next_version(self, current: Any, channel: None = None) -> str:
        return compact_version(counter_of(current) + 1, tagged=self.tagged_versions)
