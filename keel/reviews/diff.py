"""Unified diffs as hunks with the head side's line numbers, the way a reviewer reads them.

A comment is posted on a line of the file at head, so every added or context line carries
its line number there (`+ 14| code`); removed lines carry none (`-   | code`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Hunk", "added_lines", "parse_hunks", "render_hunk"]

_HEADER = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass(frozen=True)
class Hunk:
    header: str
    lines: tuple[tuple[str, int | None, str], ...]
    """(op, line number at head or None for a removed line, text); op is `+`, `-` or ` `."""


def parse_hunks(diff: str) -> list[Hunk]:
    """The hunks of one file's unified diff (file headers and `\\ No newline` are dropped)."""
    hunks: list[Hunk] = []
    header: str | None = None
    lines: list[tuple[str, int | None, str]] = []
    number = 0
    for raw in diff.splitlines():
        found = _HEADER.match(raw)
        if found:
            if header is not None:
                hunks.append(Hunk(header, tuple(lines)))
            header, lines, number = raw, [], int(found.group(1))
            continue
        if header is None or not raw or raw[0] not in "+- ":
            continue
        op, text = raw[0], raw[1:]
        if op == "-":
            lines.append((op, None, text))
        else:
            lines.append((op, number, text))
            number += 1
    if header is not None:
        hunks.append(Hunk(header, tuple(lines)))
    return hunks


def render_hunk(hunk: Hunk) -> str:
    """The hunk as text: its header, then `op line| text` per line."""
    width = max((len(str(n)) for _, n, _ in hunk.lines if n is not None), default=1)
    out = [hunk.header]
    for op, number, text in hunk.lines:
        where = str(number).rjust(width) if number is not None else " " * width
        out.append(f"{op} {where}| {text}")
    return "\n".join(out)


def added_lines(hunks: list[Hunk]) -> set[int]:
    """Line numbers at head that the change added or modified."""
    return {n for h in hunks for op, n, _ in h.lines if op == "+" and n is not None}
