"""The code reviewer on a real git repository: the sample's seeded defects found (by the
linter and by the scripted reviewer's comments) at the lines computed here from the files
themselves, every tool's bad input refused with a message the model can act on (unknown
revisions, option injection, path traversal, repositories outside the allowed roots), git
and the reviews database down, comments posted once per call across crashes and resumes,
and `keel run --agent code_reviewer` from the CLI."""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from keel.config import Settings, load_settings
from keel.errors import ToolFatalError, ToolInputError, ToolTransientError
from keel.graphs.code_reviewer import agent as reviewer
from keel.reviews.store import list_comments, open_reviews
from keel.runtime import open_agent
from keel.testing.scripted import ScriptedModel
from keel.tools import review
from keel.tools.registry import ToolContext
from keel.tools.review import (
    list_changed_files,
    post_review_comment,
    read_diff,
    read_file,
    run_linter,
)
from keel.tools.review_sample import (
    BASE,
    CLEAN_FILES,
    HEAD,
    SEEDED,
    SampleRepo,
    build_sample_repo,
    headline,
)
from tests.conftest import fresh_database


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        home=tmp_path / "home",
        model="scripted:review",
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        retry={"initial_s": 0.0, "max_s": 0.0},
    )


@pytest.fixture
def sample(tmp_path: Path) -> SampleRepo:
    return build_sample_repo(tmp_path / "shop")


def _ctx(settings: Settings, call_id: str = "c1", thread: str = "t1") -> ToolContext:
    return ToolContext(settings=settings, tool_call_id=call_id, thread_id=thread)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def _at(repo: Path, rev: str, path: str) -> list[str]:
    return _git(repo, "show", f"{rev}:{path}").splitlines()


def seeded_lines(repo: Path) -> dict[str, tuple[str, int]]:
    """Each seeded defect's (path, line at head), found by its text in the file at head."""
    found = {}
    for s in SEEDED:
        lines = _at(repo, HEAD, s.path)
        hits = [i for i, text in enumerate(lines, 1) if s.needle in text]
        assert len(hits) == 1, (s, hits)
        found[s.kind] = (s.path, hits[0])
    return found


def _where(sample: SampleRepo) -> dict[str, str]:
    return {"repo": str(sample.path), "base": BASE, "head": HEAD}


# ---------------------------------------------------------------------- the sample


def test_the_sample_is_deterministic_and_seeds_each_defect_in_the_change(tmp_path: Path) -> None:
    one = build_sample_repo(tmp_path / "a")
    two = build_sample_repo(tmp_path / "b")
    assert (one.base_commit, one.head_commit) == (two.base_commit, two.head_commit)
    assert one.base_commit != one.head_commit
    truth = seeded_lines(one.path)
    assert sorted(truth) == ["off_by_one", "secret", "sql"]
    base_files = set(_git(one.path, "ls-tree", "-r", "--name-only", BASE).split())
    for s in SEEDED:  # the defect comes with the change: the base does not have it
        if s.path in base_files:
            assert s.needle not in _git(one.path, "show", f"{BASE}:{s.path}")
    assert headline(one.path) == f"Review the change in {one.path} from main to {HEAD}"


def test_the_seeded_off_by_one_really_skips_the_last_item(sample: SampleRepo) -> None:
    """The defect is real: the head's `running_totals` loses the last amount."""
    space: dict[str, Any] = {}
    exec("\n".join(_at(sample.path, HEAD, "shop/pricing.py")), space)
    assert space["running_totals"]([1.0, 2.0, 3.0]) == [1.0, 3.0]


# ---------------------------------------------------------------------- reading a change


def test_list_changed_files_matches_the_files_themselves(
    settings: Settings, sample: SampleRepo
) -> None:
    got = json.loads(list_changed_files.func(str(sample.path), BASE, HEAD, _ctx(settings)))
    assert got["base"] == sample.base_commit and got["head"] == sample.head_commit
    base_files = set(_git(sample.path, "ls-tree", "-r", "--name-only", BASE).split())
    head_files = set(_git(sample.path, "ls-tree", "-r", "--name-only", HEAD).split())
    expected = {}
    for path in sorted(base_files | head_files):
        old = _at(sample.path, BASE, path) if path in base_files else []
        new = _at(sample.path, HEAD, path) if path in head_files else []
        if old == new:
            continue
        delta = list(difflib.ndiff(old, new))
        status = "A" if not old else "D" if not new else "M"
        added = sum(1 for d in delta if d.startswith("+ "))
        removed = sum(1 for d in delta if d.startswith("- "))
        expected[path] = (status, added, removed)
    assert {f["path"]: (f["status"], f["added"], f["removed"]) for f in got["files"]} == expected
    assert set(CLEAN_FILES) | {s.path for s in SEEDED} <= set(expected)


