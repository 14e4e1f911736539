"""Which SQL functions `sql_query` may call, and how the database spells names.

Postgres has functions that run SQL text (`query_to_xml`, `table_to_xml`, `dblink`, …), read
files (`pg_read_file`) or act on the server (`pg_terminate_backend`, `pg_stat_reset`, …). A
deny-list misses the next one, so a query may call only what a data question needs —
aggregates, window functions, arithmetic, strings, dates, conditionals and casts. Functions
sqlglot knows are allowed by expression type; the ones it parses as `exp.Anonymous` by name,
per dialect. A qualified call (`pg_catalog.upper(x)`) is refused: it could reach a function
of that name in another schema.

Names are compared as the database compares them (`_sql_names.fold`).
"""

from __future__ import annotations

import re

from sqlglot import exp

from keel.tools._sql_names import Dialect, fold

__all__ = ["Dialect", "check_function", "fold", "fold_identifier"]

_TYPED: frozenset[type[exp.Func]] = frozenset({
    # aggregates
    exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.GroupConcat, exp.ArrayAgg, exp.Median,
    exp.Stddev, exp.StddevPop, exp.StddevSamp, exp.Variance, exp.VariancePop, exp.Corr,
    exp.CovarPop, exp.CovarSamp, exp.RegrIntercept, exp.RegrSlope, exp.LogicalAnd,
    exp.LogicalOr, exp.PercentileCont, exp.PercentileDisc, exp.Mode, exp.AnyValue, exp.CountIf,
    exp.JSONArrayAgg, exp.JSONObjectAgg,
    # window functions
    exp.RowNumber, exp.Rank, exp.DenseRank, exp.Ntile, exp.Lag, exp.Lead, exp.FirstValue,
    exp.LastValue, exp.NthValue, exp.CumeDist, exp.PercentRank,
    # arithmetic
    exp.Abs, exp.Round, exp.Ceil, exp.Floor, exp.Sqrt, exp.Cbrt, exp.Pow, exp.Exp, exp.Ln,
    exp.Log, exp.Sign, exp.Trunc, exp.Pi, exp.Sin, exp.Cos, exp.Tan, exp.Cot, exp.Asin,
    exp.Acos, exp.Atan, exp.Atan2, exp.Degrees, exp.Radians, exp.Rand, exp.Greatest,
    exp.Least, exp.WidthBucket, exp.Factorial,
    # strings
    exp.Upper, exp.Lower, exp.Length, exp.Substring, exp.Trim, exp.Replace, exp.StrPosition,
    exp.Concat, exp.ConcatWs, exp.Left, exp.Right, exp.Pad, exp.Initcap, exp.Reverse,
    exp.Repeat, exp.SplitPart, exp.Translate, exp.StartsWith, exp.Ascii, exp.Chr, exp.Unicode,
    exp.Hex, exp.MD5, exp.Soundex, exp.Format, exp.RegexpLike, exp.RegexpReplace,
    exp.RegexpSubstr, exp.Overlay, exp.ToNumber, exp.ArrayToString, exp.ArrayPosition,
    exp.ArraySize,
    # dates and times
    exp.CurrentDate, exp.CurrentTime, exp.CurrentTimestamp, exp.Localtimestamp, exp.Date,
    exp.Datetime, exp.Time, exp.TimeToStr, exp.ToChar, exp.StrToDate, exp.StrToTime,
    exp.TsOrDsToTimestamp, exp.TsOrDsToDate, exp.TimestampTrunc, exp.DateTrunc, exp.Extract,
    exp.DateBin, exp.MakeInterval, exp.JustifyDays, exp.DateAdd, exp.DateSub, exp.DateDiff,
    exp.Year, exp.Quarter, exp.Month, exp.Week, exp.Day, exp.DayOfWeek, exp.Hour, exp.Minute,
    exp.Second,
    # operators sqlglot models as functions
    exp.And, exp.Or, exp.Xor, exp.Exists, exp.Array, exp.Collate, exp.ArrayContains,
    exp.ArrayContainedBy, exp.ArrayContainsAll, exp.ArrayOverlaps, exp.JSONArrayContains,
    exp.JSONBContains, exp.JSONBContainsTopKey, exp.JSONBContainsAnyTopKeys,
    exp.JSONBContainsAllTopKeys, exp.RegexpILike, exp.RegexpFullMatch,
    # conditionals, casts, JSON
    exp.Case, exp.If, exp.Coalesce, exp.Nullif, exp.Cast, exp.TryCast, exp.Typeof,
    exp.JSONExtract, exp.JSONExtractScalar, exp.JSONBExtract, exp.JSONBExtractScalar,
    exp.JSONObject, exp.JSONType,
    # set-returning functions that read no table
    exp.GenerateSeries, exp.ExplodingGenerateSeries, exp.Explode, exp.Unnest,
})  # fmt: skip
"""Functions sqlglot parses into a typed expression (`SUM(x)` is `exp.Sum`)."""

