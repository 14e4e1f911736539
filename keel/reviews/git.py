"""Reading a change in a git repository with `git` itself, safely.

Everything the model names is checked before git sees it:
- the repository: an existing folder inside `KEEL_REVIEW__ROOTS` (when set) that is the top
  of a git work tree or a bare repository;
- revisions: no leading `-` (option injection), no whitespace or control characters, and
  each must resolve to a commit (`rev-parse --verify --end-of-options REV^{commit}`);
- paths inside the repository: relative, no `..`, no leading `-`, and passed after `--`.

Git runs with no pager, no prompts, no external diff or text conversion and no fsmonitor
hook (a repository's own config must not run commands), with a timeout. Git missing is a
`GitUnavailable` (the tool cannot work); a bad name is a `ReviewInputError` whose message says
what to do instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "Change",
    "ChangedFile",
    "GitTimeout",
    "GitUnavailable",
    "Repo",
    "ReviewInputError",
    "check_path",
    "check_rev",
    "open_repo",
]

_REV = re.compile(r"[A-Za-z0-9_./@^~{}:+-]{1,200}")
_SAFE_CONFIG = (
    "-c", "core.fsmonitor=false",
    "-c", "core.quotepath=off",
    "-c", "diff.external=",
    "-c", "core.pager=cat",
    "-c", "color.ui=false",
)  # fmt: skip


class ReviewInputError(ValueError):
    """A repository, revision or path the model named is wrong; the message says why."""


class GitUnavailable(RuntimeError):
    """`git` is not installed or cannot run."""


class GitTimeout(RuntimeError):
    """A `git` command ran past its timeout."""


def check_rev(rev: str) -> str:
    """`rev` when it is a plausible revision name; refuses options and odd characters."""
    if rev.startswith("-"):
        raise ReviewInputError(
            f"revision {rev!r} starts with '-': give a branch, tag or commit id, e.g. 'main'"
        )
    if not _REV.fullmatch(rev) or ".." in rev:
        raise ReviewInputError(
            f"revision {rev!r} is not a single revision name; give a branch, tag or commit id "
            "(base and head separately, not 'A..B')"
        )
    return rev


def check_path(path: str) -> str:
    """`path` as a clean relative POSIX path inside the repository."""
    raw = path.strip()
    pure = PurePosixPath(raw)
    if not raw or raw.startswith(("/", "-")) or "\\" in raw or "\0" in raw:
        raise ReviewInputError(
            f"path {path!r} must be relative to the repository's top, e.g. 'app/db.py'"
        )
    if any(part in ("..", ".git") for part in pure.parts):
        raise ReviewInputError(f"path {path!r} leaves the repository or enters .git")
    return pure.as_posix()


@dataclass(frozen=True)
class ChangedFile:
    path: str
    status: str
    """A added, M modified, D deleted, T type changed."""
    added: int | None
    """Lines added (None: a binary file)."""
    removed: int | None


@dataclass(frozen=True)
class Change:
    base: str
    """The base commit's full id."""
    head: str
    files: tuple[ChangedFile, ...]


