"""The configuration reference (`docs/configuration.md`), generated from `keel.config`.

Each setting's own docstring is its documentation, so the reference cannot drift from the
code: `tests/unit/test_config_doc.py` fails when the committed file differs from this output.

```bash
python -m keel.config_doc --write docs/configuration.md   # regenerate
python -m keel.config_doc --check docs/configuration.md   # exit 1 when out of date
```
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import json
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from keel.config import DEFAULT_PRICING, Settings

__all__ = ["Row", "attribute_docs", "main", "module_docs", "render", "rows"]

_INTRO = """\
Keel reads its configuration once, at start-up, from `{prefix}*` environment variables.
A value that does not validate stops the start with an error naming the variable
(`{prefix}LIMITS__MAX_ITERATIONS: Input should be greater than or equal to 1`); a `{prefix}*`
variable Keel does not know is ignored. Names are not case-sensitive. Settings of a group
use `{delimiter}` between the group and the field (`{prefix}LIMITS{delimiter}MAX_ITERATIONS=12`).
Lists and objects are JSON (`{prefix}APPROVAL_TOOLS='["sql_query"]'`). From Python,
`keel.load_settings(model="scripted:sales", …)` takes the same fields as keyword arguments,
over the environment.

This file is generated from the settings' own docstrings in `keel/config.py`
(`python -m keel.config_doc --write docs/configuration.md`); a unit test fails when it is out
of date.
"""


@dataclass(frozen=True)
class Row:
    """One environment variable: its name, type, default and meaning."""

    name: str
    type: str
    default: str
    doc: str


def _docs_under(statements: list[ast.stmt]) -> dict[str, str]:
    """`name -> docstring` for each `name: T = …` directly followed by a string literal."""
    docs: dict[str, str] = {}
    for stmt, nxt in itertools.pairwise(statements):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a class's annotated attributes (`x: int = 1` then `"…"`)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    node = ast.parse(source).body[0]
    return _docs_under(node.body) if isinstance(node, ast.ClassDef) else {}


def module_docs(module_name: str) -> dict[str, str]:
    """The docstrings under a module's annotated constants (`DEFAULT_PRICING`, …)."""
    return _docs_under(ast.parse(inspect.getsource(sys.modules[module_name])).body)


def _or_dash(value: object) -> str:
    return "–" if value is None else str(value)


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _group(annotation: Any) -> type[BaseModel] | None:
    """The settings group a field holds, if it is one (a nested model, not a value)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = " \\| ".join(_type_name(a) for a in rest)
        return f"{inner} (optional)" if len(rest) < len(args) else inner
    if origin is tuple:
        return f"JSON list of {_type_name(args[0])}" if args else "JSON list"
    if origin is dict:
        return f"JSON object {{{_type_name(args[0])}: {_type_name(args[1])}}}"
    if annotation is SecretStr:
        return "secret string"
    if annotation is Path:
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
)


def _bounds(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(meta, kind):
                parts.append(f"{sign} {getattr(meta, attr)}")
        if isinstance(meta, annotated_types.MaxLen):
            parts.append(f"≤ {meta.max_length} characters")
    return ", ".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path | Enum):
        return str(value)
    return value


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | Path):
        return f"`{value}`"
    return f"`{json.dumps(_jsonable(value), ensure_ascii=False)}`"


def _value_models(annotation: Any) -> Iterator[type[BaseModel]]:
    """Models nested inside a value's type (e.g. the `ModelPrice` of a price table)."""
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            yield arg
        else:
            yield from _value_models(arg)


def _doc(cls: type[BaseModel], name: str, field: FieldInfo) -> str:
    doc = attribute_docs(cls).get(name) or field.description or ""
    for model in _value_models(field.annotation):
        model_docs = attribute_docs(model)
        parts = [
            f"`{n}` ({_type_name(f.annotation)}): {model_docs.get(n, '').rstrip('.')}"
            for n, f in model.model_fields.items()
        ]
        doc += f" Each {model.__name__}: " + "; ".join(parts) + "."
    return _one_line(doc)


def rows(cls: type[BaseModel], prefix: str, delimiter: str) -> Iterator[tuple[str, list[Row]]]:
    """`(group path, rows)` for the class's own fields first, then for each nested group."""
    own: list[Row] = []
    groups: list[tuple[str, type[BaseModel]]] = []
    for name, field in cls.model_fields.items():
        group = _group(field.annotation)
        if group is not None:
            groups.append((name, group))
            continue
        bounds = _bounds(field)
        type_ = _type_name(field.annotation) + (f", {bounds}" if bounds else "")
        own.append(Row(f"{prefix}{name.upper()}", type_, _default(field), _doc(cls, name, field)))
    yield "", own
    for name, group in groups:
        for path, group_rows in rows(group, f"{prefix}{name.upper()}{delimiter}", delimiter):
            yield (f"{name}.{path}" if path else name), group_rows


def _group_intro(settings: type[BaseSettings], path: str) -> str:
    """A group's introduction: the class's own docstring, else the field's."""
    cls: type[BaseModel] = settings
    doc = ""
    for part in path.split("."):
        field = cls.model_fields[part]
        doc = attribute_docs(cls).get(part, "")
        group = _group(field.annotation)
        assert group is not None
        cls = group
    own_doc = cls.__dict__.get("__doc__") or ""  # not inherited: BaseModel's is no help
    return _one_line(inspect.cleandoc(own_doc) or doc)


def render(settings: type[BaseSettings] = Settings) -> str:
    """The whole reference as Markdown."""
    config = settings.model_config
    prefix = str(config.get("env_prefix", ""))
    delimiter = str(config.get("env_nested_delimiter") or "__")
    lines = ["# Configuration", "", _INTRO.format(prefix=prefix, delimiter=delimiter)]
    for path, group_rows in rows(settings, prefix, delimiter):
        if path:
            intro = _group_intro(settings, path)
            title = f"## `{prefix}{path.upper().replace('.', delimiter)}{delimiter}*`"
            lines += [title, "", intro, ""] if intro else [title, ""]
        else:
            lines += ["## General", ""]
        lines += ["| variable | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{r.name}` | {r.type} | {r.default} | {r.doc} |" for r in group_rows]
        lines.append("")
    lines += [
        "## Built-in model prices",
        "",
        _one_line(module_docs(Settings.__module__).get("DEFAULT_PRICING", ""))
        + " USD per one million tokens; `KEEL_PRICING` overrides them by name.",
        "",
        "| model | input | output | cached input |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{name}` | {p.input} | {p.output} | {_or_dash(p.cached_input)} |"
        for name, p in DEFAULT_PRICING.items()
    ]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`--write PATH` regenerates the file; `--check PATH` exits 1 when it is out of date."""
    parser = argparse.ArgumentParser(prog="python -m keel.config_doc", description=__doc__)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, metavar="PATH", help="write the reference here")
    action.add_argument("--check", type=Path, metavar="PATH", help="compare it with this file")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    elif args.check:
        current = args.check.read_text(encoding="utf-8") if args.check.exists() else ""
        if current != text:
            print(f"{args.check} is out of date: python -m keel.config_doc --write {args.check}")
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
