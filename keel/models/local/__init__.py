"""The embedded local model: offline Qwen2.5-Coder weights served by llama.cpp on 127.0.0.1.

```
local_chat_model(name, settings)        ChatOpenAI at the local server (what the agent uses)
  ├─ watch_progress (_progress)         streamed calls fail on a stall, not after a fixed time
  └─ get_local_server(name)             one server per model per process, shared start
       ├─ ensure_weights(name, cache)   join chunk packages → verified GGUF (SHA-256)
       └─ _worker (child process)       xllamacpp server, fixed chat template, dies with us
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from keel.models.local._catalog import (
    CATALOG,
    DEFAULT_LOCAL_MODEL,
    ChunkPackage,
    LocalModelInfo,
    get_model_info,
    gguf_path,
)
from keel.models.local._chat import (
    LocalChatOpenAI,
    local_chat_model,
    salvage_tool_call,
    server_chat_model,
)
from keel.models.local._progress import Activity, LocalModelStalledError
from keel.models.local._server import (
    LocalServer,
    ServerOptions,
    get_local_server,
    start_local_server,
)
from keel.models.local._template import CHAT_TEMPLATE
from keel.models.local._weights import default_cache_dir, ensure_weights, is_verified

__all__ = [
    "CATALOG",
    "CHAT_TEMPLATE",
    "DEFAULT_LOCAL_MODEL",
    "Activity",
    "ChunkPackage",
    "LocalChatOpenAI",
    "LocalModelInfo",
    "LocalModelStalledError",
    "LocalServer",
    "ServerOptions",
    "default_cache_dir",
    "ensure_weights",
    "get_local_server",
    "get_model_info",
    "gguf_path",
    "is_verified",
    "local_chat_model",
    "local_models",
    "salvage_tool_call",
    "server_chat_model",
    "start_local_server",
]


def local_models(cache_dir: Path | None = None) -> list[LocalModelInfo]:
    """Every catalog model, with `installed` set: chunks importable or a verified GGUF cached.

    Cheap: checks module specs and the verification marker, never hashes.
    """
    cache = cache_dir or default_cache_dir()
    return [
        dataclasses.replace(
            info,
            installed=info.chunks_installed() or is_verified(info, gguf_path(info, cache)),
        )
        for info in CATALOG.values()
    ]
