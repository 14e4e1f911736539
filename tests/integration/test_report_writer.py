"""The report writer: every figure of a report checked against the database, its files
(Markdown, HTML table, a real PNG), the tools' bad input, a missing database, a crash and
resume that writes each artifact once, and fetching through the CLI and the HTTP API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage

from keel.artifacts import Artifact, LocalArtifactStore, open_artifact_store
from keel.config import Settings, load_settings
from keel.errors import ToolFatalError, ToolInputError
from keel.graphs.report_writer import agent as report_writer
from keel.project.loader import load_project
from keel.runtime import open_agent
from keel.server.admin import create_key
from keel.testing.scripted import ScriptedModel
from keel.tools.registry import ToolContext
from keel.tools.reports import sales_figures, write_report
from keel.tools.sample_db import ensure_sample_db
from tests.integration.service_server import running_server
from tests.report_truth import HEADLINE, Truth, last_month, month_before, truth


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        home=tmp_path / "home",
        model="scripted:report",
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        retry={"initial_s": 0.0, "max_s": 0.0},
    )


def _ctx(settings: Settings, call_id: str = "c1", tenant: str = "acme") -> ToolContext:
    return ToolContext(
        settings=settings, tool_call_id=call_id, thread_id="t1", tenant=tenant, run_id="r1"
    )


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _check_markdown(text: str, t: Truth) -> None:
    """Every number of the report, as the reader sees it, equals the truth."""
    placed = sum(t.by_status.values())
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in text.splitlines()
        if line.startswith("| ") and line.count("|") == 3
    }
    assert rows["Revenue"] == _money(t.revenue)
    assert rows["Change in revenue"] == f"{t.change_pct:+.1f}%"
    assert rows["Completed orders"].startswith(f"{t.completed:,} of {placed:,} placed")
    assert rows["Change in completed orders"] == f"{t.orders_change_pct:+.1f}%"
    assert rows["Units sold"] == f"{t.units:,}"
    assert rows["Average order value"] == _money(round(t.revenue / t.completed, 2))
    previous = next(v for k, v in rows.items() if k.startswith("Revenue in "))
    assert previous == _money(t.previous_revenue)
    table = [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in text.splitlines()
        if line.startswith("| ") and line.count("|") == 6 and line[2].isdigit()
    ]
    assert [(r[1], r[2], r[3]) for r in table] == [
        (name, f"{units:,}", _money(rev)) for name, units, rev in t.top
    ]
    assert [r[4] for r in table] == [f"{rev / t.revenue * 100:.1f}%" for _, _, rev in t.top]
    assert "completed orders only" in text


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current: str | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.current = dict(attrs).get("id") or "?"
            self.tables[self.current] = []
        elif tag == "tr" and self.current:
            self.tables[self.current].append([])
        elif tag in ("td", "th") and self.current:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.current:
            self.tables[self.current][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def _check_html(text: str, t: Truth) -> None:
    parser = _Tables()
    parser.feed(text)
    products = parser.tables["top-products"][1:]
    assert [(r[1], r[3]) for r in products] == [(name, _money(rev)) for name, _, rev in t.top]
    figures = dict((r[0], r[1]) for r in parser.tables["figures"])
    assert figures["Revenue"] == _money(t.revenue)
    assert figures["Change in revenue"] == f"{t.change_pct:+.1f}%"


def _check_png(data: bytes) -> None:
    import io

    from matplotlib.image import imread

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(io.BytesIO(data), format="png")
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 800
    assert pixels.std() > 0.05, "a blank image"


# ---------------------------------------------------------------------- figures


@pytest.mark.parametrize("back", [1, 2])
def test_sales_figures_match_the_database(settings: Settings, back: int) -> None:
    month = last_month(date.today())
    for _ in range(back - 1):
        month = month_before(month)
    t = truth(ensure_sample_db(settings.home), month)
    got = json.loads(sales_figures.func(month=month, ctx=_ctx(settings)))
    assert got["revenue"] == t.revenue
    assert got["completed_orders"] == t.completed
    assert got["orders_by_status"] == t.by_status
    assert got["units_sold"] == t.units
    assert [(p["name"], p["units"], p["revenue"]) for p in got["top_products"]] == t.top
    assert got["previous_revenue"] == t.previous_revenue
    assert got["revenue_change_pct"] == t.change_pct
    assert got["orders_change_pct"] == t.orders_change_pct
    assert "completed" in got["revenue_rule"]
    assert f"month '{month}'" in got["next_step"] and "write_report" in got["next_step"]


def test_relative_months_and_the_default(settings: Settings) -> None:
    today = date.today()
    last = json.loads(sales_figures.func(ctx=_ctx(settings)))
    assert last["month"] == last_month(today) and not last["partial"]
    named = json.loads(sales_figures.func(month=" Last  Month ", ctx=_ctx(settings)))
    assert named == last
    this = json.loads(sales_figures.func(month="this month", ctx=_ctx(settings)))
    assert this["month"] == f"{today:%Y-%m}" and this["partial"]
    assert this["previous_month"] == last_month(today)


@pytest.mark.parametrize(
    ("month", "message"),
    [
        ("2026-13", "month must be YYYY-MM"),
        ("november", "month must be YYYY-MM"),
        ("2026-12-06", "month must be YYYY-MM"),
        ("2026-1", "month must be YYYY-MM"),
        ("2999-01", "is in the future"),
        ("2001-01", "there are no orders in 2001-01; the data covers"),
    ],
)
def test_bad_months_get_an_error_the_model_can_act_on(
    settings: Settings, month: str, message: str
) -> None:
    with pytest.raises(ToolInputError, match=message):
        sales_figures.func(month=month, ctx=_ctx(settings))


async def test_bad_arguments_write_nothing(settings: Settings) -> None:
    for args in (
        {"month": "2999-01", "title": "x", "summary": "y"},
        {"month": "2001-01", "title": "x", "summary": "y"},
    ):
        with pytest.raises(ToolInputError):
            await write_report.invoke(write_report.validate(args), _ctx(settings))
    for args in (
        {"month": last_month(date.today()), "title": "", "summary": "y"},
        {"month": last_month(date.today()), "title": "x", "summary": "y" * 5000},
        {"month": last_month(date.today()), "summary": "no title"},
        {"month": last_month(date.today()), "title": "x", "tone": "upbeat"},
    ):
        with pytest.raises(ToolInputError, match="invalid arguments for 'write_report'"):
            write_report.validate(args)
    assert await open_artifact_store(settings).list("acme") == []


async def test_a_missing_database_is_a_fatal_tool_error(settings: Settings, tmp_path: Path) -> None:
    gone = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'gone.db'}"})
    with pytest.raises(ToolFatalError, match=r"gone\.db"):
        sales_figures.func(month=last_month(date.today()), ctx=_ctx(gone))
    with pytest.raises(ToolFatalError):
        await write_report.invoke(
            write_report.validate(
                {"month": last_month(date.today()), "title": "x", "summary": "y"}
            ),
            _ctx(gone),
        )
    assert await open_artifact_store(gone).list("acme") == []


# ---------------------------------------------------------------------- the agent


async def _stored(settings: Settings, tenant: str = "default") -> dict[str, tuple[Artifact, bytes]]:
    store = open_artifact_store(settings)
    found = {}
    for a in await store.list(tenant):
        got = await store.get(tenant, a.id)
        assert got is not None
        found[a.name] = got
    return found


async def test_the_headline_task_gives_a_checked_report(settings: Settings) -> None:
    async with open_agent(report_writer, settings=settings) as agent:
        result = await agent.arun(HEADLINE, thread_id="monthly")
    assert result.success, result.error
    month = last_month(date.today())
    t = truth(ensure_sample_db(settings.home), month)
    files = await _stored(settings)
    assert sorted(files) == [f"sales-{month}-chart.png", f"sales-{month}.html", f"sales-{month}.md"]
    _check_markdown(files[f"sales-{month}.md"][1].decode(), t)
    _check_html(files[f"sales-{month}.html"][1].decode(), t)
    _check_png(files[f"sales-{month}-chart.png"][1])
    assert files[f"sales-{month}.md"][0].content_type.startswith("text/markdown")
    assert all(a.thread_id == "monthly" and a.tenant == "default" for a, _ in files.values())
    for artifact, _ in files.values():
        assert artifact.id in result.output
    assert _money(t.revenue) in result.output and f"{t.change_pct:+.1f}%" in result.output
    actions = [s["action"] for s in result.metadata.trace if s["node"] == "act"]
    assert actions == ["write_report"]


async def test_a_bad_month_reaches_the_model_and_nothing_is_stored(settings: Settings) -> None:
    future = AIMessage(
        content="",
        tool_calls=[
            {"name": "write_report", "args": {"month": "2999-01", "title": "t", "summary": "s"},
             "id": "w1"}
        ],
    )  # fmt: skip
    model = ScriptedModel([future, "I cannot report on a future month."])
    async with open_agent(report_writer, settings=settings, model=model) as agent:
        result = await agent.arun("Write the report for January 2999", thread_id="bad")
    assert result.success
    assert "is in the future" in result.metadata.trace[1]["observation"]
    assert await _stored(settings) == {}


class Crash(BaseException):
    """Stands in for the process dying mid-step."""


async def test_crash_and_resume_stores_each_artifact_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the chart and the HTML are stored, before the Markdown: the
    resumed run stores the Markdown and leaves the two files it finds as they were."""
    real_put = LocalArtifactStore._put
    writes: list[str] = []

    def put(self: LocalArtifactStore, artifact: Artifact, data: bytes) -> Artifact:
        if artifact.name.endswith(".md") and not writes.count("crashed"):
            writes.append("crashed")
            raise Crash()
        writes.append(artifact.name)
        return real_put(self, artifact, data)

    monkeypatch.setattr(LocalArtifactStore, "_put", put)
    async with open_agent(report_writer, settings=settings) as agent:
        with pytest.raises(Crash):
            await agent.arun(HEADLINE, thread_id="crashy")
        before = await _stored(settings)
        assert sorted(before) == sorted(n for n in writes if n != "crashed")
        stamps = {
            p.name: p.stat().st_mtime_ns
            for p in (settings.home / "artifacts").rglob("art_*")
            if p.is_file()
        }
        result = await agent.aresume("crashy")
        assert result.success, result.error
        again = await agent.aresume("crashy")  # nothing left to do: no new writes
    after = await _stored(settings)
    assert len(after) == 3
    for name, (artifact, _) in before.items():
        assert after[name][0] == artifact, "the same id and description, not written again"
    for p in (settings.home / "artifacts").rglob("art_*"):
        if p.is_file() and p.name in stamps:
            assert p.stat().st_mtime_ns == stamps[p.name], f"{p.name} was rewritten"
    month = last_month(date.today())
    _check_markdown(
        after[f"sales-{month}.md"][1].decode(), truth(settings.home / "sample.db", month)
    )
    assert again.success
    assert len(await open_artifact_store(settings).list("default")) == 3


