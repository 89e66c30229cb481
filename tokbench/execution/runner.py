"""Executing units. A run directory holds the resolved suite and the plan; a
unit is executed from nothing but (run directory, unit key), so what an
executor pickles is two strings, never a model.

``execute_unit`` never raises: it returns an outcome and writes it next to the
run, so failures reach the user whatever the backend (in-process, subprocess,
Slurm) and submitit never drops into a debugger.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tokbench.config.suite import Suite
from tokbench.execution.planner import Plan, Unit, build_dataset, build_task, tokenizer_params
from tokbench.hashing import content_key
from tokbench.storage.store import Store, write_json_atomic

if TYPE_CHECKING:
    from tokbench.runtime.ranks import Ranks

SUITE_FILE = "suite.resolved.yaml"
PLAN_FILE = "plan.json"


@dataclass
class Outcome:
    key: str
    label: str
    status: str  # done | cached | failed | skipped
    seconds: float = 0.0
    error: str | None = None
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_for(suite: Suite, base: Path | None = None) -> Store:
    root = Path(suite.store.root).expanduser()
    if not root.is_absolute() and base is not None:
        root = base / root
    return Store(root)


def create_run(store: Store, suite: Suite, plan: Plan, source: str) -> Path:
    store.require_writable()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = store.root / "runs" / f"{stamp}-{suite.name}-{plan.suite_digest[:8]}"
    suffix = 0
    while run_dir.exists():
        suffix += 1
        run_dir = run_dir.with_name(f"{run_dir.name.split('+')[0]}+{suffix}")
    (run_dir / "units").mkdir(parents=True)
    data = suite.model_dump(mode="json")
    data["store"]["root"] = str(store.root.resolve())
    (run_dir / SUITE_FILE).write_text(f"# resolved from {source}\n" + yaml.safe_dump(data, sort_keys=False))
    (run_dir / PLAN_FILE).write_text(plan.to_json())
    (store.root / "runs" / "LATEST").write_text(run_dir.name + "\n")
    return run_dir


def latest_run(store: Store) -> Path | None:
    marker = store.root / "runs" / "LATEST"
    if not marker.exists():
        return None
    path = store.root / "runs" / marker.read_text().strip()
    return path if path.exists() else None


def load_run(run_dir: str | Path) -> tuple[Suite, Plan, Store]:
    run_dir = Path(run_dir)
    suite = Suite.model_validate(yaml.safe_load((run_dir / SUITE_FILE).read_text()))
    plan = Plan.from_json((run_dir / PLAN_FILE).read_text())
    return suite, plan, Store(suite.store.root)


def is_done(store: Store, unit: Unit) -> bool:
    return store.has_result(unit.key)


def unit_state(store: Store, run_dir: Path, unit: Unit) -> str:
    """done | running | failed | dead | pending. ``running`` needs a live holder of the unit's
    lock (the kernel releases it when the process dies); a unit whose status file still says
    running without one was killed: ``dead`` (see :func:`unit_status`)."""
    if is_done(store, unit):
        return "done"
    if store.is_locked(unit.key):
        return "running"
    status = unit_status(run_dir, unit.key)
    if status.get("status") == "running":
        return "dead" if not _process_alive(status) else "running"
    return status.get("status", "pending")


def unit_status(run_dir: Path, key: str) -> dict[str, Any]:
    """The unit's status file (``{}`` when absent or unreadable)."""
    try:
        data = json.loads((run_dir / "units" / f"{key}.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _process_alive(status: dict[str, Any]) -> bool:
    """Whether the process a status file names still lives (known only on its own host; on
    another host the released lock already says it does not hold the unit)."""
    import socket

    if status.get("host") != socket.gethostname() or not status.get("pid"):
        return False
    try:
        os.kill(int(status["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return int(status["pid"]) != os.getpid()


def build_tokenizer(suite: Suite, name: str, context, identity: dict[str, Any] | None = None):
    """The tokenizer, built by its plugin's factory. With its plan ``identity``, what the factory
    trains through ``context.cached`` is keyed on the plugin's training code digest."""
    from tokbench.registry.plugins import resolve

    entry = context.registry.tokenizers[suite.tokenizers[name].plugin]
    factory = resolve(entry.factory)
    context.training_code = (identity or {}).get("training_code")
    context.suite_datasets = suite.datasets
    try:
        tokenizer = factory(tokenizer_params(suite, name, context.registry), context)
    finally:
        context.training_code = None
    return tokenizer.to(context.device).eval()


def execute_unit(run_dir: str, unit_key: str, threads: int | None = None, progress: bool = True,
                 ranks: "Ranks | None" = None) -> dict[str, Any]:
    """Run one unit (or find it done). Returns an Outcome as a dict.

    ``ranks``: this process's place in a multi-rank job (every rank calls this with the same
    unit; ``tokbench.runtime.ranks`` says who computes and who commits)."""
    if ranks is not None and ranks.multi:
        return _execute_unit_on_ranks(Path(run_dir), unit_key, threads, ranks)
    started = time.time()
    run_path = Path(run_dir)
    label = unit_key
    try:
        suite, plan, store = load_run(run_path)
        unit = plan.unit(unit_key)
        label = unit.label
        if is_done(store, unit):
            return Outcome(unit_key, label, "cached").to_dict()
        _prepare_process(threads)
        with store.lock(unit.key):
            if is_done(store, unit):
                return Outcome(unit_key, label, "cached").to_dict()
            _write_status(run_path, unit, "running")
            _execute(suite, plan, store, unit, run_path, progress)
        outcome = Outcome(unit_key, label, "done", time.time() - started)
    except BaseException as error:  # noqa: BLE001 - reported to the user, never swallowed
        if isinstance(error, KeyboardInterrupt):
            raise
        outcome = _failed(unit_key, label, started, error)
    return _record_outcome(run_path, outcome)


def _record_outcome(run_path: Path, outcome: Outcome) -> dict[str, Any]:
    """Write the unit's final status; a failure to write it (a full disk) is added to the
    outcome, never raised: an exception here would reach submitit, whose debug executor
    opens a debugger and waits on stdin."""
    try:
        _write_status(run_path, None, outcome.status, outcome, outcome.key)
    except BaseException as error:  # noqa: BLE001 - reported in the outcome
        if isinstance(error, KeyboardInterrupt):
            raise
        note = f"could not record the unit's status in {run_path / 'units'}: {_describe(error, run_path / 'units')}"
        outcome = Outcome(outcome.key, outcome.label, "failed" if outcome.status != "done" else outcome.status,
                          outcome.seconds, f"{outcome.error}; {note}" if outcome.error else note, outcome.traceback)
    return outcome.to_dict()


def _execute_unit_on_ranks(run_path: Path, unit_key: str, threads: int | None, ranks: "Ranks") -> dict[str, Any]:
    """``execute_unit`` on one rank of several: the leader locks, runs and records as in one
    process; followers run the same code against a :class:`~tokbench.runtime.ranks.RankStore` and
    record nothing."""
    from tokbench.runtime.ranks import RankStore, Rendezvous, UnitSettled

    started = time.time()
    label = unit_key
    rendezvous = Rendezvous(run_path / "ranks" / unit_key / ranks.attempt, ranks)
    try:
        suite, plan, _ = load_run(run_path)
        unit = plan.unit(unit_key)
        label = unit.label
        store = RankStore(suite.store.root, ranks, rendezvous)
        _prepare_process(threads)
        if ranks.leader:
            _write_status(run_path, unit, "running")
            with store.lock(unit.key):
                status = "cached" if is_done(store, unit) else "done"
                if status == "done":
                    _execute(suite, plan, store, unit, run_path, False, ranks)
            rendezvous.finish()
        else:
            try:
                if not is_done(store, unit):
                    _execute(suite, plan, store, unit, run_path, False, ranks)
                rendezvous.wait(lambda: is_done(store, unit), f"the result of {label}")
            except UnitSettled:
                pass
            status = "done"
        outcome = Outcome(unit_key, label, status, time.time() - started)
    except BaseException as error:  # noqa: BLE001 - reported, and the other ranks told
        if isinstance(error, KeyboardInterrupt):
            raise
        outcome = _failed(unit_key, label, started, error)
        rendezvous.fail(f"{outcome.error}")
    if ranks.leader:
        return _record_outcome(run_path, outcome)
    return outcome.to_dict()


def _prepare_process(threads: int | None) -> None:
    from tokbench.runtime.memory import keep_freed_memory

    keep_freed_memory()  # the same process settings for every unit, whichever backend runs it
    if threads:
        import torch

        torch.set_num_threads(threads)


def _failed(unit_key: str, label: str, started: float, error: BaseException) -> Outcome:
    return Outcome(unit_key, label, "failed", time.time() - started, _describe(error), traceback.format_exc())


def _describe(error: BaseException, path: Path | None = None) -> str:
    """One line for an error; a full disk names the path and the space."""
    from tokbench.storage.store import DiskFullError, disk_full_message, is_disk_full

    if isinstance(error, DiskFullError):
        return f"{type(error).__name__}: {error.strerror or error}"
    if is_disk_full(error):
        return f"DiskFullError: {disk_full_message(error, path)}"
    return f"{type(error).__name__}: {error}"


def _write_status(run_dir: Path, unit: Unit | None, status: str, outcome: Outcome | None = None, key: str | None = None) -> None:
    key = key or (unit.key if unit else "")
    import socket

    payload = {"status": status, "time": time.time(), "pid": os.getpid(), "host": socket.gethostname()}
    if outcome is not None:
        payload.update(outcome.to_dict())
    write_json_atomic(run_dir / "units" / f"{key}.json", payload)


def _execute(suite: Suite, plan: Plan, store: Store, unit: Unit, run_dir: Path, progress: bool,
             ranks: "Ranks | None" = None) -> None:
    """Run the unit and record its result, its wall time by phase (``timings``) included."""
    from tokbench.runtime.timing import recording

    store.begin_unit()  # every artifact the unit finds or makes is listed in its record ("inputs")
    with recording(progress):
        _execute_recorded(suite, plan, store, unit, run_dir, ranks)


def _execute_recorded(suite: Suite, plan: Plan, store: Store, unit: Unit, run_dir: Path, ranks: "Ranks | None") -> None:
    from tokbench.runtime.context import BuildContext, resolve_device
    from tokbench.runtime.timing import current_record, phase
    from tokbench.storage import provenance
    from tokbench.tasks.base import TaskContext

    device = resolve_device(suite.launcher.device)
    if ranks is not None and ranks.multi and device == "cuda":
        device = f"cuda:{ranks.local_rank}"  # one GPU per rank
    provenance.apply_tf32_policy(device, suite.launcher.tf32)
    workers = suite.launcher.loader_workers
    if workers == "auto":
        from tokbench.data.loader import default_workers

        workers = default_workers(device)
    context = BuildContext(store=store, device=device, loader_workers=workers,
                           checkpoint_every=suite.launcher.checkpoint_every)
    started = time.time()
    training = unit.action == "prepare"  # the unit that produces the tokenizer's weights
    identity = plan.identities.get("tokenizers", {}).get(unit.tokenizer)
    with phase("tokenizer training" if training else "tokenizer loading", unit.tokenizer, None if training else 1.0):
        tokenizer = build_tokenizer(suite, unit.tokenizer, context, identity)
    fingerprint = tokenizer.fingerprint()
    config = suite.tokenizers[unit.tokenizer]
    tokenizer_record = {
        "name": unit.tokenizer,
        "label": config.label or unit.tokenizer,
        "plugin": config.plugin,
        "params": config.params,
        "fingerprint": fingerprint,
        "identity": identity,
        # trained artifacts the build produced or reused, with the training code they are keyed on
        "built_from": context.artifacts_used,
    }
    # tasks key their caches (reconstructions, features) on this: the weights and the plugin's code
    outputs_fingerprint = content_key({"weights": fingerprint, "code": (identity or {}).get("code")})
    if getattr(tokenizer, "training_flops", None):
        tokenizer_record["training_flops"] = float(tokenizer.training_flops)
    code = plan.identities.get("code", {}).get(unit.key, {})
    base = {
        "label": unit.label,
        "lineage": unit.lineage,
        "suite": {"name": suite.name, "digest": plan.suite_digest, "run": run_dir.name},
        "tokenizer": tokenizer_record,
    }
    if unit.action == "prepare":
        store.put_result(unit.key, {**base, "type": "prepared", "inputs": store.used(),
                                    "provenance": {**provenance.collect(device), "code": code},
                                    "seconds": time.time() - started, "timings": current_record()})
        return

    task_config = suite.tasks[unit.task_index]
    task = build_task(suite, unit.task_index, context.registry)
    dataset = build_dataset(suite, task_config.dataset, context.registry)
    task_context = TaskContext(
        build=context,
        tokenizer=tokenizer,
        tokenizer_name=unit.tokenizer,
        tokenizer_fingerprint=outputs_fingerprint,
        dataset=dataset,
        dataset_name=task_config.dataset,
        unit_key=unit.key,
    )
    if task_config.train_dataset:
        task_context.train_dataset = build_dataset(suite, task_config.train_dataset, context.registry)
        task_context.train_dataset_name = task_config.train_dataset

    def result_record(output, kind: str = "result", params: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            **base,
            "type": kind,
            "task": {
                "kind": task_config.kind,
                "name": task_config.display_name,
                "protocol_version": type(task).protocol_version,
                "params": {**task.params.model_dump(mode="json"), **(params or {})},
                # speed-only params: results that differ only in these are still one measurement
                "execution_params": sorted(type(task).execution_params),
            },
            "dataset": {
                "name": task_config.dataset,
                "kind": suite.datasets[task_config.dataset].kind,
                "fingerprint": dataset.fingerprint(),
                "description": dataset.describe(),
            },
            **({"train_dataset": {
                "name": task_config.train_dataset,
                "fingerprint": task_context.train_dataset.fingerprint(),
                "description": task_context.train_dataset.describe(),
            }} if task_config.train_dataset else {}),
            "metrics": output.metrics,
            "unavailable": output.unavailable,
            "evaluator": output.evaluator,
            "artifacts": output.artifacts,
            "inputs": sorted(set(store.used()) | set(output.artifacts)),  # what gc --unreferenced keeps
            "details": output.details,
            "provenance": {**provenance.collect(device), "code": code, "started": started, "seconds": time.time() - started},
            "timings": current_record(),
        }

    def publish(name: str, output, params: dict[str, Any]) -> None:
        """A partial result of this unit (a ladder rung) as its own record, kept out of the tables."""
        _draw_replicates(store, output, suite)
        store.put_result(content_key({"part_of": unit.key, "part": name}),
                         {**result_record(output, "rung", params), "part_of": unit.key})

    task_context.publish = publish
    output = task.run(task_context)
    record = result_record(output)
    _draw_replicates(store, output, suite)
    store.put_result(unit.key, record)


def _draw_replicates(store: Store, output, suite: Suite) -> None:
    """The bootstrap replicates behind this result's intervals, drawn now with the suite's report
    settings (see ``tokbench.verdicts.engine.precompute``)."""
    from tokbench.stats import BootstrapSettings
    from tokbench.verdicts.engine import precompute

    settings = BootstrapSettings(level=suite.report.confidence, resamples=suite.report.resamples, seed=suite.report.seed)
    for problem in precompute(store, output.details.get("evidence"), output.metrics, settings):
        print(f"note: bootstrap replicates not drawn ({problem}); the report will retry", file=sys.stderr)
