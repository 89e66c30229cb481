"""Whether each unit of a plan is in the store, to run, or stale (its stored result came from
other code), and the explicit recompute of ``tokbench run --recompute``.

A unit's key holds the digests of the code that computes it (``tokbench.storage.code_digest``); its
``lineage`` is the same key without them. A stored result of the unit's lineage under another
key is a result of earlier code: the unit is *stale*, and the reason names the plugin whose
code or version changed. Earlier results are never deleted: stale ones stay under their own
key, and the ones ``--recompute`` replaces move to ``<store>/replaced/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tokbench.errors import TokbenchError, unknown_choice
from tokbench.execution.planner import Plan, Unit
from tokbench.storage.store import Store

ALL = "all"


@dataclass(frozen=True)
class Freshness:
    state: str  # cached | to run | stale
    reason: str = ""


def stored_by_lineage(store: Store) -> dict[str, dict[str, Any]]:
    """The most recent stored record of each lineage."""
    latest: dict[str, tuple[float, dict[str, Any]]] = {}
    for record in store.results():
        lineage = record.get("lineage")
        if lineage:
            when = float((record.get("provenance") or {}).get("started") or 0.0)
            if lineage not in latest or when >= latest[lineage][0]:
                latest[lineage] = (when, record)
    return {lineage: record for lineage, (_, record) in latest.items()}


def code_change(stored: dict[str, Any], now: dict[str, Any]) -> str:
    """Why a stored result's code differs from the code installed now (``role -> CodeDigest`` dicts)."""
    if not stored:
        return "the stored result predates code digests"
    reasons: dict[str, str] = {}
    for role, current in now.items():
        before = stored.get(role)
        plugin = current["plugin"]
        if before is None or before.get("plugin") != plugin:
            reasons.setdefault(plugin, f"plugin {plugin} now computes the {role}")
        elif before.get("version") != current["version"]:
            reasons.setdefault(plugin, f"plugin {plugin} version changed ({before.get('version')} -> {current['version']})")
        elif before.get("digest") != current["digest"]:
            reasons.setdefault(plugin, f"code of plugin {plugin} changed since the stored result "
                                       f"({before['digest'][:12]} -> {current['digest'][:12]})")
    return "; ".join(reasons.values()) or "the stored result was computed with other inputs"


def classify(store: Store, plan: Plan) -> dict[str, Freshness]:
    """Each unit's state: cached (its result is stored), stale (a result of earlier code is), or to run."""
    lineages: dict[str, dict[str, Any]] | None = None
    states: dict[str, Freshness] = {}
    for unit in plan.units:
        if store.has_result(unit.key):
            states[unit.key] = Freshness("cached")
            continue
        if lineages is None:
            lineages = stored_by_lineage(store)
        previous = lineages.get(unit.lineage) if unit.lineage else None
        if previous is None:
            states[unit.key] = Freshness("to run")
        else:
            now = plan.identities.get("code", {}).get(unit.key, {})
            states[unit.key] = Freshness("stale", code_change((previous.get("provenance") or {}).get("code") or {}, now))
    return states


def select(plan: Plan, suite: Any, names: Iterable[str]) -> list[Unit]:
    """The units ``--recompute`` names: ``all``, a tokenizer of the suite (its prepare and
    evaluation units) or a task (by its display name or kind)."""
    names = list(names)
    if ALL in names:
        return list(plan.units)
    tasks = {task.display_name: index for index, task in enumerate(suite.tasks)}
    kinds: dict[str, list[int]] = {}
    for index, task in enumerate(suite.tasks):
        kinds.setdefault(task.kind, []).append(index)
    chosen: list[Unit] = []
    for name in names:
        if name in suite.tokenizers:
            matched = [u for u in plan.units if u.tokenizer == name]
        elif name in tasks or name in kinds:
            indices = {tasks[name]} if name in tasks else set(kinds[name])
            matched = [u for u in plan.units if u.task_index in indices]
        else:
            raise TokbenchError(f"--recompute: {unknown_choice('tokenizer or task', name, [ALL, *suite.tokenizers, *tasks])}")
        chosen += [u for u in matched if u not in chosen]
    return chosen


def retire(store: Store, key: str) -> Path:
    """Move a stored result out of the way of its recompute, to ``<store>/replaced/``; returns where."""
    source = store.result_path(key)
    target = store.root / "replaced" / f"{key}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{key}-{time.strftime('%Y%m%d-%H%M%S')}+{suffix}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    source.replace(target)
    return target


def replaced_results(store: Store) -> list[dict[str, Any]]:
    """Records ``--recompute`` replaced (reachable for ``tokbench report --all-versions``)."""
    return [json.loads(path.read_text()) for path in sorted((store.root / "replaced").glob("*.json"))]