async def test_without_a_summary_the_report_states_the_figures(settings: Settings) -> None:
    month = last_month(date.today())
    args = write_report.validate({"title": "Monthly"})
    stored = json.loads(await write_report.invoke(args, _ctx(settings)))["stored"]
    got = await open_artifact_store(settings).get("acme", stored[f"sales-{month}.md"])
    assert got is not None
    text = got[1].decode()
    t = truth(settings.home / "sample.db", month)
    summary = text.split("## Summary")[1].split("##")[0]
    assert _money(t.revenue) in summary and f"{t.change_pct:+.1f}%" in summary
    assert f"The best seller was {t.top[0][0]} with {_money(t.top[0][2])}." in summary
    _check_markdown(text, t)


async def test_replaying_the_same_call_returns_the_same_artifacts(settings: Settings) -> None:
    args = write_report.validate(
        {"month": last_month(date.today()), "title": "Monthly", "summary": "Fine."}
    )
    first = json.loads(await write_report.invoke(args, _ctx(settings, "same")))
    second = json.loads(await write_report.invoke(args, _ctx(settings, "same")))
    other = json.loads(await write_report.invoke(args, _ctx(settings, "other")))
    assert first["stored"] == second["stored"]
    assert set(first["stored"].values()).isdisjoint(other["stored"].values())
    assert len(await open_artifact_store(settings).list("acme")) == 6
    assert await open_artifact_store(settings).list("globex") == []


