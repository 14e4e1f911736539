"""Verified question → SQL examples, and the few most like a question.

A small model writes better SQL when it sees a worked example of the same kind of question on
the same database (the join for "revenue from customers in IT", `COUNT(DISTINCT o.id)` for an
average order value) than from any instruction. So an agent whose tools include `sql_query`
can have a set of example pairs, and the planned flow (`keel.nodes._planned`) shows the
`SHOWN` most similar to the question before it, in the prompt where the model writes its query.

Where they come from (`KEEL_SQL__EXAMPLES`): a JSON file,

    {"written_on": "2026-12-06",
     "examples": [{"question": "How many cancelled orders were there in April 2026?",
                   "sql": "SELECT COUNT(*) FROM orders WHERE status = 'cancelled' AND …"}]}

(`written_on`, optional: the day relative periods such as "last month" were counted from);
unset, the bundled sample database's own (`keel.tools.sample_db_examples`) when the tool reads
that sample, none otherwise; `off`, none. Each example is checked when loaded (one SELECT over
allowed tables and functions, as `sql_query` would accept it; a bad one is a `ConfigError`
naming it), and `python -m keel.tools.sql_examples [FILE]` also runs each on the database.

Similarity is lexical: TF-IDF cosine over the words and word pairs of the questions, with
numbers, dates, months, quoted names, capitalised names and codes masked, so "How many
cancelled orders were there in April 2026?" matches "… refunded orders … in June 2025". No
embedding model is available offline, and over a few dozen short questions of one database
the words that differ between kinds of question ("average", "percentage", "never") are what
tell them apart; a dozen lines of scoring beat a dependency here.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

from keel.config import Settings, load_settings
from keel.errors import ConfigError, KeelError
from keel.tools.sql import execute_readonly, resolve_target, validate_select

__all__ = [
    "SHOWN",
    "ExampleSet",
    "SqlExample",
    "check_on_database",
    "examples_for",
    "load_examples",
    "mask",
    "similar",
]

SHOWN = 3
"""Examples shown with a question."""
OFF = "off"
"""`KEEL_SQL__EXAMPLES=off`: no examples, not even the sample database's."""


@dataclass(frozen=True)
class SqlExample:
    """One verified pair: a question and the SQL that answers it."""

    question: str
    sql: str
    source: str = ""
    """Where it came from (the bundled examples: the tuning question it was written from)."""

    @property
    def label(self) -> str:
        """How the trace names it: its source, or the start of its question."""
        return self.source or self.question[:80]


@dataclass(frozen=True)
class ExampleSet:
    examples: tuple[SqlExample, ...] = ()
    written_on: date | None = None
    """The day relative periods in the examples ("last month") were counted from."""


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
_ISO_DATE = re.compile(r"\b\d{4}-\d\d(?:-\d\d)?\b")
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_MONTH = re.compile(rf"\b(?:{_MONTHS})(?:\s+\d{{4}})?\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_CODE = re.compile(r"\b[A-Z]{2,3}\b")
_NAME = re.compile(r"(?<=[\w,)] )[A-Z][a-z]+(?: [A-Z][a-z]+)*")
_WORD = re.compile(r"[a-z]+|%")
_STOP = frozenset({
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "by", "and", "or", "our", "we",
    "us", "their", "its", "it", "be", "been", "this", "that", "these", "with", "as", "there",
})  # fmt: skip


def mask(question: str) -> list[str]:
    """The question's words with the values a template varies replaced by their kind."""
    text = _QUOTED.sub(" qname ", question)
    text = _EMAIL.sub(" qname ", text)
    text = _ISO_DATE.sub(" qdate ", text)
    text = _MONTH.sub(" qmonth ", text)
    text = _NUMBER.sub(" qnum ", text)
    text = _CODE.sub(" qcode ", text)
    text = _NAME.sub(" qname ", text)
    words = [w.removesuffix("s") if len(w) > 3 else w for w in _WORD.findall(text.lower())]
    return ["percent" if w == "%" else w for w in words if w not in _STOP]


def _features(question: str) -> Counter[str]:
    words = mask(question)
    return Counter(words + [f"{a} {b}" for a, b in pairwise(words)])


def similar(question: str, examples: Sequence[SqlExample], k: int = SHOWN) -> list[SqlExample]:
    """The `k` examples most like `question`, most alike first (ties: file order)."""
    if not examples or k <= 0:
        return []
    return list(_ranked(question, tuple(examples))[:k])


@lru_cache(maxsize=256)
def _ranked(question: str, examples: tuple[SqlExample, ...]) -> tuple[SqlExample, ...]:
    index = _index(examples)
    idf, vectors = index
    wanted = _weighted(_features(question), idf)
    scores = [_cosine(wanted, v) for v in vectors]
    order = sorted(range(len(examples)), key=lambda i: -scores[i])
    return tuple(examples[i] for i in order if scores[i] > 0)


@lru_cache(maxsize=8)
def _index(
    examples: tuple[SqlExample, ...],
) -> tuple[dict[str, float], list[dict[str, float]]]:
    counts = [_features(e.question) for e in examples]
    df = Counter(term for c in counts for term in c)
    n = len(examples)
    idf = {term: math.log((n + 1) / (d + 1)) + 1 for term, d in df.items()}
    return idf, [_weighted(c, idf) for c in counts]


def _weighted(counts: Counter[str], idf: dict[str, float]) -> dict[str, float]:
    return {t: c * idf[t] for t, c in counts.items() if t in idf}


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    dot = sum(w * b.get(t, 0.0) for t, w in a.items())
    norm = math.sqrt(sum(w * w for w in a.values())) * math.sqrt(sum(w * w for w in b.values()))
    return dot / norm if norm else 0.0


# --- loading ------------------------------------------------------------------------------------


def _dialect(settings: Settings) -> str:
    url = settings.database_url
    return "sqlite" if url is None or url.startswith("sqlite:") else "postgres"


def examples_for(settings: Settings) -> ExampleSet:
    """The examples of `settings`' SQL database (see the module docstring), each checked."""
    chosen = settings.sql.examples
    tables = tuple(settings.sql.allowed_tables)
    if chosen is None:
        if settings.database_url is not None:
            return ExampleSet()
        return _sample_examples(tables)
    if chosen.strip().lower() == OFF:
        return ExampleSet()
    path = Path(chosen).expanduser()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"KEEL_SQL__EXAMPLES: cannot read {path}: {exc}") from exc
    return _load_checked(str(path), stamp, _dialect(settings), tables)


