"""The report writer's tools: a month's sales figures, and the report a person would send.

- `sales_figures(month)` reads the sales database (the sample shop unless
  `KEEL_DATABASE_URL` names another) and returns the month's revenue, orders, top products
  and the change against the month before, as JSON.
- `write_report(month, title, summary)` computes the same figures itself (the model's job is
  to pick the month and say what matters, never to copy numbers), renders Markdown, HTML and
  a matplotlib PNG chart, and stores the three as artifacts (`keel.artifacts`).

Revenue is the data assistant's rule: `SUM(quantity * unit_price)` over the items of orders
whose status is `completed` (cancelled, refunded and pending orders earn nothing); the
report says so. Figures are computed by fixed queries over the read-only connection of
`sql_query`, on SQLite and Postgres alike.

`write_report` is non-idempotent: its call is journaled, and the artifacts' ids come from
the call's idempotency key, so a replayed or resumed call finds them stored and writes
nothing twice. Its `reconcile` hook says "run it again" for a call cut off by a crash: the
store's create-once `put` keeps what was written and adds only what was missing.
"""

from __future__ import annotations

import html
import io
import json
import re
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field

from keel.artifacts import ArtifactStoreError, open_artifact_store
from keel.errors import ErrorCode, ToolInputError, ToolTransientError, UsageError
from keel.tools.registry import Reconciled, ToolContext, tool
from keel.tools.sql import execute_readonly, resolve_target

__all__ = [
    "REVENUE_RULE",
    "TOP_N",
    "MonthFigures",
    "month_figures",
    "render_chart",
    "render_html",
    "render_markdown",
    "report_tools",
    "sales_figures",
    "standard_summary",
    "write_report",
]

TOP_N = 5
"""Products in a report's table."""
MAX_TITLE = 120
MAX_SUMMARY = 2000
REVENUE_RULE = (
    "Revenue counts completed orders only: the sum of quantity × unit price charged over "
    "the items of orders with status 'completed' (cancelled, refunded and pending orders "
    "earn nothing)."
)
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_TIMEOUT_S = 10.0
_MONTH_HELP = "The month: YYYY-MM (e.g. 2026-11), or 'last month' / 'this month'."


@dataclass(frozen=True)
class Product:
    name: str
    units: int
    revenue: float


@dataclass(frozen=True)
class MonthFigures:
    """One month's figures and the month before, as the report shows them."""

    month: str
    start: str
    end: str
    """First day of the next month (the range is `start <= order_date < end`)."""
    partial: bool
    """The month is the current one: figures to date."""
    revenue: float
    completed_orders: int
    orders_by_status: dict[str, int]
    units_sold: int
    average_order_value: float | None
    top_products: list[Product]
    previous_month: str
    previous_revenue: float
    previous_completed_orders: int
    revenue_change_pct: float | None
    """None when the month before earned nothing (no base to compare with)."""
    orders_change_pct: float | None

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["revenue_rule"] = REVENUE_RULE
        return body


# ---------------------------------------------------------------------- the month


_RELATIVE = {"last month": -1, "previous month": -1, "this month": 0, "current month": 0}


def _parse_month(month: str, today: date) -> date:
    """The first day of `month` (`YYYY-MM`, `last month` or `this month`); a clear error
    for anything else."""
    this_month = today.replace(day=1)
    relative = _RELATIVE.get(" ".join(month.lower().split()))
    if relative is not None:
        return _shift(this_month, relative)
    found = _MONTH.fullmatch(month.strip())
    if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1900:
        raise ToolInputError(
            f"month must be YYYY-MM (last month is {_shift(this_month, -1):%Y-%m}) or the words "
            f"'last month' / 'this month'; got {month!r}",
            code=ErrorCode.INVALID_TOOL_ARGS,
        )
    first = date(int(found.group(1)), int(found.group(2)), 1)
    if first > today:
        raise ToolInputError(
            f"{month} is in the future (today is {today.isoformat()}); pick a month up to "
            f"{today:%Y-%m}",
            code=ErrorCode.INVALID_TOOL_ARGS,
        )
    return first