# ---------------------------------------------------------------------- CLI and HTTP


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "graph.py").write_text("from keel.graphs.report_writer import agent\n")
    (folder / "langgraph.json").write_text(
        json.dumps({"dependencies": ["."], "graphs": {"report_writer": "./graph.py:agent"}})
    )
    return folder / "langgraph.json"


def _keel(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=180,
        check=False,
    )


def test_keel_run_then_list_and_get_through_the_cli(project: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        KEEL_HOME=str(tmp_path / "home"),
        KEEL_CHECKPOINT_URL=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        KEEL_MODEL="scripted:report",
    )
    cwd = project.parent
    ran = _keel(
        cwd, env, "run", "--agent", "report_writer", "--json", "--thread", "cli-1", HEADLINE
    )
    assert ran.returncode == 0, ran.stderr.decode()[-2000:]
    assert json.loads(ran.stdout)["success"]
    listed = _keel(cwd, env, "artifacts", "list", "--thread", "cli-1", "--json")
    assert listed.returncode == 0, listed.stderr.decode()
    items = json.loads(listed.stdout)
    month = last_month(date.today())
    by_name = {i["name"]: i for i in items}
    assert sorted(by_name) == [
        f"sales-{month}-chart.png",
        f"sales-{month}.html",
        f"sales-{month}.md",
    ]
    assert (
        json.loads(_keel(cwd, env, "artifacts", "list", "--thread", "other", "--json").stdout) == []
    )
    md = _keel(cwd, env, "artifacts", "get", by_name[f"sales-{month}.md"]["id"])
    assert md.returncode == 0
    _check_markdown(md.stdout.decode(), truth(tmp_path / "home" / "sample.db", month))
    target = tmp_path / "chart.png"
    got = _keel(
        cwd, env, "artifacts", "get", by_name[f"sales-{month}-chart.png"]["id"], "-o", str(target)
    )
    assert got.returncode == 0, got.stderr.decode()
    _check_png(target.read_bytes())
    other_tenant = _keel(
        cwd, env, "artifacts", "get", by_name[f"sales-{month}.md"]["id"], "--tenant", "globex"
    )
    assert other_tenant.returncode == 4 and b"no artifact" in other_tenant.stderr
    assert (
        json.loads(_keel(cwd, env, "artifacts", "list", "--tenant", "globex", "--json").stdout)
        == []
    )


