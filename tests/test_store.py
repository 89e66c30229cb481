"""The content-addressed store: atomic commits, shards, locks, verify, gc."""

from __future__ import annotations

import json
import multiprocessing
import time

import pytest

from tokbench.errors import StoreError
from tokbench.storage.store import MANIFEST, Store


def test_get_or_create_produces_once(tmp_path):
    store = Store(tmp_path)
    calls = []

    def produce(directory):
        calls.append(1)
        (directory / "a.txt").write_text("hello")
        return {"note": "x"}

    path = store.get_or_create("k1", produce, kind="test")
    again = store.get_or_create("k1", produce, kind="test")
    assert path == again and len(calls) == 1
    manifest = store.manifest("k1")
    assert manifest["files"]["a.txt"]["size"] == 5 and manifest["meta"]["note"] == "x"
    assert [c["key"] for c in store.commits()] == ["k1"]


def test_failed_producer_leaves_nothing(tmp_path):
    store = Store(tmp_path)

    def produce(directory):
        (directory / "half.bin").write_bytes(b"xx")
        raise ValueError("disk on fire")

    with pytest.raises(ValueError):
        store.get_or_create("k2", produce, kind="test")
    assert not store.has("k2")
    assert list((tmp_path / "tmp").iterdir()) == []
    with pytest.raises(StoreError, match="not in the store"):
        store.path("k2")


def test_sharded_artifact_resumes_at_missing_shard(tmp_path):
    store = Store(tmp_path)
    written = []

    def shard(i):
        def produce(directory):
            written.append(i)
            (directory / "data.txt").write_text(str(i))
        return produce

    first = store.sharded("s1", kind="test", num_shards=3)
    first.write_shard(0, shard(0))
    first.write_shard(1, shard(1))
    with pytest.raises(StoreError, match=r"shards \[2\] missing"):
        first.finalize()
    resumed = store.sharded("s1", kind="test", num_shards=3)  # e.g. after a crash
    assert resumed.missing() == [2]
    for index in resumed.missing():
        resumed.write_shard(index, shard(index))
    final = resumed.finalize()
    assert written == [0, 1, 2]
    assert (final / "shard-00002" / "data.txt").read_text() == "2"
    assert resumed.complete and resumed.missing() == []
    assert store.verify().ok


def test_verify_detects_corruption_and_missing_files(tmp_path):
    store = Store(tmp_path)
    path = store.get_or_create("k3", lambda d: (d / "w.bin").write_bytes(b"1234"), kind="test")
    (path / "w.bin").write_bytes(b"1235")
    report = store.verify()
    assert report.problems == ["artifact k3: objects/k3/k3/w.bin sha256 differs from the manifest (damaged or modified)"]
    (path / "w.bin").unlink()
    assert store.verify().problems == ["artifact k3: objects/k3/k3/w.bin missing"]


def test_results_are_written_atomically_and_listed(tmp_path):
    store = Store(tmp_path)
    store.put_result("r1", {"type": "result", "metrics": {"psnr": 30.0}})
    assert store.has_result("r1")
    assert store.get_result("r1")["metrics"]["psnr"] == 30.0
    assert [r["key"] for r in store.results()] == ["r1"]
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "results").iterdir())


def test_gc_removes_interrupted_leftovers(tmp_path):
    store = Store(tmp_path)
    leftover = tmp_path / "tmp" / "deadbeef.123.abcd"
    leftover.mkdir()
    (leftover / "partial.npy").write_bytes(b"x")
    store.get_or_create("keep", lambda d: (d / "f").write_text("x"), kind="test")
    assert store.gc(dry_run=True) == [leftover] and leftover.exists()
    assert store.gc() == [leftover] and not leftover.exists()
    assert store.has("keep")
    assert store.gc(unreferenced=True) == []  # this live Store uses it (a lease)
    store.close()
    removed = Store(tmp_path).gc(unreferenced=True)
    assert [p.name for p in removed] == ["keep"]


def _slow_producer(root, started_at, out_queue):
    store = Store(root)

    def produce(directory):
        out_queue.put("produced")
        time.sleep(0.5)
        (directory / "x").write_text("x")

    store.get_or_create("shared", produce, kind="test")
    out_queue.put("done")


def test_two_processes_produce_a_key_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_slow_producer, args=(tmp_path, time.time(), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    messages = [queue.get(timeout=5) for _ in range(3)]
    assert sorted(messages) == ["done", "done", "produced"]
    assert len(Store(tmp_path).commits()) == 1


def test_manifest_is_last(tmp_path):
    """A directory without MANIFEST.json is never considered committed."""
    store = Store(tmp_path)
    target = store.object_dir("k4")
    target.mkdir(parents=True)
    (target / "data").write_text("x")
    assert store.verify().problems == ["artifact k4: objects/k4/k4/MANIFEST.json missing (an incomplete or damaged entry)"]
    assert not store.has("k4")  # and it is moved aside, so producing k4 is not blocked
    assert not store.object_dir("k4").exists()
    store.get_or_create("k4", lambda d: (d / "data").write_text("fresh"), kind="t")
    assert (store.path("k4") / "data").read_text() == "fresh"
    store.get_or_create("k5", lambda d: (d / "y").write_text("y"), kind="t")
    assert json.loads((store.path("k5") / MANIFEST).read_text())["key"] == "k5"


def test_state_dict_fingerprint_handles_scalar_tensors():
    import torch

    from tokbench.hashing import state_dict_fingerprint

    a = state_dict_fingerprint({"logit_scale": torch.tensor(2.0), "w": torch.ones(2)})
    b = state_dict_fingerprint({"logit_scale": torch.tensor(2.5), "w": torch.ones(2)})
    c = state_dict_fingerprint({"logit_scale": torch.tensor([2.0]), "w": torch.ones(2)})
    assert a != b  # the scalar's value counts
    assert a != c  # and so does its shape