def test_read_diff_numbers_each_line_as_it_is_at_head(
    settings: Settings, sample: SampleRepo
) -> None:
    truth = seeded_lines(sample.path)
    for path in ("shop/orders.py", "shop/pricing.py", "shop/payments.py", "shop/config.py"):
        text = read_diff.func(str(sample.path), BASE, HEAD, _ctx(settings), path)
        head_lines = _at(sample.path, HEAD, path)
        shown = 0
        for row in text.splitlines():
            if row[:1] in "+ " and "| " in row and row[2:].split("|")[0].strip().isdigit():
                number = int(row[2:].split("|")[0])
                assert row.split("| ", 1)[1] == head_lines[number - 1], row
                shown += 1
        assert shown
    orders = read_diff.func(str(sample.path), BASE, HEAD, _ctx(settings), "shop/orders.py")
    _, line = truth["sql"]
    assert any(r.startswith(f"+ {line}|") for r in orders.splitlines())
    config = read_diff.func(str(sample.path), BASE, HEAD, _ctx(settings), "shop/config.py")
    assert any(r.startswith("-  |") or r.startswith("- ") for r in config.splitlines())


def test_read_diff_without_a_path_shows_every_changed_file(
    settings: Settings, sample: SampleRepo
) -> None:
    whole = read_diff.func(str(sample.path), BASE, HEAD, _ctx(settings))
    sections = [row.removeprefix("=== ").split(" (")[0] for row in whole.splitlines()
                if row.startswith("=== ")]  # fmt: skip
    assert sections == sorted(CLEAN_FILES + tuple(s.path for s in SEEDED))
    for kind, (path, line) in seeded_lines(sample.path).items():
        text = _at(sample.path, HEAD, path)[line - 1]
        assert f"+ {line}| {text}" in whole.splitlines() or f"+  {line}| {text}" in whole, kind
    small = settings.model_copy(
        update={"review": settings.review.model_copy(update={"max_result_chars": 1000})}
    )
    cut = read_diff.func(str(sample.path), BASE, HEAD, _ctx(small))
    assert len(cut) <= 1000
    assert cut.splitlines()[-1].startswith("[cut: not shown: ") and "shop/pricing.py" in cut


def _many_hunks_repo(folder: Path) -> Path:
    folder.mkdir()
    _git(folder, "init", "-q", "-b", "main")
    _git(folder, "config", "user.email", "t@example.com")
    _git(folder, "config", "user.name", "T")
    lines = [f"value_{i} = {i}" for i in range(400)]
    (folder / "big.py").write_text("\n".join(lines) + "\n")
    _git(folder, "add", ".")
    _git(folder, "commit", "-q", "-m", "base")
    for i in range(0, 400, 20):
        lines[i] = f"value_{i} = {i} * 2  # changed so the diff has many hunks"
    (folder / "big.py").write_text("\n".join(lines) + "\n")
    (folder / "blob.bin").write_bytes(b"\0\1\2" * 100)
    _git(folder, "commit", "-q", "-am", "head")
    _git(folder, "add", "blob.bin")
    _git(folder, "commit", "-q", "-m", "binary")
    return folder


def test_long_results_are_cut_and_say_how_to_read_on(settings: Settings, tmp_path: Path) -> None:
    repo = str(_many_hunks_repo(tmp_path / "big"))
    small = settings.model_copy(
        update={"review": settings.review.model_copy(update={"max_result_chars": 1000})}
    )
    text = read_diff.func(repo, "main~2", "main~1", _ctx(small), "big.py")
    assert len(text) <= 1000
    assert "20 hunk(s)" in text.splitlines()[0]
    cut = text.splitlines()[-1]
    assert cut.startswith("[cut: hunks ") and "from_hunk=" in cut
    next_hunk = int(cut.split("from_hunk=")[1].rstrip("]"))
    rest = read_diff.func(repo, "main~2", "main~1", _ctx(small), "big.py", from_hunk=next_hunk)
    assert f"hunk {next_hunk}/20" in rest
    with pytest.raises(ToolInputError, match="has 20 hunk"):
        read_diff.func(repo, "main~2", "main~1", _ctx(small), "big.py", from_hunk=21)
    window = read_file.func(repo, "main", "big.py", _ctx(small), start_line=101, max_lines=1000)
    assert len(window) <= 1000
    assert window.splitlines()[1] == f"101| {_at(Path(repo), 'main', 'big.py')[100]}"
    assert "call read_file with start_line=" in window.splitlines()[-1]
    with pytest.raises(ToolInputError, match="binary"):
        read_file.func(repo, "main", "blob.bin", _ctx(small))
    many = small.model_copy(update={"review": small.review.model_copy(update={"max_files": 1})})
    listed = json.loads(list_changed_files.func(repo, "main~2", "main", _ctx(many)))
    assert len(listed["files"]) == 1 and "1 more files" in listed["cut"]


