"""The debug/local launcher's schedule: a unit starts as soon as its dependencies are stored
and a worker is free (no waves), units that unlock others first; failures skip dependents.

The executor and the unit function are replaced by in-process fakes so the schedule itself is
what is tested, with real timings of a few tenths of a second."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from tokbench.config.suite import LauncherConfig
from tokbench.execution.launch import executors
from tokbench.execution.planner import Plan, Unit
from tokbench.execution.runner import Outcome


class FakeStore:
    def __init__(self, done=()):
        self.done = set(done)

    def has_result(self, key: str) -> bool:
        return key in self.done


class FakeExecutor:
    """submitit's executor surface the launcher uses: submit() -> job with done()/result()."""

    def __init__(self, workers: int):
        self.pool = ThreadPoolExecutor(workers)

    def submit(self, fn, *args):
        future = self.pool.submit(fn, *args)
        return SimpleNamespace(done=future.done, result=future.result)


def run(plan: Plan, backend: str, seconds: dict[str, float], store: FakeStore | None = None, fail: tuple[str, ...] = (),
        workers: int = 2, monkeypatch=None):
    store = store or FakeStore()
    events: dict[str, tuple[float, float]] = {}
    order: list[str] = []
    lock = threading.Lock()

    def execute_unit(run_dir, key, threads, progress):
        start = time.perf_counter()
        with lock:
            order.append(key)
        time.sleep(seconds.get(key, 0.0))
        events[key] = (start, time.perf_counter())
        if key in fail:
            return Outcome(key, key, "failed", error="boom").to_dict()
        store.done.add(key)
        return Outcome(key, key, "done").to_dict()

    monkeypatch.setattr(executors, "execute_unit", execute_unit)
    monkeypatch.setattr(executors, "make_executor", lambda launcher, folder: FakeExecutor(workers))
    launcher = LauncherConfig(backend=backend, max_workers=workers)
    outcomes = executors.launch(plan, run_dir=Path("unused"), store=store, launcher=launcher, progress=False)
    return {o.key: o for o in outcomes}, events, order


def unit(key: str, *deps: str) -> Unit:
    return Unit(key, "prepare" if not deps else "evaluate", "t", key, deps=tuple(deps))


def test_a_unit_starts_when_its_dependencies_are_done_not_when_a_wave_is(monkeypatch):
    # slow and p have no dependencies (one "wave"); e needs p only and must not wait for slow
    plan = Plan("d", [unit("slow"), unit("p"), unit("e", "p")])
    outcomes, events, _ = run(plan, "local", {"slow": 1.5, "p": 0.1, "e": 0.1}, monkeypatch=monkeypatch)
    assert {k: o.status for k, o in outcomes.items()} == {"slow": "done", "p": "done", "e": "done"}
    assert events["e"][0] < events["slow"][1] - 0.5, events


def test_units_that_unlock_the_most_go_first(monkeypatch):
    plan = Plan("d", [unit("alone"), unit("small"), unit("big"), unit("s1", "small"), unit("b1", "big"),
                      unit("b2", "big"), unit("b3", "b1")])
    _, _, order = run(plan, "debug", {}, monkeypatch=monkeypatch)
    # big unlocks 3 (b1, b2, and b3 through b1), small 1, alone 0; ties keep the plan's order
    assert order[:3] == ["big", "small", "b1"], order
    assert order.index("b3") > order.index("b1") and order.index("s1") > order.index("small")
    assert sorted(order) == sorted(u.key for u in plan.units)


def test_a_failure_skips_its_dependents_and_nothing_else(monkeypatch):
    plan = Plan("d", [unit("p"), unit("q"), unit("e", "p"), unit("f", "e"), unit("g", "q")])
    for backend in ("debug", "local"):
        outcomes, _, order = run(plan, backend, {}, fail=("p",), monkeypatch=monkeypatch)
        status = {k: o.status for k, o in outcomes.items()}
        assert status == {"p": "failed", "q": "done", "e": "skipped", "f": "skipped", "g": "done"}, backend
        assert outcomes["e"].error == "dependency p failed" and outcomes["f"].error == "dependency e failed"
        assert "e" not in order and "f" not in order


