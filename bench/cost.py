"""What model tiers and caches save: cost per run, latency and cache hit rates.

```bash
.venv/bin/python bench/cost.py                       # 600 runs per configuration, ~1 min
.venv/bin/python bench/cost.py --runs 1000 --latency-ms 100 --json
```
A workload of `--runs` questions drawn from a pool of 120 with a Zipf skew (a few
questions are asked very often, most rarely), from one tenant (`--tenants 3`: three
tenants with 60/30/10 % of the traffic, each with its own cache entries). A third of
the pool is a short lookup, a third a top-N question, a third a comparison needing
analysis; each takes 2–4 model calls and 1–3 tool calls. The scripted model answers like a
good model would and waits `--latency-ms` per call; calls are priced at the hosted prices of
the model each tier names (`scripted:gpt-4.1-nano` costs what `gpt-4.1-nano` costs).

Configurations, each on a fresh agent (memory saver, same workload, same seed):
- (a) `baseline`: one model (`gpt-4.1`, able to handle every question), no cache;
- (b) `tiers`: simple/standard/complex = gpt-4.1-nano / gpt-4.1-mini / gpt-4.1, no cache;
- (c) `tiers+caches`: (b) plus the model-response, tool-result and whole-run caches
  (in-memory backend by default, `--cache-backend sqlite|redis`; tenant-scoped keys).
Latency is each `arun` call's wall time; "cached P50" is over runs answered by the run cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from keel import ToolRegistry, calculator, load_settings, open_agent, tool
from keel.cache import open_caches
from keel.testing import CallInfo, FunctionModel, Reply

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August"]
REGIONS = ["north", "south", "east", "west", "central"]
TIERS = {
    "simple": "scripted:gpt-4.1-nano",
    "standard": "scripted:gpt-4.1-mini",
    "complex": "scripted:gpt-4.1",
}
BASELINE_MODEL = "scripted:gpt-4.1"
TENANTS = (("acme", 0.6), ("globex", 0.3), ("initech", 0.1))
"""With `--tenants 3`: tenants and their shares of the traffic (caches are per tenant)."""


def _figure(*parts: str) -> int:
    """A deterministic 'database' figure for a metric."""
    return 1000 + sum(ord(c) * (i + 7) for i, c in enumerate("|".join(parts))) % 90_000


@tool(cacheable=True)
def revenue(region: str, month: str) -> str:
    """Revenue, orders and the top products of a region in a month (from the warehouse)."""
    rows = [
        {"product": f"{region}-{k}", "revenue": _figure(region, month, str(k))} for k in range(8)
    ]
    return json.dumps(
        {"region": region, "month": month, "orders": _figure(month, region) // 10, "rows": rows}
    )


def question_pool() -> list[tuple[str, str]]:
    """120 distinct questions: (text, kind) with kind simple / standard / complex."""
    pool: list[tuple[str, str]] = []
    for m in MONTHS:
        for r in REGIONS:
            pool.append((f"How many orders did the {r} region have in {m}?", "simple"))
            pool.append(
                (f"Which 3 products had the highest revenue in the {r} region in {m}?", "standard")
            )
            other = MONTHS[(MONTHS.index(m) + 1) % len(MONTHS)]
            pool.append(
                (
                    f"Compare revenue of the {r} region in {m} versus {other} and explain why "
                    "the trend changed",
                    "complex",
                )
            )
    return pool


def workload(runs: int, seed: int, s: float = 1.1, tenants: int = 1) -> list[tuple[str, str, str]]:
    """`runs` (question, kind, tenant) triples: Zipf over a shuffled pool, skewed tenants."""
    rng = random.Random(seed)
    pool = question_pool()
    rng.shuffle(pool)
    weights = [1 / (rank + 1) ** s for rank in range(len(pool))]
    picks = rng.choices(pool, weights=weights, k=runs)
    shares = TENANTS[:tenants] if tenants > 1 else (("default", 1.0),)
    names = rng.choices([t for t, _ in shares], weights=[w for _, w in shares], k=runs)
    return [(q, kind, tenant) for (q, kind), tenant in zip(picks, names, strict=True)]


def _question(messages: list[BaseMessage]) -> str:
    return next(str(m.content) for m in messages if isinstance(m, HumanMessage))


def _call(name: str, args: dict[str, Any], index: int) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"c{index}"}])


def analyst(messages: list[BaseMessage], info: CallInfo) -> Reply:
    """What a good model does for each kind of question (tool calls, then a grounded answer)."""
    q = _question(messages)
    seen = [str(m.content) for m in messages if isinstance(m, ToolMessage)]
    months = [m for m in MONTHS if m in q]
    region = next(r for r in REGIONS if f"the {r} region" in q)
    if q.startswith("How many"):
        if not seen:
            return _call("revenue", {"region": region, "month": months[0]}, info.index)
        return f"The {region} region had {json.loads(seen[0])['orders']} orders in {months[0]}."
    if q.startswith("Which 3"):
        if not seen:
            return _call("revenue", {"region": region, "month": months[0]}, info.index)
        rows = sorted(json.loads(seen[0])["rows"], key=lambda r: -r["revenue"])[:3]
        if len(seen) == 1:
            expr = " + ".join(str(r["revenue"]) for r in rows)
            return _call("calculator", {"expression": expr}, info.index)
        names = ", ".join(f"{r['product']} ({r['revenue']})" for r in rows)
        return f"Top 3 in {region}, {months[0]}: {names}; together {seen[1]}."
    first, second = months[0], months[1] if len(months) > 1 else months[0]
    if len(seen) < 2:
        month = first if not seen else second
        return _call("revenue", {"region": region, "month": month}, info.index)
    if len(seen) == 2:
        sums = [" + ".join(str(r["revenue"]) for r in json.loads(s)["rows"]) for s in seen]
        return _call("calculator", {"expression": f"({sums[1]}) - ({sums[0]})"}, info.index)
    trend = "rose" if float(seen[2]) > 0 else "fell"
    return (
        f"Revenue in the {region} region {trend} by {seen[2].lstrip('-')} from {first} to "
        f"{second}, driven by its top products."
    )


@dataclass
class Outcome:
    config: str
    latencies: list[float] = field(default_factory=list)
    cached_latencies: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    successes: int = 0
    calls_by_tier: dict[str, int] = field(default_factory=dict)
    hit_rates: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def row(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        p = lambda q: lat[min(int(q * len(lat)), len(lat) - 1)] * 1000  # noqa: E731
        cached = statistics.median(self.cached_latencies) * 1000 if self.cached_latencies else None
        return {
            "config": self.config,
            "runs": len(self.latencies),
            "success_pct": round(100 * self.successes / max(len(self.latencies), 1), 1),
            "cost_per_run_usd": sum(self.costs) / max(len(self.costs), 1),
            "total_usd": sum(self.costs),
            "p50_ms": round(p(0.50), 1),
            "p99_ms": round(p(0.99), 1),
            "cached_p50_ms": round(cached, 2) if cached is not None else None,
            "hit_rates": {k: round(v, 3) for k, v in self.hit_rates.items()},
            "model_calls": dict(self.calls_by_tier),
            "wall_s": round(self.wall_s, 1),
        }


async def run_config(
    config: str,
    runs: list[tuple[str, str, str]],
    *,
    latency_s: float,
    concurrency: int,
    home: Path,
    backend: str = "memory",
    redis_url: str | None = None,
) -> Outcome:
    tiered = config != "baseline"
    cached = config == "tiers+caches"
    specs = TIERS if tiered else {"standard": BASELINE_MODEL}
    models = {
        tier: FunctionModel(fn=analyst, model_name=spec, latency_s=latency_s)
        for tier, spec in specs.items()
    }
    settings = load_settings(
        model=specs["standard"],
        model_tiers=TIERS if tiered else {},
        checkpoint_url="memory://",
        home=home,
        cache={"backend": backend, "runs": True, "model_responses": True}
        if cached
        else {"backend": "none"},
        redis_url=redis_url,
        cost={"routing": tiered},
    )
    outcome = Outcome(config)
    registry = ToolRegistry.of([revenue, calculator])
    namespace = f"keel-bench-{uuid.uuid4().hex[:8]}"  # a fresh Redis key space per run
    caches = open_caches(settings, namespace=namespace)
    async with open_agent(settings, tools=registry, tier_models=models, caches=caches) as agent:
        gate = asyncio.Semaphore(concurrency)

        async def one(question: str, tenant: str) -> None:
            async with gate:
                started = time.perf_counter()
                result = await agent.arun(question, tenant=tenant)
                elapsed = time.perf_counter() - started
            outcome.latencies.append(elapsed)
            outcome.costs.append(float(result.metadata.total_cost))
            outcome.successes += int(result.success)
            if result.metadata.cache == "hit":
                outcome.cached_latencies.append(elapsed)

        started = time.perf_counter()
        await asyncio.gather(*(one(q, tenant) for q, _, tenant in runs))
        outcome.wall_s = time.perf_counter() - started
        caches = agent.context.caches
        if caches is not None and cached:
            answered = len(outcome.cached_latencies) / max(len(outcome.latencies), 1)
            outcome.hit_rates = {
                "run": answered,  # runs answered from the run cache (not look-ups)
                "model": caches.hit_rate("model"),
                "tool": caches.hit_rate("tool"),
            }
    outcome.calls_by_tier = {tier: m.calls for tier, m in models.items()}
    if cached and backend == "redis" and redis_url:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
        client.close()
    return outcome


def table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]["cost_per_run_usd"] or 1.0
    lines = [
        "| config | cost/run (USD) | vs (a) | P50 ms | P99 ms | cached-run P50 ms "
        "| hit rate run / model / tool | model calls simple / standard / complex | success |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        hits = r["hit_rates"]
        hit = f"{hits['run']:.0%} / {hits['model']:.0%} / {hits['tool']:.0%}" if hits else "–"
        calls = r["model_calls"]
        per_tier = " / ".join(str(calls.get(t, 0)) for t in ("simple", "standard", "complex"))
        saving = 1 - r["cost_per_run_usd"] / base
        cached = r["cached_p50_ms"] if r["cached_p50_ms"] is not None else "–"
        lines.append(
            f"| {r['config']} | {r['cost_per_run_usd']:.6f} | -{saving:.1%} | {r['p50_ms']} "
            f"| {r['p99_ms']} | {cached} | {hit} | {per_tier} | {r['success_pct']}% |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = workload(args.runs, args.seed, tenants=args.tenants)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in ("baseline", "tiers", "tiers+caches"):
            outcome = await run_config(
                config,
                runs,
                latency_s=args.latency_ms / 1000,
                concurrency=args.concurrency,
                home=Path(tmp),
                backend=args.cache_backend,
                redis_url=args.redis_url,
            )
            rows.append(outcome.row())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=600)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tenants", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--cache-backend", default="memory", choices=("memory", "sqlite", "redis"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    distinct = len({q for q, _, _ in workload(args.runs, args.seed)})
    print(
        f"{args.runs} runs, {distinct} distinct questions (Zipf s=1.1), {args.tenants} tenant(s), "
        f"model latency {args.latency_ms:g} ms, concurrency {args.concurrency}\n"
    )
    print(table(rows))
    saving = 1 - rows[2]["cost_per_run_usd"] / rows[0]["cost_per_run_usd"]
    print(f"\n(c) costs {saving:.1%} less than (a); cached-run P50 {rows[2]['cached_p50_ms']} ms")


if __name__ == "__main__":
    main()
