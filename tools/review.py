"""The code reviewer's tools (`keel.tools.review`): read a change in a git repository, lint
it, and post review comments.

Reads (idempotent): `list_changed_files`, `read_diff` (one file's hunks, with the head
side's line numbers), `read_file` (a file at a revision, line-numbered), `run_linter` (ruff
on the change's Python files as they are at head). Write: `post_review_comment`.

- **Real git**: `git` itself, through `keel.reviews.git`, which checks every repository,
  revision and path first (no folder outside `KEEL_REVIEW__ROOTS`, no `..`, no option
  injection: revisions starting with `-` are refused and paths go after `--`) and runs git
  with a timeout and without hooks, pagers or external diff drivers.
- **Exactly once**: posting is not idempotent, so it goes through the idempotency journal,
  and the row stores `ToolContext.idempotency_key` in a unique column: a repeated post (a
  journal replay, a re-run after a crash) inserts nothing and returns the first row, which
  is also why its `reconcile` hook can answer "not done, run again".
- **Bounded**: at most `KEEL_REVIEW__MAX_FILES` files and `…__MAX_RESULT_CHARS` characters
  per result; a cut result says how to read on (`from_hunk`, `start_line`).
- **Errors**: a wrong repository, revision, path or line is a `ToolInputError` saying what
  to do instead; git or ruff missing is a `ToolFatalError` (the review cannot work); a git
  or ruff timeout and an unreachable reviews database are `ToolTransientError`s (retried).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from keel.errors import ToolFatalError, ToolInputError, ToolTransientError
from keel.reviews.diff import added_lines, parse_hunks, render_hunk
from keel.reviews.git import (
    Change,
    GitTimeout,
    GitUnavailable,
    Repo,
    ReviewInputError,
    check_path,
    open_repo,
)
from keel.reviews.store import open_reviews, post_comment
from keel.tools.registry import Reconciled, Tool, ToolContext, tool

__all__ = [
    "REVIEW_TOOLS",
    "list_changed_files",
    "post_review_comment",
    "read_diff",
    "read_file",
    "run_linter",
]

T = TypeVar("T")
AUTHOR = "code_reviewer"
"""The author of the comments the agent posts."""
LINTED_SUFFIXES = (".py", ".pyi")
NEXT_AFTER_LISTING = (
    "call read_diff for each file that is not deleted, then run_linter, then "
    "post_review_comment once per problem on a changed line"
)
NEXT_AFTER_DIFF = "next: read_diff for the other changed files, then run_linter"
NEXT_AFTER_LINT = (
    "post_review_comment once per problem you found on a line the change added (the diffs' "
    "+ lines; findings with in_change=true), then answer with the comments you posted"
)
"""What each result says to do next: small models stop early without it."""

RepoPath = Annotated[
    str,
    Field(
        min_length=1, max_length=4096, description="The repository's folder, e.g. /srv/repos/shop"
    ),
]
Rev = Annotated[
    str,
    Field(min_length=1, max_length=200, description="A branch, tag or commit id, e.g. main"),
]
FilePath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        description="The file's path from the repository's top, as list_changed_files gives it",
    ),
]


@contextmanager
def _errors() -> Iterator[None]:
    """Backend failures as the tool errors the runtime knows what to do with."""
    try:
        yield
    except ReviewInputError as exc:
        raise ToolInputError(str(exc)) from exc
    except GitUnavailable as exc:
        raise ToolFatalError(str(exc)) from exc
    except GitTimeout as exc:
        raise ToolTransientError(str(exc)) from exc
    except (OperationalError, InterfaceError, PoolTimeout) as exc:
        cause = getattr(exc, "orig", None) or exc
        raise ToolTransientError(f"the reviews database is unavailable: {cause}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise ToolTransientError(f"the reviews database connection dropped: {exc}") from exc
        raise


def _call(work: Callable[[], T]) -> T:
    with _errors():
        return work()


def _repo(ctx: ToolContext, path: str) -> Repo:
    review = ctx.settings.review
    return open_repo(path, roots=review.roots, timeout_s=review.git_timeout_s)


def _bounded(data: dict[str, Any], key: str, max_chars: int) -> str:
    """`data` as JSON of at most `max_chars`: items of the list `data[key]` are dropped from
    its end (and `cut` says how many) until it fits."""
    items = list(data[key])
    text = json.dumps(data)
    dropped = 0
    while len(text) > max_chars and items:
        items.pop()
        dropped += 1
        text = json.dumps(
            {**data, key: items, "cut": f"{dropped} {key} left out (over {max_chars} characters)"}
        )
    return text


def _file_list(change: Change, limit: int) -> dict[str, Any]:
    files = [
        {"path": f.path, "status": f.status, "added": f.added, "removed": f.removed}
        for f in change.files
    ]
    data: dict[str, Any] = {"base": change.base, "head": change.head, "files": files[:limit]}
    if len(files) > limit:
        data["cut"] = f"{len(files) - limit} more files not shown (limit {limit})"
    data["next"] = NEXT_AFTER_LISTING
    return data


@tool(idempotent=True)
def list_changed_files(repo: RepoPath, base: Rev, head: Rev, ctx: ToolContext) -> str:
    """List the files a change modifies between the base and head revisions, with their
    status (A added, M modified, D deleted) and lines added and removed."""
    review = ctx.settings.review

    def work() -> str:
        change = _repo(ctx, repo).change(base, head)
        return _bounded(_file_list(change, review.max_files), "files", review.max_result_chars)

    return _call(work)


@tool(idempotent=True)
def read_diff(
    repo: RepoPath,
    base: Rev,
    head: Rev,
    ctx: ToolContext,
    path: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=1024,
            description="One changed file (from the repository's top); omit for every file",
        ),
    ] = None,
    from_hunk: Annotated[int, Field(ge=1, description="First hunk to show (1: the first)")] = 1,
) -> str:
    """Read the change's diff hunks: one file's, or every changed file's when no path is
    given. Each line shows `+` (added), `-` (removed) or a space (context), then its line
    number in the file at head, which is the line to comment on."""
    limit = ctx.settings.review.max_result_chars

    def work() -> str:
        opened = _repo(ctx, repo)
        b, h = opened.resolve(base), opened.resolve(head)
        if path is None:
            return _whole_diff(opened, b, h, limit)
        clean = check_path(path)
        hunks = parse_hunks(opened.diff(b, h, clean))
        if not hunks:
            changed = [f.path for f in opened.change(b, h).files]
            raise ReviewInputError(
                f"{clean!r} has no text changes between {base} and {head} (a binary file, or "
                f"not changed); changed files: {', '.join(changed[:20]) or '(none)'}"
            )
        if from_hunk > len(hunks):
            raise ReviewInputError(f"{clean!r} has {len(hunks)} hunk(s); from_hunk is too large")
        out = [f"{clean}: {len(hunks)} hunk(s), {base} ({b[:12]}) -> {head} ({h[:12]})"]
        size = len(out[0])
        for number in range(from_hunk, len(hunks) + 1):
            text = f"hunk {number}/{len(hunks)}\n" + render_hunk(hunks[number - 1])
            if size + len(text) > limit - 200:
                if number == from_hunk:
                    text = text[: limit - 200 - size] + "\n…[hunk cut]"
                    out.append(text)
                    number += 1
                if number <= len(hunks):
                    out.append(
                        f"[cut: hunks {number}-{len(hunks)} not shown; call read_diff with "
                        f"from_hunk={number}]"
                    )
                break
            out.append(text)
            size += len(text) + 1
        if not out[-1].startswith("[cut"):
            out.append(NEXT_AFTER_DIFF)
        return "\n".join(out)

    return _call(work)


def _whole_diff(opened: Repo, base: str, head: str, limit: int) -> str:
    """Every changed text file's hunks, file after file, until `limit`; the rest are named
    so the model can read them one by one."""
    out: list[str] = []
    size = 0
    files = [f for f in opened.change(base, head).files if f.status != "D"]
    for index, f in enumerate(files):
        hunks = parse_hunks(opened.diff(base, head, f.path))
        if not hunks:
            continue
        text = f"=== {f.path} ({f.status})\n" + "\n".join(render_hunk(x) for x in hunks)
        if size + len(text) > limit - 300:
            rest = [g.path for g in files[index:]]
            out.append(f"[cut: not shown: {', '.join(rest)}; call read_diff with path= for each]")
            break
        out.append(text)
        size += len(text) + 1
    else:
        out.append("next: run_linter, then post_review_comment once per problem")
    return "\n".join(out)


@tool(idempotent=True)
def read_file(
    repo: RepoPath,
    rev: Rev,
    path: FilePath,
    ctx: ToolContext,
    start_line: Annotated[int, Field(ge=1, description="First line to show")] = 1,
    max_lines: Annotated[int, Field(ge=1, le=1000, description="Lines to show at most")] = 200,
) -> str:
    """Read a file as it is at a revision, with line numbers (a window of its lines)."""
    review = ctx.settings.review

    def work() -> str:
        opened = _repo(ctx, repo)
        commit = opened.resolve(rev)
        data = opened.blob(commit, path, review.max_file_bytes)
        if b"\0" in data[:8000]:
            raise ReviewInputError(f"{path!r} is a binary file; only text files can be read")
        lines = data.decode(errors="replace").splitlines()
        if lines and start_line > len(lines):
            raise ReviewInputError(
                f"{path!r} has {len(lines)} lines at {rev}; start_line must be at most that"
            )
        last = min(len(lines), start_line + max_lines - 1)
        width = len(str(last))
        head = f"{check_path(path)} at {rev} ({commit[:12]}): lines {start_line}-{last} of "
        out = [head + f"{len(lines)}"]
        size = len(out[0])
        for number in range(start_line, last + 1):
            line = f"{str(number).rjust(width)}| {lines[number - 1]}"
            if size + len(line) > review.max_result_chars - 100:
                out.append(f"[cut at line {number - 1}: call read_file with start_line={number}]")
                break
            out.append(line)
            size += len(line) + 1
        else:
            if last < len(lines):
                out.append(f"[{len(lines) - last} more lines: start_line={last + 1}]")
        return "\n".join(out)

    return _call(work)


def _ruff() -> str:
    try:
        from ruff import find_ruff_bin  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - ruff is a dependency
        raise GitUnavailable("the linter (ruff) is not installed") from exc
    try:
        return str(find_ruff_bin())
    except FileNotFoundError as exc:
        raise GitUnavailable(f"the linter (ruff) cannot be found: {exc}") from exc


def _lint(opened: Repo, change: Change, ctx: ToolContext) -> dict[str, Any]:
    review = ctx.settings.review
    checked: list[str] = []
    skipped: list[dict[str, str]] = []
    changed_lines: dict[str, set[int]] = {}
    with tempfile.TemporaryDirectory(prefix="keel-lint-") as tmp:
        root = Path(tmp)
        for f in change.files:
            if not f.path.endswith(LINTED_SUFFIXES):
                continue
            if f.status == "D":
                skipped.append({"path": f.path, "reason": "deleted"})
                continue
            try:
                data = opened.blob(change.head, f.path, review.max_file_bytes)
            except ReviewInputError as exc:
                skipped.append({"path": f.path, "reason": str(exc)})
                continue
            target = root / check_path(f.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            checked.append(f.path)
            changed_lines[f.path] = added_lines(
                parse_hunks(opened.diff(change.base, change.head, f.path, context=0))
            )
        findings: list[dict[str, Any]] = []
        if checked:
            command = [
                _ruff(), "check", "--isolated", "--no-cache", "--exit-zero",
                "--output-format", "json",
                "--select", ",".join(review.lint_select),
                *(["--ignore", ",".join(review.lint_ignore)] if review.lint_ignore else []),
                "--", *checked,
            ]  # fmt: skip
            try:
                done = subprocess.run(
                    command,
                    cwd=root,
                    capture_output=True,
                    timeout=review.lint_timeout_s,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired as exc:
                raise GitTimeout(f"the linter ran over {review.lint_timeout_s:g}s") from exc
            except OSError as exc:
                raise GitUnavailable(f"the linter (ruff) cannot run: {exc}") from exc
            if done.returncode != 0:
                raise GitUnavailable(
                    f"the linter failed: {done.stderr.decode(errors='replace')[-500:]}"
                )
            for item in json.loads(done.stdout or b"[]"):
                name = Path(item["filename"]).resolve().relative_to(root.resolve()).as_posix()
                line = int((item.get("location") or {}).get("row") or 1)
                findings.append(
                    {
                        "path": name,
                        "line": line,
                        "code": item.get("code") or "syntax-error",
                        "message": item.get("message", ""),
                        "in_change": line in changed_lines.get(name, set()),
                    }
                )
    findings.sort(key=lambda f: (not f["in_change"], f["path"], f["line"]))
    return {
        "linter": f"ruff {metadata.version('ruff')}",
        "rules": list(review.lint_select),
        "checked": checked,
        "skipped": skipped,
        "findings": findings,
        "note": "in_change: the line is one the change added or modified (findings on those "
        "come first)",
        "next": NEXT_AFTER_LINT,
    }


@tool(idempotent=True, timeout_s=120.0)
def run_linter(repo: RepoPath, base: Rev, head: Rev, ctx: ToolContext) -> str:
    """Run the linter (ruff) on the change's Python files as they are at head; each finding
    has a path, line, rule code and message, and says whether the change touched its line."""

    def work() -> str:
        opened = _repo(ctx, repo)
        change = opened.change(base, head)
        limit = ctx.settings.review.max_result_chars
        return _bounded(_lint(opened, change, ctx), "findings", limit)

    return _call(work)


def _rerun_is_safe(key: str) -> Reconciled:
    """A post keyed by its idempotency key can always run again: a second run inserts
    nothing and returns the first row."""
    return Reconciled.not_done()


@tool(reconcile=_rerun_is_safe)
def post_review_comment(
    repo: RepoPath,
    base: Rev,
    head: Rev,
    path: FilePath,
    line: Annotated[int, Field(ge=1, description="The line number in the file at head")],
    severity: Literal["info", "warning", "error"],
    body: Annotated[
        str, Field(min_length=1, max_length=2000, description="What is wrong and how to fix it")
    ],
    ctx: ToolContext,
) -> str:
    """Post a review comment on a line of a changed file (its line number at head); error:
    must be fixed (a bug, a vulnerability, a leaked secret), warning: should be fixed, info:
    a remark."""
    key = ctx.idempotency_key

    def work() -> str:
        opened = _repo(ctx, repo)
        change = opened.change(base, head)
        clean = check_path(path)
        changed = {f.path: f for f in change.files}
        if clean not in changed:
            raise ReviewInputError(
                f"{clean!r} is not changed between {base} and {head}; comment on a changed "
                f"file: {', '.join(list(changed)[:20]) or '(none)'}"
            )
        if changed[clean].status == "D":
            raise ReviewInputError(f"{clean!r} is deleted at {head}; comment on a file at head")
        text = opened.blob(change.head, clean, ctx.settings.review.max_file_bytes)
        count = len(text.splitlines())
        if line > count:
            raise ReviewInputError(
                f"{clean!r} has {count} lines at {head}; line {line} does not exist (use the "
                "line numbers read_diff shows)"
            )
        row, _ = post_comment(
            open_reviews(ctx.settings),
            key=key,
            repo=str(opened.path),
            base=change.base,
            head=change.head,
            path=clean,
            line=line,
            severity=severity,
            body=body,
            author=AUTHOR,
        )
        return json.dumps(
            {
                "comment_id": row["id"],
                "path": row["path"],
                "line": row["line"],
                "severity": row["severity"],
            }
        )

    return _call(work)


REVIEW_TOOLS: tuple[Tool, ...] = (
    read_diff,
    run_linter,
    post_review_comment,
    list_changed_files,
    read_file,
)
"""Every code-review tool, in the order the model sees them: the order of the work first
(the 0.5B local model calls the first tool it is shown)."""