@contextmanager
def _server(settings: Settings, project: Path) -> Iterator[str]:
    with running_server(settings, project=load_project(project)) as url:
        yield url


async def test_http_lists_and_fetches_a_threads_artifacts_per_tenant(
    settings: Settings, project: Path
) -> None:
    secured = settings.model_copy(
        update={"service": settings.service.model_copy(update={"require_api_key": True})}
    )
    acme = (await create_key(secured, "acme", "member"))["api_key"]
    globex = (await create_key(secured, "globex", "member"))["api_key"]
    month = last_month(date.today())
    with _server(secured, project) as url:
        async with (
            httpx.AsyncClient(base_url=url, headers={"x-api-key": acme}, timeout=120) as a,
            httpx.AsyncClient(base_url=url, headers={"x-api-key": globex}, timeout=60) as g,
        ):
            tid = (await a.post("/threads", json={})).json()["thread_id"]
            run = await a.post(
                f"/threads/{tid}/runs/wait",
                json={
                    "assistant_id": "report_writer",
                    "input": {"messages": [{"role": "user", "content": HEADLINE}]},
                },
            )
            assert run.status_code == 200, run.text
            listed = await a.get(f"/threads/{tid}/artifacts")
            assert listed.status_code == 200, listed.text
            items: list[dict[str, Any]] = listed.json()
            by_name = {i["name"]: i for i in items}
            assert sorted(by_name) == [
                f"sales-{month}-chart.png", f"sales-{month}.html", f"sales-{month}.md"
            ]  # fmt: skip
            assert all(i["thread_id"] == tid and "tenant" not in i for i in items)
            md = await a.get(f"/artifacts/{by_name[f'sales-{month}.md']['id']}")
            assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
            _check_markdown(md.text, truth(settings.home / "sample.db", month))
            png = await a.get(f"/artifacts/{by_name[f'sales-{month}-chart.png']['id']}")
            assert png.headers["content-type"] == "image/png"
            _check_png(png.content)
            page = await a.get(f"/artifacts/{by_name[f'sales-{month}.html']['id']}")
            assert page.headers["content-type"].startswith("text/html")
            _check_html(page.text, truth(settings.home / "sample.db", month))
            # another tenant: neither the thread nor the artifacts exist
            assert (await g.get(f"/threads/{tid}/artifacts")).status_code == 404
            for item in items:
                assert (await g.get(f"/artifacts/{item['id']}")).status_code == 404
            assert (await a.get("/artifacts/art_" + "0" * 32)).status_code == 404
            assert (await a.get("/artifacts/not-an-id")).status_code == 422
    # the store files them under the thread's key: per tenant, `<tenant>/<id>` (docs/service.md)
    assert await open_artifact_store(settings).list("acme", thread_id=f"acme/{tid}")


# ---------------------------------------------------------------------- the eval


async def test_the_report_eval_scores_runs_against_the_raw_rows(settings: Settings) -> None:
    from keel.evals.reports import expected_figures, report_is_correct, run_report_eval

    month = last_month(date.today())
    t = truth(ensure_sample_db(settings.home), month)
    expected = expected_figures(settings.home / "sample.db", month)
    assert (expected.revenue, expected.change_pct) == (t.revenue, t.change_pct)
    assert list(expected.top) == [name for name, _, _ in t.top]
    good = await run_report_eval(settings.model_copy(update={"checkpoint_url": "memory://"}))
    assert (good.runs, good.success, good.failures) == (3, 1.0, ())
    assert 0 < good.p50_s <= good.p99_s and good.cost_per_run_usd > 0
    wrong = f"| Revenue | ${t.revenue + 1:,.2f} |"
    assert not report_is_correct(wrong + "".join(f"| {n} |" for n in expected.top), expected)
