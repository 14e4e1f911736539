"""`keel new DIR`: a user's first five minutes. The project it writes passes its own test,
and `keel agents`, `keel run --agent` and `keel serve` work in it at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cli_runner import KeelCli, keel_runner


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "my-agent"
    done = keel_runner(tmp_path)("new", str(root))
    assert done.returncode == 0, done.stderr
    monkeypatch.chdir(root)  # the user's next command runs in the project
    return root


@pytest.fixture
def keel(tmp_path: Path) -> KeelCli:
    return keel_runner(tmp_path)


def test_new_writes_the_project_and_refuses_a_non_empty_folder(
    project: Path, keel: KeelCli
) -> None:
    names = sorted(p.name for p in project.iterdir())
    assert names == ["README.md", "agent.py", "langgraph.json", "test_agent.py", "tools.py"]
    before = {p.name: p.read_text() for p in project.iterdir()}
    again = keel("new", str(project))
    assert again.returncode == 2
    assert "is not an empty folder" in again.stderr
    assert {p.name: p.read_text() for p in project.iterdir()} == before


def test_the_projects_own_test_passes(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env={**env, "KEEL_HOME": str(project.parent / "home")},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout


def test_agents_and_run_work_at_once(project: Path, keel: KeelCli) -> None:
    listed = keel("agents", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["graphs"]
    assert (row["graph_id"], row["kind"], row["tools"]) == ("support", "keel", ["order_status"])
    done = keel("run", "--agent", "support", "--model", "scripted:echo", "--json", "Order A-1?")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["output"] == "You asked: Order A-1?"
    assert result["metadata"]["model"] == "scripted:echo"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: dict[str, object]) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_serve_works_at_once(project: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        KEEL_HOME=str(tmp_path / "home"),
        KEEL_CHECKPOINT_URL=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        KEEL_MODEL="scripted:echo",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "keel", "serve", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[1][-3000:]
            try:
                with urllib.request.urlopen(f"{base}/ok", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "keel serve did not answer /ok in 60 s"
                time.sleep(0.2)
        found = _post(f"{base}/assistants/search", {"graph_id": "support"})
        assert isinstance(found, list) and [a["graph_id"] for a in found] == ["support"]
        assert _post(f"{base}/assistants/search", {"graph_id": "data_analyst"}) == []
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