def test_read_file_shows_a_numbered_window_at_a_revision(
    settings: Settings, sample: SampleRepo
) -> None:
    (sample.path / "shop" / "orders.py").write_text("working tree, not a revision\n")
    text = read_file.func(
        str(sample.path), HEAD, "shop/orders.py", _ctx(settings), start_line=12, max_lines=3
    )
    head_lines = _at(sample.path, HEAD, "shop/orders.py")
    rows = text.splitlines()
    assert rows[0].startswith(f"shop/orders.py at {HEAD} (") and rows[0].endswith(
        f"lines 12-14 of {len(head_lines)}"
    )
    assert rows[1:4] == [f"{n}| {head_lines[n - 1]}" for n in (12, 13, 14)]
    assert rows[4] == f"[{len(head_lines) - 14} more lines: start_line=15]"
    base = read_file.func(str(sample.path), BASE, "shop/orders.py", _ctx(settings))
    assert "find_orders" not in base
    with pytest.raises(ToolInputError, match=r"no file 'shop/payments\.py'"):
        read_file.func(str(sample.path), BASE, "shop/payments.py", _ctx(settings))
    with pytest.raises(ToolInputError, match="a folder"):
        read_file.func(str(sample.path), HEAD, "shop", _ctx(settings))
    with pytest.raises(ToolInputError, match="start_line must be at most"):
        read_file.func(str(sample.path), HEAD, "shop/orders.py", _ctx(settings), start_line=999)


# ---------------------------------------------------------------------- the linter


def test_the_linter_flags_the_sql_and_the_secret_on_changed_lines(
    settings: Settings, sample: SampleRepo
) -> None:
    # The working tree (checked out at main) is not what is linted: the head revision is.
    (sample.path / "shop" / "money.py").write_text("import os\n")
    got = json.loads(run_linter.func(str(sample.path), BASE, HEAD, _ctx(settings)))
    truth = seeded_lines(sample.path)
    assert got["linter"].startswith("ruff ")
    assert sorted(got["checked"]) == sorted(
        p for p in (CLEAN_FILES + tuple(s.path for s in SEEDED)) if p.endswith(".py")
    )
    flagged = {(f["path"], f["line"]): f for f in got["findings"]}
    assert flagged[truth["sql"]]["code"] == "S608" and flagged[truth["sql"]]["in_change"]
    assert flagged[truth["secret"]]["code"] == "S105" and flagged[truth["secret"]]["in_change"]
    assert truth["off_by_one"] not in flagged  # no linter rule sees it: the review must
    assert not {p for p, _ in flagged} & set(CLEAN_FILES)