@dataclass(frozen=True)
class Repo:
    """An opened, checked repository; every command runs with a timeout."""

    path: Path
    timeout_s: float

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        exe = shutil.which("git")
        if exe is None:
            raise GitUnavailable("git is not installed on this machine (not found on PATH)")
        env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_OPTIONAL_LOCKS": "0",
            "LC_ALL": "C",
        }
        env.pop("GIT_DIR", None)
        env.pop("GIT_WORK_TREE", None)
        try:
            done = subprocess.run(
                [exe, *_SAFE_CONFIG, "-C", str(self.path), *args],
                capture_output=True,
                timeout=self.timeout_s,
                env=env,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise GitTimeout(f"git {args[0]} ran over {self.timeout_s:g}s") from exc
        except OSError as exc:
            raise GitUnavailable(f"git cannot run: {exc}") from exc
        if check and done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()[-500:]
            raise ReviewInputError(f"git {args[0]} failed: {message}")
        return done

    def resolve(self, rev: str) -> str:
        """The full commit id `rev` names."""
        check_rev(rev)
        done = self.git(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False
        )
        if done.returncode != 0:
            refs = ("refs/heads", "refs/tags")
            listed = self.git(
                "for-each-ref", "--count=10", "--format=%(refname:short)", *refs, check=False
            )
            branches = listed.stdout.decode(errors="replace").split()
            raise ReviewInputError(
                f"revision {rev!r} does not name a commit in {self.path}; branches and tags: "
                f"{', '.join(branches) or '(none)'}"
            )
        return done.stdout.decode().strip()

    def change(self, base: str, head: str) -> Change:
        """The files that differ between `base` and `head` (renames as delete + add)."""
        b, h = self.resolve(base), self.resolve(head)
        diff = ("diff", "--no-ext-diff", "--no-textconv", "--no-renames", "-z")
        names = self.git(*diff, "--name-status", b, h, "--").stdout.decode(errors="replace")
        counts = self.git(*diff, "--numstat", b, h, "--").stdout.decode(errors="replace")
        parts = names.split("\0")
        status = {parts[i + 1]: parts[i] for i in range(0, len(parts) - 1, 2)}
        numbers: dict[str, tuple[int | None, int | None]] = {}
        for record in counts.split("\0"):
            fields = record.split("\t")
            if len(fields) == 3:
                added, removed, path = fields
                numbers[path] = (
                    int(added) if added.isdigit() else None,
                    int(removed) if removed.isdigit() else None,
                )
        files = tuple(
            ChangedFile(path, code[:1], *numbers.get(path, (None, None)))
            for path, code in sorted(status.items())
        )
        return Change(b, h, files)

    def diff(self, base: str, head: str, path: str, context: int = 3) -> str:
        """The unified diff of one file between two commits (ids already resolved)."""
        return self.git(
            "diff", "--no-ext-diff", "--no-textconv", "--no-renames", f"-U{context}",
            base, head, "--", check_path(path),
        ).stdout.decode(errors="replace")  # fmt: skip

    def blob(self, commit: str, path: str, max_bytes: int) -> bytes:
        """The bytes of `path` at `commit` (an id already resolved), at most `max_bytes`."""
        clean = check_path(path)
        spec = f"{commit}:{clean}"
        kind = self.git("cat-file", "-t", spec, check=False)
        if kind.returncode != 0:
            raise ReviewInputError(f"there is no file {clean!r} at {commit[:12]}")
        if kind.stdout.strip() != b"blob":
            raise ReviewInputError(f"{clean!r} at {commit[:12]} is a folder, not a file")
        size = int(self.git("cat-file", "-s", spec).stdout.strip() or 0)
        if size > max_bytes:
            raise ReviewInputError(
                f"{clean!r} is {size:,} bytes, over the {max_bytes:,} bytes this tool reads"
            )
        return self.git("cat-file", "blob", spec).stdout


def open_repo(path: str, *, roots: tuple[Path, ...], timeout_s: float) -> Repo:
    """The repository at `path` (absolute, or relative to the working folder), checked."""
    if not path.strip() or "\0" in path:
        raise ReviewInputError("give the repository's folder, e.g. '/srv/repos/shop'")
    if path.startswith("-"):
        raise ReviewInputError(f"repository {path!r} starts with '-': give its folder")
    folder = Path(path).expanduser().resolve()
    if roots:
        allowed = [r.expanduser().resolve() for r in roots]
        if not any(folder == r or folder.is_relative_to(r) for r in allowed):
            raise ReviewInputError(
                f"repository {path!r} is outside the folders reviews may read "
                f"({', '.join(str(r) for r in allowed)})"
            )
    if not folder.is_dir():
        raise ReviewInputError(f"there is no folder {str(folder)!r}: check the repository path")
    repo = Repo(folder, timeout_s)
    top = repo.git("rev-parse", "--is-bare-repository", "--show-toplevel", check=False)
    lines = top.stdout.decode(errors="replace").split()
    if top.returncode != 0 or not lines:
        raise ReviewInputError(f"{str(folder)!r} is not a git repository")
    if lines[0] != "true" and (len(lines) < 2 or Path(lines[1]).resolve() != folder):
        raise ReviewInputError(
            f"{str(folder)!r} is inside a git repository but not its top; give "
            f"{lines[1] if len(lines) > 1 else 'the top folder'}"
        )
    return repo
