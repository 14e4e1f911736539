"""The `calculator` tool: right answers, clear refusals, bounded work, no `eval`."""

from __future__ import annotations

import ast
import importlib
import inspect
import operator
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keel.config import Settings
from keel.errors import ErrorCode, ToolInputError
from keel.tools import ToolContext, calculator, default_tools
from keel.tools.calculator import evaluate, format_number


async def run(expression: str) -> str:
    args = calculator.validate({"expression": expression})
    return await calculator.invoke(args, ToolContext(Settings(), tool_call_id="c1"))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2*(3+4)", "14"),
        ("1 + 2 * 3 - 4", "3"),
        ("0.1 + 0.2", "0.3"),
        ("10 / 4", "2.5"),
        ("7 / 7", "1.0"),
        ("10 // 3", "3"),
        ("-7 // 2", "-4"),
        ("-7 % 3", "2"),
        ("2 ** 10", "1024"),
        ("2^20", "1048576"),  # ^ is power, as on calculators (not Python's xor)
        ("2^3 + 1", "9"),  # with power's precedence
        ("2 ** -2", "0.25"),
        ("-3 ** 2", "-9"),
        ("(-3) ** 2", "9"),
        ("+-+5", "-5"),
        ("2 ** 0.5", "1.41421356237"),
        ("sqrt(16)", "4"),
        ("sqrt(2.25)", "1.5"),
        ("abs(-2.5)", "2.5"),
        ("round(2.567, 2)", "2.57"),
        ("round(7.5)", "8"),
        ("min(3, 1, 2)", "1"),
        ("max(3, 1.5, 2)", "3"),
        ("(1200 - 950) / 950 * 100", "26.3157894737"),
        ("1e-12 * 3", "3e-12"),
        ("1_000 * 2", "2000"),
        ("2 ** 1000 % 1000", "376"),
        ("12345678901234567890 * 98765432109876543210",
         "1219326311370217952237463801111263526900"),
    ],
)  # fmt: skip
async def test_results(expression: str, expected: str) -> None:
    assert await run(expression) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("x + 1", "names"),
        ("pi * 2", "names"),
        ("(1).real", "attribute"),
        ("abs.__class__", "attribute"),
        ("__import__('os')", "'__import__' is not allowed"),
        ("__import__('os').system('true')", "__import__('os').system' is not allowed"),
        ("open('/etc/passwd')", "'open' is not allowed"),
        ("math.sqrt(4)", "not allowed"),
        ("[1, 2][0]", "indexing"),
        ("'a' * 3", "str literals"),
        ("True + 1", "bool literals"),
        ("lambda: 1", "Lambda"),
        ("[x for x in (1, 2)]", "ListComp"),
        ("1 if 1 else 2", "IfExp"),
        ("1 < 2", "Compare"),
        ("1 << 5", "operator"),
        ("~1", "operator"),
        ("1j * 2", "complex literals"),
        ("abs(x=1)", "positional"),
        ("max(*(1, 2))", "positional"),
        ("9**9**9", "exponents are limited"),
        ("10**100000", "exponents are limited"),
        ("2**-5000", "exponents are limited"),
        ("99**999", "digits"),
        ("10**999 * 10**999", "digits"),
        ("1e308 * 10", "too large"),
        ("10.0 ** 400", "too large"),
        ("1 / 0", "division by zero"),
        ("5 // 0", "division by zero"),
        ("5 % 0.0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("(-8) ** 0.5", "not a real number"),
        ("sqrt(-1)", "not a real number"),
        ("round(1.5, 0.5)", "integer ndigits"),
        ("min()", "at least one"),
        ("1 +", "not a valid expression"),
        ("", "empty"),
        ("1" + " + 1" * 200, "characters"),
    ],
)
async def test_refusals_explain_themselves(expression: str, reason: str) -> None:
    with pytest.raises(ToolInputError) as info:
        await run(expression)
    assert reason in info.value.message
    assert info.value.code is ErrorCode.TOOL_REFUSED


def test_huge_powers_are_refused_before_any_work() -> None:
    started = time.monotonic()
    for expression in ("9**9**9", "10**100000", "(10**999)**(10**999)", "999999999**999"):
        with pytest.raises(ToolInputError):
            evaluate(expression)
    assert time.monotonic() - started < 0.5


def test_deep_nesting_is_refused_not_crashing() -> None:
    for expression in ("(" * 240 + "1" + ")" * 240, "-" * 499 + "1"):
        try:
            assert evaluate(expression) in (1, -1)
        except ToolInputError as exc:
            assert "nested" in exc.message or "valid" in exc.message


_OPS: dict[str, Callable[[int, int], int | float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "//": operator.floordiv,
    "%": operator.mod,
}


@given(
    st.integers(-(10**12), 10**12),
    st.sampled_from(sorted(_OPS)),
    st.integers(-(10**12), 10**12).filter(bool),
)
def test_integer_arithmetic_matches_python(a: int, op: str, b: int) -> None:
    assert evaluate(f"({a}) {op} ({b})") == _OPS[op](a, b)


@given(st.floats(-1e6, 1e6, allow_nan=False), st.floats(-1e6, 1e6, allow_nan=False))
def test_float_results_are_rounded_only_cosmetically(a: float, b: float) -> None:
    result = float(format_number(evaluate(f"({a!r}) + ({b!r})")))
    assert result == pytest.approx(a + b, rel=1e-11, abs=1e-9)


def test_module_never_evaluates_code() -> None:
    # `tools.calculator` is the re-exported Tool, so fetch the module itself.
    tree = ast.parse(inspect.getsource(importlib.import_module("keel.tools.calculator")))
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"eval", "exec", "compile", "__import__"}


def test_default_tools_is_a_fresh_registry_each_call() -> None:
    first, second = default_tools(), default_tools()
    assert first.names() == ["sql_query", "calculator"]
    assert first is not second
    assert first.get("calculator") is calculator
    assert first.get("calculator").cacheable  # type: ignore[union-attr]
    assert "ctx" not in str(first.get("sql_query").openai_schema())  # type: ignore[union-attr]


# Issue 18 item 7: each of these was one C call holding the GIL (the whole process froze:
# `round(5, -10**8)` builds 10**100000000). Every operand is bounded before it runs.
@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("round(5, -10**8)", "ndigits is limited"),
        ("round(5, -(10**8))", "ndigits is limited"),
        ("round(5.5, 10**9)", "ndigits is limited"),
        ("round(10**999, -(10**6))", "ndigits is limited"),
        ("(10**999) * (10**999)", "digits"),
        ("max(10**999, 1) * 10**999", "digits"),
        ("-" * 200 + "1", "nested too deeply"),
        ("abs(" * 70 + "1" + ")" * 70, "nested too deeply"),
    ],
)
def test_hostile_operands_are_refused_at_once(expression: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(ToolInputError) as info:
        evaluate(expression)
    assert reason in info.value.message
    assert time.monotonic() - started < 0.5


def test_bounds_leave_ordinary_rounding_alone() -> None:
    assert evaluate("round(1234567, -3)") == 1235000
    assert evaluate("round(10**999, -998)") == 10**999
    assert evaluate("round(2.5678, 1000)") == 2.5678