def test_linter_findings_off_the_change_are_marked(settings: Settings, tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "T")
    (repo / "m.py").write_text("import os\n\n\ndef f():\n    return 1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    (repo / "m.py").write_text(
        "import os\n\n\ndef f():\n    return 1\n\n\ndef g(x):\n    return x == None\n"
    )
    (repo / "bad.py").write_text("def h(:\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "head")
    got = json.loads(run_linter.func(str(repo), "main~1", "main", _ctx(settings)))
    found = {(f["path"], f["line"]): f for f in got["findings"]}
    assert found[("m.py", 1)]["code"] == "F401" and found[("m.py", 1)]["in_change"] is False
    assert found[("m.py", 9)]["code"] == "E711" and found[("m.py", 9)]["in_change"] is True
    assert found[("bad.py", 1)]["in_change"] is True  # a syntax error the change added
    flags = [f["in_change"] for f in got["findings"]]
    assert flags == sorted(flags, reverse=True) and False in flags  # changed lines first


def test_a_linter_timeout_is_transient(settings: Settings, sample: SampleRepo) -> None:
    hasty = settings.model_copy(
        update={"review": settings.review.model_copy(update={"lint_timeout_s": 1e-6})}
    )
    with pytest.raises(ToolTransientError, match="the linter ran over"):
        run_linter.func(str(sample.path), BASE, HEAD, _ctx(hasty))


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"base": "no-such-branch"}, "does not name a commit .*branches and tags: "),
        ({"head": "0123456789abcdef"}, "does not name a commit"),
        ({"base": "--output=PWNED"}, "starts with '-'"),
        ({"head": "-p"}, "starts with '-'"),
        ({"base": "main..feature/order-search"}, "not a single revision name"),
        ({"base": "main feature"}, "not a single revision name"),
        ({"repo": "/definitely/not/here"}, "there is no folder"),
        ({"repo": "-C/tmp"}, "starts with '-'"),
    ],
)
def test_bad_revisions_and_repositories_are_refused(
    settings: Settings, sample: SampleRepo, change: dict[str, str], message: str
) -> None:
    args = {**_where(sample), **change}
    args["base"] = args["base"].replace("PWNED", str(sample.path / "pwned"))
    for call in (
        lambda: list_changed_files.func(args["repo"], args["base"], args["head"], _ctx(settings)),
        lambda: read_diff.func(
            args["repo"], args["base"], args["head"], _ctx(settings), "shop/orders.py"
        ),
        lambda: read_diff.func(args["repo"], args["base"], args["head"], _ctx(settings)),
        lambda: run_linter.func(args["repo"], args["base"], args["head"], _ctx(settings)),
        lambda: post_review_comment.func(
            args["repo"],
            args["base"],
            args["head"],
            "shop/orders.py",
            1,
            "info",
            "x",
            _ctx(settings),
        ),
    ):
        with pytest.raises(ToolInputError, match=message):
            call()
    assert not (sample.path / "pwned").exists()
    assert list_comments(open_reviews(settings)) == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../../etc/passwd", "leaves the repository"),
        ("shop/../../secret.txt", "leaves the repository"),
        ("/etc/passwd", "must be relative"),
        ("-p", "must be relative"),
        ("--output=x", "must be relative"),
        (".git/config", "enters .git"),
        ("shop\\orders.py", "must be relative"),
    ],
)
def test_paths_outside_the_repository_are_refused(
    settings: Settings, sample: SampleRepo, path: str, message: str
) -> None:
    where = (str(sample.path), BASE, HEAD)
    with pytest.raises(ToolInputError, match=message):
        read_file.func(str(sample.path), HEAD, path, _ctx(settings))
    with pytest.raises(ToolInputError, match=message):
        read_diff.func(*where, _ctx(settings), path)
    with pytest.raises(ToolInputError, match=message):
        post_review_comment.func(*where, path, 1, "info", "x", _ctx(settings))


def test_repositories_must_be_real_tops_inside_the_roots(
    settings: Settings, sample: SampleRepo, tmp_path: Path
) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(ToolInputError, match="is not a git repository"):
        list_changed_files.func(str(tmp_path / "plain"), BASE, HEAD, _ctx(settings))
    with pytest.raises(ToolInputError, match="not its top"):
        list_changed_files.func(str(sample.path / "shop"), BASE, HEAD, _ctx(settings))
    fenced = settings.model_copy(
        update={"review": settings.review.model_copy(update={"roots": (tmp_path / "allowed",)})}
    )
    with pytest.raises(ToolInputError, match="outside the folders reviews may read"):
        list_changed_files.func(str(sample.path), BASE, HEAD, _ctx(fenced))
    sneaky = str(tmp_path / "allowed" / ".." / "shop")
    with pytest.raises(ToolInputError, match="outside the folders"):
        list_changed_files.func(sneaky, BASE, HEAD, _ctx(fenced))
    inside = build_sample_repo(tmp_path / "allowed" / "shop")
    assert json.loads(list_changed_files.func(str(inside.path), BASE, HEAD, _ctx(fenced)))