def _shift(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


# ---------------------------------------------------------------------- the queries


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    return float(value) if isinstance(value, (int, float, Decimal)) else float(str(value))


def _query(ctx: ToolContext, sql: str) -> list[list[Any]]:
    target = resolve_target(ctx.settings)
    result = execute_readonly(
        target,
        sql,
        row_cap=200,
        timeout_s=_TIMEOUT_S,
        allow_superuser=ctx.settings.sql.allow_superuser,
    )
    return result.rows


def _range(start: date, end: date) -> str:
    # ISO dates checked above: no user text reaches the SQL
    return f"o.order_date >= '{start.isoformat()}' AND o.order_date < '{end.isoformat()}'"


def _totals(ctx: ToolContext, start: date, end: date) -> tuple[float, int, int, dict[str, int]]:
    """Revenue, units sold, completed orders and orders by status in [start, end)."""
    where = _range(start, end)
    money = _query(
        ctx,
        "SELECT SUM(oi.quantity * oi.unit_price), SUM(oi.quantity) FROM order_items oi "
        f"JOIN orders o ON o.id = oi.order_id WHERE o.status = 'completed' AND {where}",
    )
    statuses = _query(
        ctx, f"SELECT o.status, COUNT(*) FROM orders o WHERE {where} GROUP BY o.status"
    )
    by_status = {str(s): int(n) for s, n in statuses}
    revenue, units = money[0] if money else (None, None)
    return (
        round(_number(revenue), 2),
        int(_number(units)),
        by_status.get("completed", 0),
        dict(sorted(by_status.items())),
    )


def _top_products(ctx: ToolContext, start: date, end: date) -> list[Product]:
    rows = _query(
        ctx,
        "SELECT p.name, SUM(oi.quantity), SUM(oi.quantity * oi.unit_price) AS revenue "
        "FROM order_items oi JOIN orders o ON o.id = oi.order_id "
        "JOIN products p ON p.id = oi.product_id "
        f"WHERE o.status = 'completed' AND {_range(start, end)} "
        f"GROUP BY p.id, p.name ORDER BY revenue DESC, p.name LIMIT {TOP_N}",
    )
    return [Product(str(n), int(_number(u)), round(_number(r), 2)) for n, u, r in rows]


def _coverage(ctx: ToolContext) -> str:
    rows = _query(ctx, "SELECT MIN(o.order_date), MAX(o.order_date) FROM orders o")
    low, high = rows[0] if rows else (None, None)
    if not low:
        return "the database has no orders at all"
    return f"the data covers {str(low)[:7]} to {str(high)[:7]}"


def _change(now: float, before: float) -> float | None:
    return round((now - before) / before * 100, 1) if before else None


def month_figures(ctx: ToolContext, month: str, *, today: date | None = None) -> MonthFigures:
    """The figures of `month` (`YYYY-MM`) and of the month before.

    Raises `ToolInputError` for a malformed or future month, or one with no orders.
    """
    today = today or date.today()
    start = _parse_month(month, today)
    end = _shift(start, 1)
    before = _shift(start, -1)
    revenue, units, completed, by_status = _totals(ctx, start, end)
    if not by_status:
        raise ToolInputError(
            f"there are no orders in {start:%Y-%m}; {_coverage(ctx)}",
            code=ErrorCode.INVALID_TOOL_ARGS,
        )
    prev_revenue, _, prev_completed, _ = _totals(ctx, before, start)
    return MonthFigures(
        month=f"{start:%Y-%m}",
        start=start.isoformat(),
        end=end.isoformat(),
        partial=end > today,
        revenue=revenue,
        completed_orders=completed,
        orders_by_status=by_status,
        units_sold=units,
        average_order_value=round(revenue / completed, 2) if completed else None,
        top_products=_top_products(ctx, start, end),
        previous_month=f"{before:%Y-%m}",
        previous_revenue=prev_revenue,
        previous_completed_orders=prev_completed,
        revenue_change_pct=_change(revenue, prev_revenue),
        orders_change_pct=_change(completed, prev_completed),
    )


# ---------------------------------------------------------------------- rendering


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def _pct(value: float | None) -> str:
    return "n/a (no revenue the month before)" if value is None else f"{value:+.1f}%"


def _month_name(month: str) -> str:
    return date.fromisoformat(f"{month}-01").strftime("%B %Y")


def _share(product: Product, figures: MonthFigures) -> str:
    return f"{product.revenue / figures.revenue * 100:.1f}%" if figures.revenue else "n/a"


def _headline(f: MonthFigures) -> list[tuple[str, str]]:
    placed = sum(f.orders_by_status.values())
    others = ", ".join(f"{n} {s}" for s, n in f.orders_by_status.items() if s != "completed")
    return [
        ("Revenue", _money(f.revenue)),
        (f"Revenue in {_month_name(f.previous_month)}", _money(f.previous_revenue)),
        ("Change in revenue", _pct(f.revenue_change_pct)),
        ("Completed orders", f"{f.completed_orders:,} of {placed:,} placed ({others or 'none'})"),
        (
            f"Completed orders in {_month_name(f.previous_month)}",
            f"{f.previous_completed_orders:,}",
        ),
        ("Change in completed orders", _pct(f.orders_change_pct)),
        ("Units sold", f"{f.units_sold:,}"),
        ("Average order value", _money(f.average_order_value)),
    ]


def standard_summary(f: MonthFigures) -> str:
    """What the figures say, in one paragraph: used when the model gives no summary."""
    if f.revenue_change_pct is None:
        versus = f"with no revenue in {_month_name(f.previous_month)} to compare with"
    else:
        versus = (
            f"{f.revenue_change_pct:+.1f}% against {_month_name(f.previous_month)} "
            f"({_money(f.previous_revenue)})"
        )
    text = (
        f"Revenue in {_month_name(f.month)} was {_money(f.revenue)}, {versus}, from "
        f"{f.completed_orders:,} completed orders."
    )
    if f.top_products:
        best = f.top_products[0]
        text += f" The best seller was {best.name} with {_money(best.revenue)}."
    return text


def render_markdown(f: MonthFigures, title: str, summary: str, chart_name: str) -> str:
    """The report as Markdown; the chart is referenced by its artifact name."""
    lines = [f"# {title}", "", f"*Sales report for {_month_name(f.month)}*"]
    if f.partial:
        lines.append(f"*The month is not over: figures up to {date.today().isoformat()}.*")
    lines += ["", "## Summary", "", summary or standard_summary(f), "", "## Key figures", ""]
    lines += ["| Figure | Value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _headline(f)]
    lines += ["", f"## Top {len(f.top_products)} products by revenue", ""]
    lines += ["| # | Product | Units | Revenue | Share of revenue |", "|---|---|---:|---:|---:|"]
    lines += [
        f"| {i} | {p.name} | {p.units:,} | {_money(p.revenue)} | {_share(p, f)} |"
        for i, p in enumerate(f.top_products, 1)
    ]
    lines += ["", f"![Revenue chart]({chart_name})", "", "## How the figures are computed", ""]
    lines += [
        REVENUE_RULE,
        f"Orders are counted by order date, {f.start} up to (not including) {f.end}.",
        "",
    ]
    return "\n".join(lines)


def render_html(f: MonthFigures, title: str, summary: str, chart_name: str) -> str:
    """The report as a self-contained HTML page (the chart by its artifact name)."""
    e = html.escape
    rows = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _headline(f))
    products = "\n".join(
        f"<tr><td>{i}</td><td>{e(p.name)}</td><td class='n'>{p.units:,}</td>"
        f"<td class='n'>{e(_money(p.revenue))}</td><td class='n'>{e(_share(p, f))}</td></tr>"
        for i, p in enumerate(f.top_products, 1)
    )
    partial = (
        f"<p><em>The month is not over: figures up to {date.today().isoformat()}.</em></p>"
        if f.partial
        else ""
    )
    paragraphs = "".join(f"<p>{e(p)}</p>" for p in (summary or standard_summary(f)).split("\n\n"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:52em;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}th,td{{border:1px solid #ccc;padding:.3em .6em}}
th{{text-align:left;background:#f4f4f4}}td.n{{text-align:right}}</style></head>
<body>
<h1>{e(title)}</h1>
<p><em>Sales report for {e(_month_name(f.month))}</em></p>
{partial}<h2>Summary</h2>
{paragraphs}
<h2>Key figures</h2>
<table id="figures">
{rows}
</table>
<h2>Top {len(f.top_products)} products by revenue</h2>
<table id="top-products">
<thead><tr><th>#</th><th>Product</th><th>Units</th><th>Revenue</th>
<th>Share of revenue</th></tr></thead>
<tbody>
{products}
</tbody>
</table>
<p><img src="{e(chart_name)}" alt="Revenue chart"></p>
<h2>How the figures are computed</h2>
<p>{e(REVENUE_RULE)} Orders are counted by order date, {f.start} up to (not including) {f.end}.</p>
</body></html>
"""


def render_chart(f: MonthFigures) -> bytes:
    """A PNG: the top products' revenue, and the month's revenue against the month before.

    Drawn with the Agg canvas and no pyplot, so concurrent calls share no global figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, width_ratios=[2, 1])
    names = [p.name for p in reversed(f.top_products)]
    left.barh(names, [p.revenue for p in reversed(f.top_products)], color="#4C72B0")
    left.set_title(f"Top products by revenue, {_month_name(f.month)}")
    left.set_xlabel("Revenue (USD)")
    left.xaxis.set_major_formatter(StrMethodFormatter("${x:,.0f}"))
    months = [_month_name(f.previous_month), _month_name(f.month)]
    bars = right.bar(months, [f.previous_revenue, f.revenue], color=["#999999", "#4C72B0"])
    right.bar_label(bars, labels=[_money(f.previous_revenue), _money(f.revenue)], fontsize=8)
    right.yaxis.set_major_formatter(StrMethodFormatter("${x:,.0f}"))
    right.set_title(f"Revenue ({_pct(f.revenue_change_pct).split(' ')[0]})")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


# ---------------------------------------------------------------------- the tools


@tool(idempotent=True, cacheable=False)
def sales_figures(
    ctx: ToolContext,
    month: Annotated[str, Field(description=_MONTH_HELP)] = "last month",
) -> str:
    """Compute one month's sales figures: revenue, orders, top products, change vs the month
    before.

    Returns JSON. Revenue counts completed orders only."""
    figures = month_figures(ctx, month)
    body = figures.to_json()
    body["next_step"] = (
        f"The report is not written yet: call write_report with month '{figures.month}', "
        "a title and a short summary to write and store it."
    )
    return json.dumps(body)


def _again(_key: str) -> Reconciled:
    """A write cut off by a crash is run again: `put` is create-once per key and name, so
    the artifacts already stored are kept and only the missing ones are written."""
    return Reconciled.not_done()


@tool(reconcile=_again, timeout_s=60)
async def write_report(
    title: Annotated[
        str, Field(min_length=1, max_length=MAX_TITLE, description="The report's title.")
    ],
    ctx: ToolContext,
    month: Annotated[str, Field(description=_MONTH_HELP)] = "last month",
    summary: Annotated[
        str,
        Field(
            max_length=MAX_SUMMARY,
            description="A few sentences for the reader: what changed and what stands out "
            "(empty: a summary is written from the figures).",
        ),
    ] = "",
) -> str:
    """Write the month's sales report (Markdown, HTML and a PNG chart) and store it.

    The figures are computed from the database, not taken from the arguments. Returns the
    stored artifacts' ids and the headline figures as JSON."""
    import asyncio

    figures = await asyncio.to_thread(month_figures, ctx, month)
    chart_name = f"sales-{figures.month}-chart.png"
    chart = await asyncio.to_thread(render_chart, figures)
    title, summary = title.strip(), summary.strip()
    files = [  # the Markdown last: when it is stored, the report is complete
        (chart_name, chart, "image/png"),
        (
            f"sales-{figures.month}.html",
            render_html(figures, title, summary, chart_name).encode(),
            "text/html; charset=utf-8",
        ),
        (
            f"sales-{figures.month}.md",
            render_markdown(figures, title, summary, chart_name).encode(),
            "text/markdown; charset=utf-8",
        ),
    ]
    store = open_artifact_store(ctx.settings)
    stored = {}
    try:
        for name, data, content_type in files:
            artifact = await store.put(
                tenant=ctx.tenant,
                thread_id=ctx.thread_id or "-",
                run_id=ctx.run_id,
                key=ctx.idempotency_key,
                name=name,
                data=data,
                content_type=content_type,
                metadata={"kind": "sales-report", "month": figures.month, "title": title},
            )
            stored[name] = artifact.id
    except ArtifactStoreError as exc:
        raise ToolTransientError(f"could not store the report: {exc.message}") from exc
    except UsageError as exc:
        raise ToolInputError(exc.message, code=ErrorCode.TOOL_REFUSED) from exc
    return json.dumps(
        {
            "stored": stored,
            "month": figures.month,
            "previous_month": figures.previous_month,
            "revenue": figures.revenue,
            "previous_revenue": figures.previous_revenue,
            "revenue_change_pct": figures.revenue_change_pct,
            "completed_orders": figures.completed_orders,
            "top_products": [{"name": p.name, "revenue": p.revenue} for p in figures.top_products],
            "note": "Fetch with `keel artifacts get ID` or GET /artifacts/ID.",
        }
    )


def report_tools() -> list[Any]:
    """The report writer's tools: `write_report` alone. It computes every figure itself; with
    `sales_figures` beside it the 0.5B local model called that one and then said the report
    was written. `sales_figures` stays available to other agents."""
    return [write_report]
