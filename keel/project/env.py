"""A project's `env` and `dependencies`: applied before its graphs are imported.

`env` is a `.env` file (relative to the config's folder) or a mapping. Variables already set
in the process win: a value on the command line (`KEEL_MODEL=… keel run`) or from the
deployment beats the file. (`langgraph dev` lets the file override the shell instead; Keel
keeps the usual dotenv and pydantic-settings rule, so the environment is always the last word.)
A named `.env` file that does not exist is a note, not an error, as with the LangGraph CLI:
a fresh clone without its git-ignored `.env` still starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from keel.errors import ConfigError

__all__ = ["apply_env", "project_paths"]


def apply_env(config_path: Path, env: str | Mapping[str, str] | None) -> list[str]:
    """Set the variables `env` names that are not set yet; return notes for the user."""
    if env is None:
        return []
    notes: list[str] = []
    if isinstance(env, str):
        file = (config_path.parent / env).resolve()
        if not file.is_file():
            return [f"{config_path}: env: '{env}' not found ({file}); no variables loaded"]
        try:
            values = {k: v for k, v in dotenv_values(file).items() if v is not None}
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{config_path}: env: '{env}' cannot be read ({exc}); fix: make it a readable "
                "UTF-8 file of NAME=value lines"
            ) from exc
    else:
        values = dict(env)
    kept = sorted(name for name in values if name in os.environ)
    for name, value in values.items():
        os.environ.setdefault(name, value)
    if kept:
        notes.append(f"{config_path}: env: already set in the environment, kept: {', '.join(kept)}")
    return notes


def project_paths(config_path: Path, dependencies: tuple[str, ...]) -> None:
    """Put the project folder and its local dependency folders first on `sys.path`.

    The project folder comes first so the user's own `tools.py` or `utils/` is what
    `import tools` finds. A dependency that is a folder (`"."`, `"./lib"`) is added too;
    a package name (`"langchain_openai"`) is for the deployment's `pip install`: Keel
    installs nothing, so install your packages in the environment that runs `keel`.
    """
    root = config_path.parent.resolve()
    folders = [root]
    for i, dep in enumerate(dependencies):
        local = dep.startswith((".", "/", "~")) or "/" in dep or "\\" in dep
        if not local:
            continue
        folder = (root / dep).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(
                f"{config_path}: dependencies[{i}]: '{dep}' is not a folder ({folder}); fix: "
                'list the folder that holds your package ("." is the project folder), or '
                "remove the entry"
            )
        if folder not in folders:
            folders.append(folder)
    for folder in reversed(folders):
        text = str(folder)
        if text in sys.path:
            sys.path.remove(text)
        sys.path.insert(0, text)
