"""`scripted:review`: the code reviewer's headline task, played the way a careful reviewer would.

"Review the change in REPO from BASE to HEAD": list the changed files, read each one's diff,
run the linter, then post one comment per problem found on a line the change added, and
answer with what was posted. Problems come from the diff itself (an SQL statement built
with an f-string from a variable, a `range(len(x) - 1)` / `<= len(x)` bound, a
secret-looking literal) and from the linter's findings on changed lines; a line gets one
comment however many of them point at it. The script knows nothing of the sample
repository: it reads what the tools return. Every step is a function of the conversation,
so a resumed or retried run continues where it stood. Native tool calls when tools are
bound, ReAct text otherwise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from keel.testing.replies import call, final, question
from keel.testing.scripted import CallInfo, Reply

__all__ = ["find_problems", "review_policy"]

_TASK = re.compile(r"\bin\s+(\S+)\s+from\s+(\S+)\s+to\s+(\S+)", re.IGNORECASE)
_ACTION = re.compile(r"Action:\s*(\S+)\s*\nAction Input:\s*(\{.*\})", re.DOTALL)
_ADDED = re.compile(r"^\+\s*(\d+)\| (.*)$", re.MULTILINE)
_SQL = re.compile(r"""\bf["'].*\b(SELECT|INSERT|UPDATE|DELETE)\b.*\{(\w+)""", re.IGNORECASE)
_SQL_CONCAT = re.compile(
    r"""execute\(\s*["'].*\b(SELECT|INSERT|UPDATE|DELETE)\b.*["']\s*(\+|%)""", re.IGNORECASE
)
_OFF_BY_ONE = re.compile(r"range\(\s*len\((\w+)\)\s*-\s*1\s*\)|<=\s*len\((\w+)\)")
_SECRET = re.compile(
    r"""(sk|pk|rk)_(live|test)_[A-Za-z0-9]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"""
    r"""|(?i:(api_?key|token|secret|password)\w*\s*=\s*["'][^"'\s]{16,}["'])"""
)
_RANK = {"info": 0, "warning": 1, "error": 2}
_SECRET_RULES = ("S105", "S106", "S107")


@dataclass(frozen=True)
class _Step:
    tool: str
    args: dict[str, Any]
    result: str

    @property
    def failed(self) -> bool:
        return self.result.startswith("Error")


@dataclass
class Problem:
    path: str
    line: int
    severity: str
    notes: list[str]

    def body(self) -> str:
        return " ".join(self.notes)


def _steps(messages: list[BaseMessage]) -> list[_Step]:
    """Each tool call with its result, in order, in either protocol."""
    steps: list[_Step] = []
    pending: list[tuple[str, dict[str, Any]]] = []
    for m in messages:
        if isinstance(m, AIMessage):
            if m.tool_calls:
                pending = [(c["name"], c["args"]) for c in m.tool_calls]
            else:
                found = _ACTION.search(str(m.content))
                if found:
                    pending = [(found.group(1), json.loads(found.group(2)))]
        elif isinstance(m, ToolMessage) and pending:
            name, args = pending.pop(0)
            steps.append(_Step(name, args, str(m.content)))
        elif isinstance(m, HumanMessage) and str(m.content).startswith("Observation: ") and pending:
            name, args = pending.pop(0)
            steps.append(_Step(name, args, str(m.content).removeprefix("Observation: ")))
    return steps


def _diff_problems(path: str, diff: str) -> list[Problem]:
    found: list[Problem] = []
    for number, text in _ADDED.findall(diff):
        line = int(number)
        sql = _SQL.search(text)
        if sql or _SQL_CONCAT.search(text):
            source = f"`{sql.group(2)}`" if sql else "a value"
            found.append(
                Problem(
                    path,
                    line,
                    "error",
                    [
                        f"SQL injection: the statement is built from {source} with string "
                        "formatting, so crafted input changes the query. Pass it as a "
                        "parameter (`execute('… = ?', (value,))`)."
                    ],
                )
            )
        bound = _OFF_BY_ONE.search(text)
        if bound:
            name = bound.group(1) or bound.group(2)
            note = (
                f"Off-by-one: `range(len({name}) - 1)` stops before the last item of `{name}`, "
                f"so it is skipped; use `range(len({name}))`."
                if bound.group(1)
                else f"Off-by-one: `<= len({name})` runs one past the last index of `{name}`; "
                "use `<`."
            )
            found.append(Problem(path, line, "error", [note]))
        if _SECRET.search(text):
            found.append(
                Problem(
                    path,
                    line,
                    "error",
                    [
                        "Secret in code: this literal looks like a live API key/token. Remove "
                        "it, revoke it, and read it from the environment or a secret store."
                    ],
                )
            )
    return found