def test_stored_units_are_not_run_again(monkeypatch):
    plan = Plan("d", [unit("p"), unit("e", "p"), unit("f", "p")])
    outcomes, _, order = run(plan, "local", {}, store=FakeStore({"p", "e"}), monkeypatch=monkeypatch)
    assert [o.status for o in outcomes.values()] == ["cached", "cached", "done"] and order == ["f"]


def test_a_dependency_cycle_is_an_error_not_a_hang(monkeypatch):
    plan = Plan("d", [unit("a", "b"), unit("b", "a")])
    with pytest.raises(RuntimeError, match="dependency cycle"):
        run(plan, "local", {}, monkeypatch=monkeypatch)


def test_worker_lines_reach_the_terminal_tagged_with_their_unit(tmp_path, capsys):
    log = tmp_path / "job.err"
    forwarder = executors.WorkerLog(SimpleNamespace(paths=SimpleNamespace(stderr=log)), "prepare/vtp-tiny")
    forwarder.forward()  # the worker has not started: nothing, no error
    log.write_bytes(b"  > tokenizer training (vtp-tiny)\n\n  . vtp pre")
    forwarder.forward()
    with log.open("ab") as handle:
        handle.write(b"training: 120/300 steps, 1m10s in, about 1m45s left\n")
    forwarder.forward()
    assert capsys.readouterr().err.splitlines() == [
        "  prepare/vtp-tiny > tokenizer training (vtp-tiny)",
        "  prepare/vtp-tiny . vtp pretraining: 120/300 steps, 1m10s in, about 1m45s left",
    ]


def test_among_equals_the_heaviest_goes_first_so_short_units_fill_the_end(monkeypatch):
    plan = Plan("d", [unit("probe"), Unit("generation", "evaluate", "t", "generation", weight=5.0), unit("probe2")])
    _, _, order = run(plan, "debug", {}, monkeypatch=monkeypatch)
    assert order == ["generation", "probe", "probe2"]


def test_the_lightest_evaluation_needing_nothing_trained_goes_first(monkeypatch):
    # a first number in the first minute: reconstruction of an untrained baseline before any training
    plan = Plan("d", [unit("train"), Unit("gen-base", "evaluate", "t", "gen-base", weight=5.0),
                      Unit("rec-base", "evaluate", "t", "rec-base"), Unit("rec-base2", "evaluate", "t", "rec-base2"),
                      unit("rec-trained", "train")])
    _, _, order = run(plan, "debug", {}, monkeypatch=monkeypatch)
    assert order == ["rec-base", "train", "gen-base", "rec-base2", "rec-trained"], order
    _, events, _ = run(plan, "local", {"rec-base": 0.3, "train": 0.3}, monkeypatch=monkeypatch)
    assert events["rec-base"][0] < 0.1 + min(start for start, _ in events.values())  # on two workers, it starts at once too


def test_the_generation_task_is_weighted_as_the_heavy_one():
    from tokbench.tasks.base import Task
    from tokbench.tasks.generation import GenerationTask

    assert GenerationTask.schedule_weight > Task.schedule_weight


def test_ctrl_c_stops_the_local_workers_it_started(monkeypatch):
    cancelled = []

    class Stuck:
        def submit(self, fn, *args):
            key = args[1]
            return SimpleNamespace(done=lambda: False, cancel=lambda check=True: cancelled.append(key))

    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(executors, "make_executor", lambda launcher, folder: Stuck())
    monkeypatch.setattr(executors.time, "sleep", interrupt)
    plan = Plan("d", [unit("a"), unit("b"), unit("c")])
    with pytest.raises(KeyboardInterrupt):
        executors.launch(plan, Path("unused"), FakeStore(), LauncherConfig(backend="local", max_workers=2), progress=False)
    assert sorted(cancelled) == ["a", "b"]  # the two running; c never started
