"""A standalone `/metrics` endpoint for worker processes (which serve no HTTP themselves).

Workers and API processes started with the same `PROMETHEUS_MULTIPROC_DIR` write their
values there; this exporter sums every process's files on each scrape:

```bash
PROMETHEUS_MULTIPROC_DIR=/run/keel-metrics keel-metrics-exporter --port 9464
```
Without a folder it serves its own process's metrics (useful only for a smoke test).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from keel.observability.metrics import exposition_registry

__all__ = ["main", "serve_metrics"]


def serve_metrics(
    port: int, addr: str = "127.0.0.1", multiprocess_dir: str | Path | None = None
) -> tuple[WSGIServer, threading.Thread]:
    """Serve `/metrics` on a daemon thread; `port=0` picks a free port (see `server_port`)."""
    if multiprocess_dir is not None and not Path(multiprocess_dir).is_dir():
        raise FileNotFoundError(f"metrics folder {multiprocess_dir} does not exist")
    registry = exposition_registry(multiprocess_dir)
    return start_http_server(port, addr=addr, registry=registry)


def main(argv: list[str] | None = None) -> None:
    """`keel-metrics-exporter [--port 9464] [--addr 127.0.0.1] [--dir DIR]`."""
    parser = argparse.ArgumentParser(prog="keel-metrics-exporter", description=__doc__)
    parser.add_argument("--port", type=int, default=9464)
    parser.add_argument("--addr", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--dir",
        default=os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
        help="the workers' PROMETHEUS_MULTIPROC_DIR (default: that variable)",
    )
    args = parser.parse_args(argv)
    try:
        server, _ = serve_metrics(args.port, args.addr, args.dir)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"keel-metrics-exporter: {exc}\n")
    host, port = str(server.server_address[0]), server.server_address[1]
    print(f"serving metrics on http://{host}:{port}/metrics", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
