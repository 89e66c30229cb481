"""One unit on several ranks: rank 0 commits, the others compute and wait (tokbench.runtime.ranks).

The store rules run on two threads of one process (the rendezvous is files, so threads stand
in for ranks); the end-to-end test runs a generation unit on two gloo processes, as a
two-task Slurm job would, and checks DDP training, split extraction and one commit.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from generation_suites import GENERATION_UNIT_SUITE
from tokbench.errors import TokbenchError
from tokbench.runtime.ranks import RankFailed, Ranks, RankStore, Rendezvous
from tokbench.testing.gloo import free_port, gloo_rank


def _pair(tmp_path: Path, attempt: str = "a1") -> tuple[RankStore, RankStore]:
    stores = []
    for rank in (0, 1):
        ranks = Ranks(rank, 2, rank, attempt)
        stores.append(RankStore(tmp_path / "store", ranks, Rendezvous(tmp_path / "rdv" / attempt, ranks, poll_s=0.01)))
    return stores[0], stores[1]


def _both(leader_fn, follower_fn, timeout: float = 30.0):
    """Run the two ranks' code at once; (leader result, follower result), re-raising either's error."""
    results, errors = {}, {}

    def run(name, fn):
        try:
            results[name] = fn()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            errors[name] = error

    # Daemon threads: a rank that hangs fails this test and cannot keep the interpreter (and CI) alive.
    threads = [threading.Thread(target=run, args=(n, f), name=n, daemon=True)
               for n, f in (("leader", leader_fn), ("follower", follower_fn))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [thread.name for thread in threads if thread.is_alive()]
    assert not hung, f"{' and '.join(hung)} still waiting after {timeout:.0f} s; the other rank's errors: {errors}"
    return results, errors


def test_rank0_alone_runs_an_ordinary_producer_and_the_follower_waits(tmp_path):
    leader, follower = _pair(tmp_path)
    calls = []

    def producer(out: Path):
        calls.append("leader")
        time.sleep(0.2)  # the follower is already waiting
        (out / "x.txt").write_text("from rank 0")

    results, errors = _both(lambda: leader.get_or_create("k1", producer, "thing"),
                            lambda: follower.get_or_create("k1", lambda out: calls.append("follower"), "thing"))
    assert not errors, errors
    assert calls == ["leader"]
    assert results["leader"] == results["follower"]
    assert (results["follower"] / "x.txt").read_text() == "from rank 0"


def test_every_rank_runs_a_collective_producer_and_only_rank0s_output_is_kept(tmp_path):
    leader, follower = _pair(tmp_path)
    ran, barrier = [], threading.Barrier(2, timeout=10)  # the producers meet, as DDP ranks do

    def producer(name):
        def produce(out: Path):
            barrier.wait()
            ran.append(name)
            (out / "who.txt").write_text(name)
            return {"ranks": 2}
        return produce

    results, errors = _both(lambda: leader.get_or_create("k2", producer("rank0"), "train", collective=True),
                            lambda: follower.get_or_create("k2", producer("rank1"), "train", collective=True))
    assert not errors, errors
    assert sorted(ran) == ["rank0", "rank1"]
    path = results["follower"]
    assert path == results["leader"] and (path / "who.txt").read_text() == "rank0"
    assert json.loads((path / "MANIFEST.json").read_text())["meta"]["ranks"] == 2
    assert not list((tmp_path / "store" / "tmp").iterdir()), "the follower's scratch output was not dropped"

    # asked again (now in the store): rank 0 announces "no", so nobody waits in a collective
    results, errors = _both(lambda: leader.get_or_create("k2", producer("again0"), "train", collective=True),
                            lambda: follower.get_or_create("k2", producer("again1"), "train", collective=True), timeout=5)
    assert not errors and sorted(ran) == ["rank0", "rank1"]


def test_shards_are_split_across_ranks_and_rank0_finalizes(tmp_path):
    leader, follower = _pair(tmp_path)

    def extract(store: RankStore):
        table = store.sharded("k3", "features", 5)
        for index in table.todo():
            table.write_shard(index, lambda out, i=index: (out / "rank").write_text(str(store.ranks.rank)))
        return table.finalize()

    results, errors = _both(lambda: extract(leader), lambda: extract(follower))
    assert not errors, errors
    path = results["leader"]
    assert path == results["follower"] and leader.has("k3")
    writers = [(path / f"shard-{i:05d}" / "rank").read_text() for i in range(5)]
    assert writers == ["0", "1", "0", "1", "0"]


def test_a_failed_rank0_stops_the_waiting_follower_with_its_error(tmp_path):
    leader, follower = _pair(tmp_path)

    def leader_fails():
        time.sleep(0.1)
        leader.rendezvous.fail("ValueError: out of memory on GPU 0")

    results, errors = _both(leader_fails, lambda: follower.get_or_create("k4", lambda out: None, "thing"), timeout=10)
    assert isinstance(errors["follower"], RankFailed)
    assert "rank0 failed" in str(errors["follower"]) and "out of memory on GPU 0" in str(errors["follower"])


def test_a_collective_producer_inside_a_rank0_only_one_is_refused(tmp_path):
    leader, _ = _pair(tmp_path)

    def outer(out: Path):
        leader.get_or_create("inner", lambda o: None, "ddp-training", collective=True)

    with pytest.raises(TokbenchError, match="inside a producer that only rank 0 runs"):
        leader.get_or_create("outer", outer, "thing")


def test_followers_never_take_store_locks(tmp_path):
    _, follower = _pair(tmp_path)
    with pytest.raises(TokbenchError, match="only rank 0 takes store locks"):
        follower.lock("anything")


# ---- a whole unit on two processes ---------------------------------------------------------------

SUITE = (GENERATION_UNIT_SUITE.replace("NAME", "two-ranks").replace("LAUNCHER", "{backend: debug, device: cpu}")
         .replace("RESOURCES", "null").replace("STEPS", "6"))


def _rank(rank: int, port: int, run_dir: str, key: str, out: str) -> None:
    from tokbench.execution.runner import execute_unit
    from tokbench.runtime.ranks import agree_ranks

    with gloo_rank(rank, 2, port):
        outcome = execute_unit(run_dir, key, None, False, agree_ranks())
        Path(out, f"rank{rank}.json").write_text(json.dumps(outcome))


def _run_dir(tmp_path: Path, name: str):
    from tokbench.config.suite import load_suite
    from tokbench.execution.planner import plan_suite
    from tokbench.execution.runner import create_run, store_for

    path = tmp_path / f"{name}.yaml"
    path.write_text(SUITE.replace("STORE", str(tmp_path / name)))
    suite = load_suite(path)
    plan = plan_suite(suite)
    (unit,) = [u for u in plan.units if u.action != "prepare"]
    store = store_for(suite)
    return create_run(store, suite, plan, str(path)), unit, store


@pytest.mark.slow
def test_a_generation_unit_on_two_ranks_trains_with_both_and_commits_once(tmp_path):
    import torch.multiprocessing as mp

    from tokbench.execution.runner import execute_unit

    run_dir, unit, store = _run_dir(tmp_path, "two")
    mp.spawn(_rank, args=(free_port(), str(run_dir), unit.key, str(tmp_path)), nprocs=2, join=True)
    outcomes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [o["status"] for o in outcomes] == ["done", "done"], outcomes
    record = store.get_result(unit.key)
    assert record["metrics"]["gfid"] > 0

    commits = [c["kind"] for c in store.commits()]
    assert commits.count("result") == 1 and commits.count("generator-checkpoint") == 1
    (generator,) = [a for a in store.artifacts() if a["kind"] == "generator-checkpoint"]
    assert generator["meta"]["ranks"] == 2  # DDP on both ranks
    latents = [a for a in store.artifacts() if a["kind"] == "features" and a["meta"].get("num_shards", 0) >= 2]
    assert latents, "no multi-shard extraction to split"
    for table in latents:
        writers = {json.loads((Path(store.object_dir(table["key"])) / f"shard-{i:05d}" / "MANIFEST.json").read_text())["pid"]
                   for i in range(table["meta"]["num_shards"])}
        assert len(writers) == 2, f"{table['meta'].get('label')}: shards written by {writers}"

    # one process, same suite: DDP over two ranks takes the single-process steps, so the same generator
    single_dir, single_unit, single_store = _run_dir(tmp_path, "one")
    assert execute_unit(str(single_dir), single_unit.key, None, False)["status"] == "done"
    assert single_store.get_result(single_unit.key)["metrics"]["gfid"] == pytest.approx(record["metrics"]["gfid"], rel=1e-3)
