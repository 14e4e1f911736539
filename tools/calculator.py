"""The `calculator` tool: arithmetic on a parsed syntax tree, never `eval`.

The expression is parsed with `ast.parse(mode="eval")` and walked by a small interpreter
that knows numbers, + - * / // % ** (`^` is read as `**`, as calculators do; both local
models wrote `2^20`), unary +/-, parentheses and the functions abs, round, min, max and sqrt
called by name. Everything else is refused with a message the model can
act on.

Every operand and result is bounded *before* the operation runs, because one big-integer
C call (`round(5, -10**8)` builds 10**100000000) holds the GIL and freezes the whole
process, event loop included; no timeout can stop it. Bounded: the expression's length and
nesting depth, integer sizes in digits, exponents, and `round`'s ndigits. Bounded so,
every call is brief, and the tool runs inline on the event loop (`isolation="inline"`): a
worker thread would cost a GIL hand-over each way per call and protect against nothing.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Annotated

from pydantic import Field

from keel.errors import ErrorCode, ToolInputError
from keel.tools.registry import tool

__all__ = [
    "MAX_DEPTH",
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "calculator",
    "evaluate",
    "format_number",
]

MAX_LENGTH = 500
"""Characters in an expression."""
MAX_EXPONENT = 1000
"""Largest |exponent| of `**`."""
MAX_DIGITS = 1000
"""Largest number of decimal digits of an integer operand or result (floats are IEEE
doubles); also the largest |ndigits| of `round`."""
MAX_DEPTH = 60
"""Deepest nesting of operations (parentheses, unary signs, calls)."""
SIGNIFICANT_DIGITS = 12
"""Floats are reported with this many significant digits, which hides binary noise."""

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS = ("abs", "round", "min", "max", "sqrt")
_HELP = "use numbers, + - * / // % **, parentheses and abs, round, min, max, sqrt"


def _refuse(message: str) -> ToolInputError:
    return ToolInputError(f"{message}; {_HELP}", code=ErrorCode.TOOL_REFUSED)


_SQL_START = re.compile(r"\s*\(?\s*(select|with)\b|.*\b(sum|count|avg)\s*\(", re.IGNORECASE)
"""A model that sends a query to the calculator is told where it belongs."""


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression; raise `ToolInputError` if it is not allowed."""
    if len(expression) > MAX_LENGTH:
        raise _refuse(f"the expression is {len(expression)} characters, over {MAX_LENGTH}")
    if not expression.strip():
        raise _refuse("the expression is empty")
    if _SQL_START.match(expression):
        raise _refuse("this is SQL, not arithmetic: run SQL with the sql_query tool instead")
    try:
        tree = ast.parse(expression.strip().replace("^", "**"), mode="eval")
    except (SyntaxError, ValueError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise _refuse(f"not a valid expression ({reason})") from exc
    except (RecursionError, MemoryError) as exc:
        raise _refuse("the expression is nested too deeply") from exc
    if _depth(tree.body) > MAX_DEPTH:
        raise _refuse(f"the expression is nested too deeply (more than {MAX_DEPTH} levels)")
    try:
        return _check_size(_eval(tree.body))
    except ZeroDivisionError as exc:
        raise _refuse("division by zero") from exc
    except OverflowError as exc:
        raise _refuse("the result is too large") from exc
    except RecursionError as exc:
        raise _refuse("the expression is nested too deeply") from exc


def _depth(root: ast.AST) -> int:
    """Nesting depth of the tree, found without recursion (the tree may be very deep)."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _digits(value: Number) -> int:
    """Decimal digits of an integer, from its bit length (cheap; never converts to str)."""
    return int(abs(value).bit_length() * 0.30103) + 1 if isinstance(value, int) else 0


def _check_operands(op: ast.operator, left: Number, right: Number) -> None:
    if isinstance(op, ast.Mult) and _digits(left) + _digits(right) > MAX_DIGITS + 1:
        raise _refuse(f"the product would have more than {MAX_DIGITS} digits")


def _eval(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _refuse(f"{type(value).__name__} literals like {value!r} are not allowed")
        return value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        op = _BINARY.get(type(node.op))
        if op is None:
            raise _refuse(f"the operator {type(node.op).__name__} is not allowed")
        _check_operands(node.op, left, right)
        return _check_size(op(left, right))
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY.get(type(node.op))
        if unary is None:
            raise _refuse(f"the operator {type(node.op).__name__} is not allowed")
        return unary(_eval(node.operand))
    if isinstance(node, ast.Call):
        return _check_size(_call(node))
    if isinstance(node, ast.Name):
        raise _refuse(f"names such as '{node.id}' are not allowed")
    if isinstance(node, ast.Attribute):
        raise _refuse(f"attribute access ('.{node.attr}') is not allowed")
    if isinstance(node, ast.Subscript):
        raise _refuse("indexing with [] is not allowed")
    raise _refuse(f"{type(node).__name__} expressions are not allowed")


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise _refuse(f"exponents are limited to ±{MAX_EXPONENT}, got {exponent}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        digits = exponent * math.log10(abs(base))
        if digits > MAX_DIGITS:
            raise _refuse(f"the result would have about {digits:.0f} digits (max {MAX_DIGITS})")
    result = base**exponent
    if isinstance(result, complex):
        raise _refuse("the result is not a real number (fractional power of a negative)")
    return result


def _call(node: ast.Call) -> Number:
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        raise _refuse(f"the function '{name}' is not allowed")
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise _refuse(f"call {node.func.id}() with plain positional arguments")
    name, args = node.func.id, [_eval(a) for a in node.args]
    if name in ("min", "max"):
        if not args:
            raise _refuse(f"{name}() needs at least one number")
        return min(args) if name == "min" else max(args)
    if name == "round":
        if len(args) not in (1, 2) or (len(args) == 2 and not isinstance(args[1], int)):
            raise _refuse("round(x) or round(x, ndigits) with an integer ndigits")
        if len(args) == 2 and abs(args[1]) > MAX_DIGITS:
            raise _refuse(f"round()'s ndigits is limited to ±{MAX_DIGITS}, got {args[1]}")
        return round(args[0], int(args[1])) if len(args) == 2 else round(args[0])
    if len(args) != 1:
        raise _refuse(f"{name}() takes exactly one number")
    if name == "abs":
        return abs(args[0])
    value = args[0]
    if value < 0:
        raise _refuse("sqrt() of a negative number is not a real number")
    if isinstance(value, int) and math.isqrt(value) ** 2 == value:
        return math.isqrt(value)
    return math.sqrt(value)


def _check_size(value: Number) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse("the result is too large (not a finite number)")
    if isinstance(value, int) and _digits(value) > MAX_DIGITS:
        raise _refuse(f"the result has more than about {MAX_DIGITS} digits")
    return value


def format_number(value: Number) -> str:
    """Ints exactly; floats to `SIGNIFICANT_DIGITS` significant digits, without float noise."""
    if isinstance(value, int):
        return str(value)
    return repr(float(f"{value:.{SIGNIFICANT_DIGITS}g}"))


@tool(idempotent=True, cacheable=True, isolation="inline")
def calculator(
    expression: Annotated[str, Field(description="Arithmetic on plain numbers (never SQL).")],
) -> str:
    """Evaluate an arithmetic expression and return the result.

    Supports + - * / // % ** and parentheses, and the functions abs, round, min, max, sqrt.
    """
    return format_number(evaluate(expression))