def test_comments_go_on_existing_lines_of_changed_files(
    settings: Settings, sample: SampleRepo
) -> None:
    where = (str(sample.path), BASE, HEAD)
    with pytest.raises(ToolInputError, match=r"'shop/__init__\.py' is not changed"):
        post_review_comment.func(*where, "shop/__init__.py", 1, "info", "x", _ctx(settings))
    with pytest.raises(ToolInputError, match="line 999 does not exist"):
        post_review_comment.func(*where, "shop/orders.py", 999, "info", "x", _ctx(settings))
    reverse = (str(sample.path), HEAD, BASE)  # the change backwards deletes payments.py
    with pytest.raises(ToolInputError, match="is deleted"):
        post_review_comment.func(*reverse, "shop/payments.py", 1, "info", "x", _ctx(settings))
    bads: tuple[dict[str, Any], ...] = (
        {"line": 0},
        {"severity": "blocker"},
        {"body": ""},
        {"body": "x" * 2001},
        {"path": ""},
    )
    for bad in bads:
        args: dict[str, Any] = {**_where(sample), "path": "shop/orders.py"}
        args.update({"line": 1, "severity": "info", "body": "x"} | bad)
        with pytest.raises(ToolInputError, match="invalid arguments for 'post_review_comment'"):
            post_review_comment.validate(args)
    assert list_comments(open_reviews(settings)) == []


# ---------------------------------------------------------------------- backends down


def test_git_missing_is_fatal(
    settings: Settings, sample: SampleRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolFatalError, match="git is not installed"):
        list_changed_files.func(str(sample.path), BASE, HEAD, _ctx(settings))
    with pytest.raises(ToolFatalError, match="git is not installed"):
        post_review_comment.func(
            str(sample.path), BASE, HEAD, "shop/orders.py", 1, "info", "x", _ctx(settings)
        )


def test_a_git_timeout_is_transient(settings: Settings, sample: SampleRepo) -> None:
    hasty = settings.model_copy(
        update={"review": settings.review.model_copy(update={"git_timeout_s": 1e-6})}
    )
    with pytest.raises(ToolTransientError, match="ran over"):
        list_changed_files.func(str(sample.path), BASE, HEAD, _ctx(hasty))


def test_an_unreachable_reviews_database_is_transient(
    settings: Settings, sample: SampleRepo
) -> None:
    down = settings.model_copy(
        update={
            "review": settings.review.model_copy(
                update={"url": "postgresql://postgres@127.0.0.1:1/reviews", "timeout_s": 1.0}
            )
        }
    )
    with pytest.raises(ToolTransientError, match="the reviews database is unavailable"):
        post_review_comment.func(
            str(sample.path), BASE, HEAD, "shop/orders.py", 1, "info", "x", _ctx(down)
        )


# ---------------------------------------------------------------------- posting once


def _post(settings: Settings, sample: SampleRepo, call_id: str, line: int = 14) -> dict[str, Any]:
    args = post_review_comment.validate(
        {**_where(sample), "path": "shop/orders.py", "line": line, "severity": "error",
         "body": "SQL injection"}
    )  # fmt: skip
    return dict(json.loads(asyncio.run(post_review_comment.invoke(args, _ctx(settings, call_id)))))


def test_a_comment_is_stored_once_per_idempotency_key(
    settings: Settings, sample: SampleRepo
) -> None:
    first = _post(settings, sample, "same")
    again = _post(settings, sample, "same")
    other = _post(settings, sample, "other")
    assert first == again and other["comment_id"] != first["comment_id"]
    rows = list_comments(open_reviews(settings))
    assert [r["idempotency_key"] for r in rows] == ["t1:same", "t1:other"]
    assert rows[0]["head"] == sample.head_commit and rows[0]["base"] == sample.base_commit
    assert rows[0]["repo"] == str(sample.path.resolve()) and rows[0]["author"] == "code_reviewer"


def test_comments_once_per_key_on_postgres(sample: SampleRepo, tmp_path: Path) -> None:
    with fresh_database("keel_reviews") as (url, _):
        pg = load_settings(home=tmp_path / "pg-home", review={"url": url})
        first = _post(pg, sample, "same")
        assert _post(pg, sample, "same") == first
        _post(pg, sample, "other")
        rows = list_comments(open_reviews(pg))
        assert [r["idempotency_key"] for r in rows] == ["t1:same", "t1:other"]
        open_reviews(pg).dispose()


# ---------------------------------------------------------------------- the agent