_NAMED: dict[Dialect, frozenset[str]] = {
    "sqlite": frozenset({
        "date", "datetime", "time", "julianday", "unixepoch", "strftime", "total", "printf",
        "octet_length", "instr", "ifnull", "iif", "nullif", "json", "json_array",
        "json_array_length", "json_valid", "json_group_array", "json_group_object",
        "json_each", "json_tree", "likely", "unlikely",
    }),
    "postgres": frozenset({
        "age", "make_date", "make_time", "make_timestamp", "date_part", "clock_timestamp",
        "statement_timestamp", "transaction_timestamp", "isfinite", "justify_hours",
        "justify_interval", "gcd", "lcm", "div", "scale", "trim_scale", "log10", "bit_length",
        "char_length", "octet_length", "to_hex", "strpos", "substr", "btrim", "ltrim",
        "rtrim", "lpad", "rpad", "cardinality", "array_length", "num_nonnulls", "num_nulls",
        "json_build_object", "jsonb_build_object", "json_build_array", "jsonb_build_array",
        "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg",
        "json_extract_path_text", "jsonb_extract_path_text", "json_array_length",
        "jsonb_array_length", "json_each", "jsonb_each", "json_each_text", "jsonb_each_text",
        "json_array_elements", "jsonb_array_elements", "regexp_matches", "regexp_split_to_array",
        "regexp_count", "every", "bool_and", "bool_or", "string_agg", "var_samp", "regr_r2",
        "regr_count", "regr_avgx", "regr_avgy", "to_date", "to_timestamp", "to_number",
    }),
}  # fmt: skip
"""Functions sqlglot leaves as `exp.Anonymous`, by the (folded) name the database sees."""

_FORMATTERS = (exp.Format,)
_FORMAT_NAMES = frozenset({"printf", "format"})
_FORMAT_SPEC = re.compile(r"%([^a-zA-Z%]*)")
MAX_FORMAT_WIDTH = 100
"""Largest width or precision in a printf/format spec: `printf('%.*c', 2e9, 'x')` spends
seconds in one C call that no progress handler can interrupt."""


def fold_identifier(node: exp.Expr | str | None, dialect: Dialect) -> str:
    """`fold` for a sqlglot identifier (or a bare string, taken as unquoted)."""
    if node is None:
        return ""
    if isinstance(node, exp.Identifier):
        return fold(node.this, quoted=bool(node.quoted), dialect=dialect)
    if isinstance(node, str):
        return fold(node, quoted=False, dialect=dialect)
    return fold(node.name, quoted=False, dialect=dialect)


def _name(func: exp.Func, dialect: Dialect) -> str:
    if isinstance(func, exp.Anonymous):
        return fold_identifier(func.this, dialect)
    return func.sql_name().lower()


def check_function(func: exp.Func, dialect: Dialect) -> str | None:
    """Why `func` may not be called, or None when it may."""
    name = _name(func, dialect)
    if isinstance(func.parent, exp.Dot):
        return (
            f"the qualified function call {func.parent.sql(dialect=dialect)} is not allowed; "
            "call functions by their plain name"
        )
    named = isinstance(func, exp.Anonymous)
    if not (name in _NAMED[dialect] if named else type(func) in _TYPED):
        return (
            f"the function {name}() is not allowed; use aggregate, window, arithmetic, string, "
            "date and conditional functions (sum, count, round, lower, coalesce, cast, ...)"
        )
    if isinstance(func, _FORMATTERS) or name in _FORMAT_NAMES:
        return _check_format(func, name)
    if isinstance(func, exp.Cast):  # TryCast too
        return _check_cast(func, dialect)
    return None


_UNCASTABLE = frozenset({exp.DataType.Type.USERDEFINED, exp.DataType.Type.XML})


def _check_cast(cast: exp.Cast, dialect: Dialect) -> str | None:
    """Casts to data types only: `'secrets'::regclass` looks up catalog objects."""
    target = cast.to
    if isinstance(target.this, str) or target.this in _UNCASTABLE:
        return (
            f"casting to {target.sql(dialect=dialect)} is not allowed; cast to numbers, text, "
            "dates, times, intervals, booleans or JSON"
        )
    return None


def _check_format(func: exp.Func, name: str) -> str | None:
    """printf/format: a literal format whose widths and precisions are small numbers."""
    if isinstance(func, exp.Anonymous):
        first = func.expressions[0] if func.expressions else None
    else:
        first = func.this
    if not (isinstance(first, exp.Literal) and first.is_string):
        return f"{name}() needs a string literal as its format"
    for spec in _FORMAT_SPEC.findall(first.this):
        if "*" in spec:
            return f"{name}() formats may not take a width or precision from an argument ('*')"
        if any(int(n) > MAX_FORMAT_WIDTH for n in re.findall(r"\d+", spec)):
            return f"{name}() widths and precisions are limited to {MAX_FORMAT_WIDTH}"
    return None