@lru_cache(maxsize=4)
def _sample_examples(tables: tuple[str, ...]) -> ExampleSet:
    from keel.tools.sample_db_examples import SAMPLE_DB_EXAMPLES, WRITTEN_ON

    for example in SAMPLE_DB_EXAMPLES:
        _check(example, "sqlite", tables, "the sample database's examples")
    return ExampleSet(SAMPLE_DB_EXAMPLES, WRITTEN_ON)


@lru_cache(maxsize=16)
def _load_checked(path: str, stamp: int, dialect: str, tables: tuple[str, ...]) -> ExampleSet:
    loaded = load_examples(Path(path))
    for example in loaded.examples:
        _check(example, dialect, tables, path)
    return loaded


def load_examples(path: Path) -> ExampleSet:
    """The examples of a JSON file (the shape in the module docstring), not yet checked."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SQL examples {path}: cannot read them as JSON: {exc}") from exc
    items = body.get("examples") if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise ConfigError(f'SQL examples {path}: expected {{"examples": [...]}} or a list')
    examples = []
    for number, item in enumerate(items, start=1):
        question = item.get("question") if isinstance(item, dict) else None
        sql = item.get("sql") if isinstance(item, dict) else None
        if not isinstance(question, str) or not isinstance(sql, str) or not question.strip():
            raise ConfigError(f"SQL examples {path}: example {number} needs a question and sql")
        source = item.get("source") or ""
        examples.append(SqlExample(question.strip(), " ".join(sql.split()), str(source)))
    written = body.get("written_on") if isinstance(body, dict) else None
    try:
        written_on = date.fromisoformat(written) if written else None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"SQL examples {path}: written_on is not YYYY-MM-DD") from exc
    return ExampleSet(tuple(examples), written_on)


def _check(example: SqlExample, dialect: str, tables: Sequence[str], where: str) -> None:
    """The example's SQL is one SELECT `sql_query` would accept, or a `ConfigError`."""
    try:
        validate_select(example.sql, dialect=dialect, allowed_tables=tables)
    except KeelError as exc:
        raise ConfigError(f"SQL example {example.label!r} of {where}: {exc.message}") from exc


def check_on_database(settings: Settings, examples: ExampleSet) -> list[tuple[SqlExample, str]]:
    """Run each example on `settings`' database: (example, "N rows" or the database's error)."""
    target = resolve_target(settings)
    out = []
    for example in examples.examples:
        try:
            result = execute_readonly(
                target,
                validate_select(
                    example.sql, dialect=target.dialect, allowed_tables=settings.sql.allowed_tables
                ),
                row_cap=settings.sql.row_cap,
                timeout_s=settings.sql.statement_timeout_s,
                allow_superuser=settings.sql.allow_superuser,
            )
        except KeelError as exc:
            out.append((example, f"error: {exc.message}"))
        else:
            out.append((example, f"{len(result.rows)} rows"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m keel.tools.sql_examples [FILE]`: check the examples (FILE, or the settings'
    `KEEL_SQL__EXAMPLES`) and run each on the configured database; exit 1 if any fails."""
    args = list(sys.argv[1:] if argv is None else argv)
    settings = load_settings()
    if args:
        settings = settings.model_copy(
            update={"sql": settings.sql.model_copy(update={"examples": args[0]})}
        )
    try:
        examples = examples_for(settings)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    failed = 0
    for example, outcome in check_on_database(settings, examples):
        failed += outcome.startswith("error")
        print(f"{outcome:>12}  {example.label}")
    print(f"{len(examples.examples)} examples, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