def _lint_problems(result: str) -> list[Problem]:
    try:
        findings = json.loads(result).get("findings", [])
    except (ValueError, AttributeError):
        return []
    found = []
    for f in findings:
        if not f.get("in_change"):
            continue
        severity = "error" if str(f["code"]).startswith(("S", "F", "E9")) else "warning"
        found.append(
            Problem(f["path"], int(f["line"]), severity, [f"ruff {f['code']}: {f['message']}."])
        )
    return found


def find_problems(diffs: dict[str, str], lint_result: str) -> list[Problem]:
    """One problem per (path, line): the diff's and the linter's notes merged, the highest
    severity kept; ordered by path and line."""
    merged: dict[tuple[str, int], Problem] = {}
    candidates = [p for path, diff in diffs.items() for p in _diff_problems(path, diff)]
    for p in candidates + _lint_problems(lint_result):
        have = merged.get((p.path, p.line))
        if have is None:
            merged[(p.path, p.line)] = Problem(p.path, p.line, p.severity, list(p.notes))
            continue
        if _RANK[p.severity] > _RANK[have.severity]:
            have.severity = p.severity
        have.notes.extend(n for n in p.notes if n not in have.notes)
    return [merged[k] for k in sorted(merged)]


def review_policy(messages: list[BaseMessage], info: CallInfo) -> Reply:
    task = _TASK.search(question(messages))
    if task is None:
        return final(info, "Tell me what to review: 'Review the change in REPO from BASE to HEAD'.")
    repo, base, head = (g.rstrip(".,;:!?") for g in task.groups())
    where = {"repo": repo, "base": base, "head": head}
    steps = _steps(messages)
    if not steps:
        return call(info, "list_changed_files", where, "next, list_changed_files.")
    listing = steps[0]
    if listing.failed:
        return final(info, f"I could not read the change: {listing.result}")
    files = [f["path"] for f in json.loads(listing.result)["files"] if f["status"] != "D"]
    read = {s.args["path"]: s for s in steps if s.tool == "read_diff"}
    for path in files:
        if path not in read:
            return call(info, "read_diff", {**where, "path": path}, "next, read_diff.")
    lint = next((s for s in steps if s.tool == "run_linter"), None)
    if lint is None:
        return call(info, "run_linter", where, "next, run_linter.")
    diffs = {p: s.result for p, s in read.items() if not s.failed}
    problems = find_problems(diffs, "" if lint.failed else lint.result)
    posts = [s for s in steps if s.tool == "post_review_comment"]
    tried = {(s.args["path"], s.args["line"]) for s in posts}
    for p in problems:
        if (p.path, p.line) not in tried:
            return call(
                info,
                "post_review_comment",
                {**where, "path": p.path, "line": p.line, "severity": p.severity, "body": p.body()},
                f"next, a comment on {p.path}:{p.line}.",
            )
    done = [s for s in posts if not s.failed]
    listed = "; ".join(
        f"{s.args['path']}:{s.args['line']} ({s.args['severity']}, comment "
        f"{json.loads(s.result)['comment_id']}) {s.args['body'].split(':')[0]}"
        for s in done
    )
    failed = [s for s in posts if s.failed]
    lint_note = f" The linter failed: {lint.result}" if lint.failed else ""
    return final(
        info,
        f"Reviewed {len(files)} changed file(s) from {base} to {head} in {repo}: "
        + (f"posted {len(done)} comment(s): {listed}." if done else "no problems found.")
        + (f" {len(failed)} comment(s) could not be posted." if failed else "")
        + lint_note,
    )
