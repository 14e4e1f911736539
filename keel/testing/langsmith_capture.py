"""A local stand-in for the LangSmith API that records what a client sends.

Tests and benchmarks point `LANGSMITH_ENDPOINT` at it (127.0.0.1 only) and read the runs
back as dicts, merged from the multipart parts (`post.<id>`, `post.<id>.inputs`, …) or
from `/runs/batch` JSON:

```python
with CaptureServer() as server:
    os.environ["LANGSMITH_ENDPOINT"] = server.url
    ...
    roots = [r for r in server.runs() if r.get("parent_run_id") is None]
```
`CaptureServer(mode="hang")` accepts connections and never answers (a stalled endpoint).

Like every LangSmith deployment, its `/info` says run compression is on
(`instance_flags.zstd_compression_enabled`), so the client sends zstd-compressed multipart
batches, which are decompressed as they arrive; `zstd=False` answers `/info` without the
flag, and the client falls back to uncompressed multipart requests. `info_delay_s` makes
`/info` answer that much later (a slow server).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

import zstandard

__all__ = ["CaptureServer", "parse_multipart_runs"]


def parse_multipart_runs(content_type: str, body: bytes) -> list[dict[str, Any]]:
    """Runs in one `/runs/multipart` request, each merged from its parts."""
    message = BytesParser(policy=default_policy).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    runs: dict[str, dict[str, Any]] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition") or "")
        op, _, rest = name.partition(".")
        run_id, _, field = rest.partition(".")
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or op not in ("post", "patch"):
            continue
        try:
            value = json.loads(payload)
        except ValueError:
            continue
        run = runs.setdefault(f"{op}:{run_id}", {"_op": op})
        if field:
            run[field] = value
        else:
            run.update(value)
    return list(runs.values())


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"{}") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if not self.path.startswith("/info"):
            self._reply(404)
            return
        time.sleep(self.server.info_delay_s)
        if self.server.zstd:
            self._reply(200, b'{"instance_flags": {"zstd_compression_enabled": true}}')
        else:
            self._reply(200)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        compressed = self.headers.get("Content-Encoding") == "zstd"
        if compressed:
            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        self.server.record(self.path, self.headers.get("Content-Type", ""), body, compressed)
        self._reply(200)

    do_PATCH = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, zstd: bool, info_delay_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.zstd = zstd
        self.info_delay_s = info_delay_s
        self.compressed = 0
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, bytes]] = []

    def record(self, path: str, content_type: str, body: bytes, compressed: bool) -> None:
        with self.lock:  # handlers run on threads of their own
            self.requests.append((path, content_type, body))
            self.compressed += compressed


class CaptureServer:
    """Records LangSmith ingestion requests on 127.0.0.1 (or hangs, with `mode="hang"`)."""

    def __init__(
        self,
        mode: Literal["record", "hang"] = "record",
        *,
        zstd: bool = True,
        info_delay_s: float = 0.0,
    ) -> None:
        self.mode = mode
        self.zstd = zstd
        self.info_delay_s = info_delay_s
        self._server: _Server | None = None
        self._socket: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CaptureServer:
        if self.mode == "record":
            self._server = _Server(self.zstd, self.info_delay_s)
            self.port = self._server.server_address[1]
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        else:
            self._socket = socket.socket()
            self._socket.bind(("127.0.0.1", 0))
            self._socket.listen(64)
            self._socket.settimeout(0.1)
            self.port = self._socket.getsockname()[1]
            threading.Thread(target=self._hold, daemon=True).start()
        return self

    def _hold(self) -> None:
        """Accept connections, read nothing, answer nothing."""
        assert self._socket is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for conn in self._held:
            conn.close()
        if self._socket is not None:
            self._socket.close()

    @property
    def requests(self) -> list[tuple[str, str, bytes]]:
        """(path, content type, body) of every POST/PATCH received."""
        if self._server is None:
            return []
        with self._server.lock:
            return list(self._server.requests)

    @property
    def compressed_requests(self) -> int:
        """How many requests came zstd-compressed."""
        return self._server.compressed if self._server is not None else 0

    def runs(self) -> list[dict[str, Any]]:
        """Every run received, in arrival order (multipart and batch JSON)."""
        found: list[dict[str, Any]] = []
        for path, content_type, body in self.requests:
            if path.startswith("/runs/multipart"):
                found += parse_multipart_runs(content_type, body)
            elif path.startswith("/runs/batch"):
                data = json.loads(body)
                found += [{"_op": "post", **r} for r in data.get("post", [])]
                found += [{"_op": "patch", **r} for r in data.get("patch", [])]
            elif path.rstrip("/") == "/runs":
                found.append({"_op": "post", **json.loads(body)})
        return found

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Poll `runs()` until `predicate(runs)` holds (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs()
            if predicate(runs) or time.monotonic() >= deadline:
                return runs
            time.sleep(0.02)


def main() -> None:
    """`python -m keel.testing.langsmith_capture`: a sink in its own process (benchmarks).

    Prints its URL, then on stdin EOF or SIGTERM prints `{"requests", "bytes", "runs"}`
    (bytes as received, decompressed). `--no-zstd`: no run compression (see the module note).
    """
    import signal
    import sys

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with CaptureServer(zstd="--no-zstd" not in sys.argv[1:]) as server:
        print(server.url, flush=True)

        def until_eof() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=until_eof, daemon=True).start()
        stop.wait()
        requests = server.requests
        summary = {
            "requests": len(requests),
            "bytes": sum(len(body) for _, _, body in requests),
            "runs": len(server.runs()),
        }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
