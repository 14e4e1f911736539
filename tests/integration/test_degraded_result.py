"""A degraded run (the fallback's tool-free direct answer) is told apart from a normal one,
and model calls are counted as calls, not as trace rows.

- the result says `degraded` (its JSON keys stay, plus the new one) and so does the state's
  `outcome`; the run is counted `status="degraded"`;
- the direct answer is a model call in the metrics, and `metadata.model_calls` is what the
  model was really asked;
- a routed step records one model call per call it made, not one per trace row.
"""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.messages import AIMessage, BaseMessage
from prometheus_client import REGISTRY

from keel.config import Settings
from keel.errors import ErrorCode, ModelCallError
from keel.evals.scorecard import Outcome, Report
from keel.runtime import open_agent
from keel.testing.scripted import CallInfo, FunctionModel, Reply, ScriptedModel
from keel.tools.registry import ToolRegistry

RESULT_KEYS = {"output", "success", "error", "thread_id", "metadata", "error_code", "status"}
TIERS = {"simple": "scripted:cheap", "standard": "scripted:mid"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_direct_answer_is_a_degraded_success(
    settings_factory: Callable[..., Settings],
) -> None:
    too_long = ModelCallError(
        "context too long", kind="degradable", code=ErrorCode.CONTEXT_TOO_LONG
    )
    model = ScriptedModel([too_long, AIMessage("Paris.")])
    settings = settings_factory()
    runs_before = sample("keel_runs_total", status="degraded", tier="standard")
    label = settings.model  # the model label the metrics use
    ok_before = sample("keel_model_calls_total", model=label, outcome="ok")
    error_before = sample("keel_model_calls_total", model=label, outcome="error")
    async with open_agent(settings, model=model) as agent:
        result = await agent.arun("Capital of France?")
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert [s["signal"] for s in result.metadata.trace if s["node"] == "fallback"] == [
        "direct_answer"
    ]
    assert result.success and result.output == "Paris."
    assert result.degraded, "a fallback answer is not a plain success"
    assert state["outcome"]["degraded"] is True
    as_json = result.to_dict()
    assert set(as_json) == RESULT_KEYS | {"degraded"} and as_json["degraded"] is True

    assert model.calls == 2
    assert result.metadata.model_calls == 2, "the direct answer is a model call"
    assert sample("keel_runs_total", status="degraded", tier="standard") - runs_before == 1
    ok = sample("keel_model_calls_total", model=label, outcome="ok") - ok_before
    error = sample("keel_model_calls_total", model=label, outcome="error")
    assert (ok, error - error_before) == (1, 1), "the direct answer was counted as a call"


async def test_a_normal_answer_is_not_degraded(settings_factory: Callable[..., Settings]) -> None:
    model = ScriptedModel([AIMessage("Paris.")])
    async with open_agent(settings_factory(), model=model) as agent:
        result = await agent.arun("Capital of France?")
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success and not result.degraded and result.to_dict()["degraded"] is False
    assert state["outcome"]["degraded"] is False
    assert result.metadata.model_calls == 1


async def test_a_routed_step_counts_its_calls_not_its_rows(
    settings_factory: Callable[..., Settings],
) -> None:
    """A `reason` update with a route row and a model row is one model call: it was
    recorded twice, each with the whole step's usage."""
    calls: list[str] = []

    def answering(name: str) -> FunctionModel:
        def fn(messages: list[BaseMessage], info: CallInfo) -> Reply:
            calls.append(name)
            return AIMessage(f"answer from {name}")

        return FunctionModel(fn=fn, model_name=name)

    settings = settings_factory(model_tiers=TIERS, pricing={})
    before = {n: sample("keel_model_calls_total", model=n, outcome="ok") for n in TIERS.values()}
    before_any = sum(before.values()) + sample(
        "keel_model_calls_total", model=settings.model, outcome="ok"
    )
    models = {tier: answering(spec) for tier, spec in TIERS.items()}
    async with open_agent(settings, tools=ToolRegistry(), tier_models=models) as agent:
        result = await agent.arun("How many customers are there?")
    assert result.success and len(calls) == 1
    assert [s["node"] for s in result.metadata.trace][:2] == ["route", "reason"]
    after_any = sum(
        sample("keel_model_calls_total", model=n, outcome="ok") for n in TIERS.values()
    ) + sample("keel_model_calls_total", model=settings.model, outcome="ok")
    assert after_any - before_any == 1, "one call, one count (the route row is no call)"
    assert result.metadata.model_calls == 1


def test_the_scorecard_shows_degraded_runs_apart() -> None:
    report = Report("x")
    report.outcomes = [
        Outcome(ok=True, answered=True, seconds=0.1, model_calls=2, faults=1, degraded=True),
        Outcome(ok=True, answered=True, seconds=0.1, model_calls=1, faults=0),
    ]
    row = report.row()
    assert row["success"] == 100.0 and row["degraded"] == 50.0


async def test_a_degraded_answer_is_not_served_from_the_run_cache(
    settings_factory: Callable[..., Settings],
) -> None:
    too_long = ModelCallError(
        "context too long", kind="degradable", code=ErrorCode.CONTEXT_TOO_LONG
    )
    model = ScriptedModel([too_long, AIMessage("Paris."), AIMessage("Paris, France.")])
    settings = settings_factory(cache={"runs": True})
    async with open_agent(settings, model=model) as agent:
        first = await agent.arun("Capital of France?")
        again = await agent.arun("Capital of France?")
    assert first.degraded
    assert again.metadata.cache is None, "a fallback's answer must not be repeated as a hit"
    assert again.output == "Paris, France." and not again.degraded
