"""A store you can trust: verify on read, quarantine and recompute, hashed records, repair,
leases that gc respects, faults that end a unit cleanly, nothing executed from the store."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import time

import numpy as np
import pytest

from tokbench.errors import StoreError
from tokbench.storage.store import MANIFEST, RECORD_HASH, DiskFullError, Store

from conftest import run_cli


def _artifact(store: Store, key: str, payload: bytes = b"weights") -> None:
    store.get_or_create(key, lambda d: (d / "w.bin").write_bytes(payload), kind="test")


# ---- verify on read --------------------------------------------------------------------------
def test_a_damaged_artifact_is_quarantined_and_recomputed(tmp_path, capsys):
    store = Store(tmp_path)
    _artifact(store, "k1", b"good")
    (store.object_dir("k1") / "w.bin").write_bytes(b"evil")  # same size, other bytes
    reader = Store(tmp_path)  # another process: verifies on first use
    assert not reader.has("k1")
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and "artifact k1" in line and "w.bin" in line and "moved to" in line
    assert len(list((tmp_path / "quarantine").iterdir())) == 1
    produced = []
    reader.get_or_create("k1", lambda d: (produced.append(1), (d / "w.bin").write_bytes(b"good"))[0], kind="test")
    assert produced == [1] and (reader.path("k1") / "w.bin").read_bytes() == b"good"
    assert json.loads((tmp_path / "log" / "quarantine.jsonl").read_text().splitlines()[0])["key"] == "k1"


def test_verification_is_cached_until_the_file_changes(tmp_path):
    store = Store(tmp_path)
    _artifact(store, "k2")
    reader = Store(tmp_path)
    assert reader.has("k2") and reader.has("k2")
    path = reader.object_dir("k2") / "w.bin"
    path.write_bytes(b"WEIGHTS")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    (reader.object_dir("k2") / MANIFEST).touch()  # a changed manifest signature forces a re-check
    assert not reader.has("k2")


def test_a_damaged_shard_is_rewritten(tmp_path, capsys):
    store = Store(tmp_path)
    sharded = store.sharded("s", kind="feat", num_shards=2)
    sharded.write_shard(0, lambda d: np.save(d / "x.npy", np.zeros(3)))
    (sharded.partial / "shard-00000" / "x.npy").write_bytes(b"garbage")
    again = Store(tmp_path).sharded("s", kind="feat", num_shards=2)
    assert again.missing() == [0, 1]
    assert "shard s/0" in capsys.readouterr().err


def test_a_shard_renamed_in_between_two_looks_reads_as_intact(tmp_path, monkeypatch, capsys):
    """Another rank's shard lands (an atomic rename) after the reader found no manifest but before
    it asked whether the directory exists: the reader must see a whole shard, not crash or
    quarantine it (a multi-rank extraction died of this in CI and left rank 0 waiting)."""
    writer = Store(tmp_path)
    sharded = writer.sharded("s", kind="feat", num_shards=2)
    sharded.write_shard(0, lambda d: np.save(d / "x.npy", np.zeros(3)))
    shard = sharded.partial / "shard-00000"
    hidden = tmp_path / "in-flight"
    os.rename(shard, hidden)
    real_exists = type(shard).exists

    def exists_after_the_rename_lands(path, *args, **kwargs):
        if path == shard and hidden.exists():
            os.rename(hidden, shard)
        return real_exists(path, *args, **kwargs)

    monkeypatch.setattr(type(shard), "exists", exists_after_the_rename_lands)
    reader = Store(tmp_path).sharded("s", kind="feat", num_shards=2)
    assert reader.missing() == [1]
    assert "quarantine" not in capsys.readouterr().err and not list((tmp_path / "quarantine").iterdir())


def test_result_records_are_hashed_and_checked(tmp_path, capsys):
    store = Store(tmp_path)
    store.put_result("r1", {"type": "result", "metrics": {"rfid": 271.31783}})
    record = json.loads(store.result_path("r1").read_text())
    assert RECORD_HASH in record
    record["metrics"]["rfid"] = 1.32  # edited by hand
    store.result_path("r1").write_text(json.dumps(record))
    assert [p for p in Store(tmp_path).verify().problems if "r1" in p]
    reader = Store(tmp_path)
    assert not reader.has_result("r1") and list(reader.results()) == []
    assert "result r1" in capsys.readouterr().err
    with pytest.raises(StoreError, match="no result r1"):
        reader.get_result("r1")


def test_a_truncated_record_is_not_cached_and_never_crashes_listing(tmp_path, capsys):
    store = Store(tmp_path)
    store.put_result("r2", {"type": "result", "metrics": {"psnr": 30.0}})
    store.put_result("r3", {"type": "result", "metrics": {"psnr": 31.0}})
    path = store.result_path("r2")
    path.write_text(path.read_text()[:40])
    reader = Store(tmp_path)
    assert [r["key"] for r in reader.results()] == ["r3"]
    assert "result r2" in capsys.readouterr().err
    assert not reader.has_result("r2")


def test_verify_covers_partial_and_repair_quarantines(tmp_path):
    store = Store(tmp_path)
    _artifact(store, "k3")
    store.put_result("r4", {"type": "result"})
    sharded = store.sharded("s2", kind="feat", num_shards=2)
    sharded.write_shard(0, lambda d: (d / "x").write_text("x"))
    (sharded.partial / "shard-00000" / "x").write_text("y")
    (store.object_dir("k3") / "w.bin").write_bytes(b"WEIGHTS")
    report = Store(tmp_path).verify()
    assert sorted(kind for kind, _, _ in report.damaged) == ["artifact", "shard"]
    moved = Store(tmp_path).repair()
    assert len(moved) == 2 and Store(tmp_path).verify().ok
    assert not store.object_dir("k3").exists()


def test_cli_repair_and_verify_fix(tmp_path):
    store = Store(tmp_path)
    _artifact(store, "k4")
    (store.object_dir("k4") / "w.bin").write_bytes(b"WEIGHTS")
    checked = run_cli("store", "verify", "--store", str(tmp_path))
    assert checked.returncode == 1 and "artifact k4" in checked.stdout and "store repair" in checked.stdout
    fixed = run_cli("store", "repair", "--store", str(tmp_path))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert run_cli("store", "verify", "--store", str(tmp_path)).returncode == 0


# ---- faults end cleanly ------------------------------------------------------------------------
def test_a_full_disk_names_the_path_and_leaves_no_temporary_files(tmp_path):
    store = Store(tmp_path)

    def producer(directory):
        (directory / "half.bin").write_bytes(b"x" * 2_000_000)
        raise OSError(errno.ENOSPC, "No space left on device", str(directory / "checkpoint.pt"))

    with pytest.raises(DiskFullError) as caught:
        store.get_or_create("k5", producer, kind="generator-checkpoint")
    message = str(caught.value)
    assert "checkpoint.pt" in message and "MB free" in message and "2.0 MB written" in message
    assert list((tmp_path / "tmp").iterdir()) == []


def test_writing_the_unit_status_cannot_raise(tmp_path):
    from tokbench.execution.runner import Outcome, _record_outcome

    (tmp_path / "units").write_text("not a directory")  # every status write fails
    outcome = _record_outcome(tmp_path, Outcome("u1", "unit one", "failed", error="ValueError: boom"))
    assert outcome["status"] == "failed"
    assert "ValueError: boom" in outcome["error"] and "could not record the unit's status" in outcome["error"]


def test_store_pointing_at_a_file_is_one_line(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    result = run_cli("store", "ls", env={"TOKBENCH_STORE": str(target)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "is a file, not a directory" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only directories")
def test_a_read_only_store_is_one_line_for_a_run(tmp_path):
    store = Store(tmp_path)
    for sub in tmp_path.iterdir():
        sub.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="read-only"):
            store.require_writable()
    finally:
        for sub in tmp_path.iterdir():
            sub.chmod(0o755)


# ---- maintenance -------------------------------------------------------------------------------
#: a separate interpreter that holds a temporary and a partial directory until its stdin closes.
#: (A subprocess, not a multiprocessing child: a spawned child re-imports this test module, whose
#: ``from conftest import ...`` can find another folder's conftest.py first in a full session.)
_HOLDER = """
import sys
from tokbench.storage.store import Store
store = Store(sys.argv[1])
store._tmp_dir("shardkey")
store.work_dir("trainkey")
print("ready", flush=True)
sys.stdin.read()
"""


def test_gc_keeps_what_a_live_process_holds(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        store = Store(tmp_path)
        assert store.gc(older_than_days=0) == []  # held: nothing removed, even with age 0
    finally:
        holder.stdin.close()
        assert holder.wait(300) == 0
    removed = Store(tmp_path).gc(older_than_days=0)  # the holder is gone: both are abandoned
    assert sorted(p.parent.name for p in removed) == ["partial", "tmp"]


def test_gc_cleans_partial_of_finished_artifacts_and_resume_dirs_are_removed_on_commit(tmp_path):
    store = Store(tmp_path)
    work = []

    def train(directory):
        scratch = store.work_dir("training-of-k6")
        (scratch / "checkpoint.pt").write_bytes(b"resume state")
        work.append(scratch)
        (directory / "w.bin").write_bytes(b"w")

    store.get_or_create("k6", train, kind="generator-checkpoint")
    assert not work[0].exists()  # its artifact committed: the resume checkpoint went with it
    (tmp_path / "partial" / "k7").mkdir()  # left behind next to a committed k7
    _artifact(store, "k7")
    assert [p.name for p in Store(tmp_path).gc()] == ["k7"]


def test_gc_unreferenced_keeps_every_input_a_record_lists(tmp_path):
    store = Store(tmp_path)
    for key in ("tokenizer-ckpt", "reference-features", "orphan"):
        _artifact(store, key)
    store.put_result("r5", {"type": "result", "artifacts": [], "inputs": ["tokenizer-ckpt", "reference-features"]})
    store.close()
    removed = Store(tmp_path).gc(unreferenced=True)
    assert [p.name for p in removed] == ["orphan"]


def test_gc_unreferenced_refuses_records_without_inputs(tmp_path):
    store = Store(tmp_path)
    _artifact(store, "k8")
    store.put_result("old", {"type": "result", "artifacts": []})
    store.close()
    with pytest.raises(StoreError, match="--keep-legacy"):
        Store(tmp_path).gc(unreferenced=True)
    assert Store(tmp_path).gc(unreferenced=True, keep_legacy=True, dry_run=True) == []


def test_a_killed_unit_is_dead_not_running(tmp_path):
    import socket

    from tokbench.execution.planner import Unit
    from tokbench.execution.runner import unit_state

    store = Store(tmp_path / "store")
    run_dir = tmp_path / "run"
    (run_dir / "units").mkdir(parents=True)
    unit = Unit(key="u9", label="unit nine", action="prepare", tokenizer="t")
    dead = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    status = {"status": "running", "pid": dead.pid, "host": socket.gethostname(), "time": time.time()}
    (run_dir / "units" / "u9.json").write_text(json.dumps(status))
    assert unit_state(store, run_dir, unit) == "dead"
    with store.lock("u9"):
        assert unit_state(Store(tmp_path / "store"), run_dir, unit) == "running"
