"""Keel's HTTP API (the LangGraph Agent Server protocol), its store and its workers.

`create_app(settings)` builds the FastAPI app `keel serve` runs; `run_worker(settings)` is
`keel worker`. See docs/service.md for routes, tenants and admission.
"""

from __future__ import annotations

from keel.server.app import create_app
from keel.server.worker import run_worker

__all__ = ["create_app", "run_worker"]