def _check_review(settings: Settings, sample: SampleRepo, output: str) -> list[dict[str, Any]]:
    """Exactly one comment per seeded defect, on its line, saying what it is; none elsewhere."""
    rows = list_comments(open_reviews(settings))
    truth = seeded_lines(sample.path)
    by_place = {(r["path"], r["line"]): r for r in rows}
    assert sorted(by_place) == sorted(truth.values()), rows
    assert len(rows) == len(truth)
    words = {"sql": "SQL injection", "off_by_one": "Off-by-one", "secret": "Secret in code"}
    for kind, place in truth.items():
        assert words[kind] in by_place[place]["body"]
        assert by_place[place]["severity"] == "error"
        assert f"{place[0]}:{place[1]}" in output
    assert not {r["path"] for r in rows} & set(CLEAN_FILES)
    assert all(r["head"] == sample.head_commit for r in rows)
    return rows


@pytest.mark.parametrize("model", ["scripted:review", "scripted:review-react"])
async def test_the_headline_task_flags_each_seeded_defect_once(
    settings: Settings, sample: SampleRepo, model: str
) -> None:
    chosen = settings.model_copy(update={"model": model})
    async with open_agent(reviewer, settings=chosen) as agent:
        result = await agent.arun(sample.task(), thread_id="review-1")
    assert result.success, result.error
    _check_review(settings, sample, result.output)
    actions = [s["action"] for s in result.metadata.trace if s["node"] == "act"]
    assert actions[0] == "list_changed_files" and actions.count("read_diff") == 6
    assert actions.count("run_linter") == 1 and actions.count("post_review_comment") == 3


async def test_a_bad_revision_reaches_the_model_and_nothing_is_posted(
    settings: Settings, sample: SampleRepo
) -> None:
    injected = AIMessage(
        content="",
        tool_calls=[
            {"name": "post_review_comment", "id": "p1",
             "args": {**_where(sample), "head": "--output=/tmp/x", "path": "shop/orders.py",
                      "line": 14, "severity": "error", "body": "x"}}
        ],
    )  # fmt: skip
    model = ScriptedModel([injected, "The head revision was not valid."])
    async with open_agent(reviewer, settings=settings, model=model) as agent:
        result = await agent.arun("Review it", thread_id="bad")
    assert result.success
    assert "starts with '-'" in result.metadata.trace[1]["observation"]
    assert list_comments(open_reviews(settings)) == []


class Crash(BaseException):
    """Stands in for the process dying mid-step."""


@pytest.mark.parametrize("when", ["before_insert", "after_insert"])
async def test_crash_and_resume_posts_each_comment_once(
    settings: Settings, sample: SampleRepo, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The process dies while posting the second comment, before or after its row is
    committed: the resumed run posts it (once) and the third, and never repeats the first."""
    real = review.post_comment
    calls: list[str] = []

    def post(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["key"])
        if len(calls) == 2:
            if when == "before_insert":
                raise Crash()
            real(*args, **kwargs)
            raise Crash()
        return real(*args, **kwargs)

    monkeypatch.setattr(review, "post_comment", post)
    async with open_agent(reviewer, settings=settings) as agent:
        with pytest.raises(Crash):
            await agent.arun(sample.task(), thread_id="crashy")
        before = list_comments(open_reviews(settings))
        assert len(before) == (1 if when == "before_insert" else 2)
        result = await agent.aresume("crashy")
        assert result.success, result.error
        again = await agent.aresume("crashy")
        assert again.success
    rows = _check_review(settings, sample, result.output)
    for old in before:  # what was stored before the crash is the same row, not a new one
        assert next(r for r in rows if r["idempotency_key"] == old["idempotency_key"]) == old
    assert len(set(calls)) == 3  # the crashed call was re-run under its own key


# ---------------------------------------------------------------------- the CLI


def test_keel_run_agent_code_reviewer_from_the_cli(tmp_path: Path, sample: SampleRepo) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "graph.py").write_text("from keel.graphs.code_reviewer import agent\n")
    (project / "langgraph.json").write_text(
        json.dumps({"dependencies": ["."], "graphs": {"code_reviewer": "./graph.py:agent"}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "OPENAI_"))}
    home = tmp_path / "cli-home"
    env.update(
        KEEL_HOME=str(home),
        KEEL_CHECKPOINT_URL=f"sqlite:///{tmp_path / 'cli-cp.sqlite'}",
        KEEL_MODEL="scripted:review",
    )
    done = subprocess.run(
        [sys.executable, "-m", "keel", "run", "--agent", "code_reviewer", "--json",
         sample.task()],
        capture_output=True, text=True, cwd=project, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["success"], result
    _check_review(load_settings(home=home), sample, result["output"])
