"""Import the object a `graphs` entry names: `./path.py:attr` (a file) or `module:attr`.

A file is imported once under a name unique to its path (`keel_project_<hash>_<stem>`), as
the Agent Server does, so two projects' `agent.py` never collide and two graph ids pointing at
one file share its objects. A file inside Keel itself (the built-in `graphs/data_analyst.py`)
is imported under its real name, so it is the very module `keel` uses.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from keel.errors import ConfigError, KeelError
from keel.project.config_file import GraphSpec

__all__ = ["import_target"]


def _keel_module_name(file: Path) -> str | None:
    """`keel.graphs.data_analyst` for a file of Keel's own (its folders may be symlinks)."""
    import keel

    package = Path(keel.__file__).parent
    for child in [package, *(p for p in package.iterdir() if p.is_dir())]:
        try:
            relative = file.relative_to(child.resolve())
        except ValueError:
            continue
        parts = ["keel"] if child == package else ["keel", child.name]
        parts += list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if all(p.isidentifier() for p in parts):
            return ".".join(parts)
    return None


def _unique_name(file: Path) -> str:
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in file.stem)
    return f"keel_project_{digest}_{stem}"


def _import_file(config: Path, spec: GraphSpec) -> ModuleType:
    file = (config.parent / spec.target).expanduser().resolve()
    key = f"graphs.{spec.graph_id}"
    if not file.is_file():
        raise ConfigError(
            f"{config}: {key}: file '{spec.target}' not found ({file}); fix: give the path of "
            "the .py file relative to the folder of langgraph.json, e.g. './agent.py:agent'"
        )
    own = _keel_module_name(file)
    if own is not None:
        return importlib.import_module(own)
    name = _unique_name(file)
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, file)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(
            f"{config}: {key}: '{spec.target}' cannot be imported as Python; fix: name a .py file"
        )
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import(config: Path, spec: GraphSpec) -> ModuleType:
    key = f"graphs.{spec.graph_id}"
    try:
        if spec.is_file:
            return _import_file(config, spec)
        return importlib.import_module(spec.target)
    except ConfigError:
        raise
    except ModuleNotFoundError as exc:
        missing = exc.name or str(exc)
        raise ConfigError(
            f"{config}: {key}: importing '{spec.target}' failed: no module named '{missing}'; "
            f'fix: install it (pip install …), list its folder in "dependencies", or write '
            f"the graph as a file path ('./{spec.target.replace('.', '/')}.py:{spec.attr}')"
        ) from exc
    except KeelError as exc:
        raise ConfigError(
            f"{config}: {key}: importing '{spec.target}' failed: {exc.message}; fix: correct "
            "the definition it names"
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"{config}: {key}: importing '{spec.target}' failed: "
            f"{type(exc).__name__}: {exc}; fix: correct the module (`{_how_to_see(spec)}` "
            "shows the traceback)"
        ) from exc


def _how_to_see(spec: GraphSpec) -> str:
    return f"python {spec.target}" if spec.is_file else f"python -c 'import {spec.target}'"


def import_target(config: Path, spec: GraphSpec) -> Any:
    """The object `spec` names; `ConfigError` naming the file, key and fix when it can't."""
    module = _import(config, spec)
    if spec.attr in vars(module):
        return vars(module)[spec.attr]
    public = [n for n in vars(module) if not n.startswith("_")]
    hint = f" (it defines: {', '.join(sorted(public)[:12])})" if public else ""
    raise ConfigError(
        f"{config}: graphs.{spec.graph_id}: '{spec.target}' has no attribute "
        f"'{spec.attr}'{hint}; fix: name a module-level variable holding the graph or agent"
    )
