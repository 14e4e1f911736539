"""The embedded llama.cpp server: starts on loopback, answers, and never outlives its owner.

These tests load the real weights of the default model (installed by `make install`), so
they are `slow`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from keel.models.local import DEFAULT_LOCAL_MODEL, get_model_info

pytestmark = [pytest.mark.slow]

OWNER = """
import json, sys
from keel.models.local import start_local_server
server = start_local_server(sys.argv[1])
print("STARTED " + json.dumps({"pid": server.pid, "base_url": server.base_url}), flush=True)
if sys.argv[2] == "hang":
    import time
    time.sleep(600)
"""


def require_weights() -> None:
    info = get_model_info(DEFAULT_LOCAL_MODEL)
    if not info.chunks_installed():
        message = f"local model weights are not installed: {info.install_command}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def local_cli_env(tmp_path: Path, run_timeout_s: int) -> dict[str, str]:
    """The environment of a `keel` subprocess on the local model: no inherited `KEEL_*` or
    `OPENAI_*`, its home and checkpoints under `tmp_path`, and model/iteration/run timeouts
    generous enough for a slow shared CI machine (what such a test checks is the answer, not
    the speed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "OPENAI_"))}
    env.update(
        KEEL_HOME=str(tmp_path / "home"),
        KEEL_CHECKPOINT_URL=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        KEEL_LIMITS__MODEL_TIMEOUT_S="600",
        KEEL_LIMITS__ITERATION_TIMEOUT_S="900",
        KEEL_LIMITS__RUN_TIMEOUT_S=str(run_timeout_s),
    )
    return env


def gone(pid: int, within_s: float) -> bool:
    """True once `pid` has exited (a zombie awaiting its reaper counts as exited)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def start_owner(mode: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, DEFAULT_LOCAL_MODEL, mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    for line in owner.stdout:  # log lines may come first
        if line.startswith("STARTED "):
            return owner, json.loads(line.removeprefix("STARTED "))
    raise AssertionError("the owner process died before the server was ready")


def test_server_listens_on_loopback_and_needs_its_key() -> None:
    require_weights()
    owner, started = start_owner("hang")
    try:
        base_url = str(started["base_url"])
        assert base_url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(f"{base_url}/models")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 401
    finally:
        owner.kill()
        owner.wait()
    assert gone(int(str(started["pid"])), within_s=10)


def test_server_dies_with_a_sigkilled_owner() -> None:
    require_weights()
    owner, started = start_owner("hang")
    server_pid = int(str(started["pid"]))
    assert not gone(server_pid, within_s=0.5)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    assert gone(server_pid, within_s=10), "the local model server outlived its owner"


def test_server_stops_when_the_owner_exits_normally() -> None:
    require_weights()
    owner, started = start_owner("exit")
    assert owner.wait(timeout=30) == 0
    assert gone(int(str(started["pid"])), within_s=10)
