"""The local artifact store: create-once ids, tenant scoping, listing, deletion, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.artifacts import (
    ArtifactStore,
    ArtifactStoreError,
    LocalArtifactStore,
    artifact_id,
    open_artifact_store,
)
from keel.config import load_settings
from keel.errors import ConfigError, UsageError


def _files(root: Path, pattern: str = "*") -> list[Path]:
    return list(root.rglob(pattern))


def _put(store: LocalArtifactStore, **over: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "tenant": "acme",
        "thread_id": "t1",
        "run_id": "r1",
        "key": "t1:call_1",
        "name": "report.md",
        "data": b"# hello",
        "content_type": "text/markdown",
    }
    args.update(over)
    return store.put(**args)  # type: ignore[arg-type]


async def test_put_is_create_once_per_key_and_name(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    assert isinstance(store, ArtifactStore)
    first = await _put(store)
    again = await _put(store, data=b"# changed", run_id="r2")
    assert again == first, "a replayed call gets the stored artifact back, unchanged"
    assert first.id == artifact_id("acme", "t1:call_1", "report.md")
    found = await store.get("acme", first.id)
    assert found is not None and found[1] == b"# hello"
    assert len(list((tmp_path / "acme" / "objects").glob("*.bin"))) == 1
    other = await _put(store, key="t1:call_2")
    assert other.id != first.id


async def test_tenants_do_not_see_each_other(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    mine = await _put(store)
    assert await store.get("globex", mine.id) is None
    assert await store.head("globex", mine.id) is None
    assert await store.list("globex") == []
    assert await store.list("globex", thread_id="t1") == []
    assert not await store.delete("globex", mine.id)
    assert await store.head("acme", mine.id) == mine


async def test_list_by_thread_newest_first_and_delete(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    a = await _put(store, name="a.md")
    b = await _put(store, name="b.md")
    c = await _put(store, name="c.md", thread_id="t2", key="t2:x")
    assert [x.id for x in await store.list("acme", thread_id="t1")] == [b.id, a.id]
    assert [x.id for x in await store.list("acme")] == [c.id, b.id, a.id]
    assert [x.id for x in await store.list("acme", limit=1)] == [c.id]
    assert await store.delete("acme", b.id)
    assert not await store.delete("acme", b.id)
    assert [x.id for x in await store.list("acme", thread_id="t1")] == [a.id]
    assert await store.get("acme", b.id) is None


async def test_odd_tenant_and_thread_ids_stay_inside_the_root(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    art = await _put(store, tenant="../../etc", thread_id="../x/y", key="k")
    assert all(p.resolve().is_relative_to(tmp_path / "root") for p in _files(tmp_path))
    assert [x.id for x in await store.list("../../etc", thread_id="../x/y")] == [art.id]


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"name": "../evil"}, "artifact name"),
        ({"name": ""}, "artifact name"),
        ({"content_type": "markdown"}, "not a MIME type"),
        ({"data": b"x" * 2001}, "over the store's limit"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(
    tmp_path: Path, over: dict[str, object], message: str
) -> None:
    store = LocalArtifactStore(tmp_path, max_bytes=2000)
    with pytest.raises(UsageError, match=message):
        await _put(store, **over)
    assert _files(tmp_path, "*.json") == []


async def test_unknown_or_malformed_ids_are_not_found(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    assert await store.get("acme", "art_" + "0" * 32) is None
    assert await store.get("acme", "../../etc/passwd") is None


async def test_an_unwritable_store_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ArtifactStoreError, match="artifact store"):
        await _put(LocalArtifactStore(blocker))


def test_the_store_follows_the_settings(tmp_path: Path) -> None:
    default = open_artifact_store(load_settings(home=tmp_path / "h"))
    assert isinstance(default, LocalArtifactStore) and default.root == tmp_path / "h" / "artifacts"
    chosen = open_artifact_store(
        load_settings(home=tmp_path, artifacts={"url": f"file://{tmp_path}/arts%20x"})
    )
    assert isinstance(chosen, LocalArtifactStore) and chosen.root == tmp_path / "arts x"
    with pytest.raises(ConfigError, match="KEEL_ARTIFACTS__URL"):
        load_settings(artifacts={"url": "s3://bucket/reports"})
