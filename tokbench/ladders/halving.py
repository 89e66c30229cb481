"""Successive halving over a ladder: stop a tokenizer's generator at a rung where it is worse
than the leader with high probability.

Units of different tokenizers are independent jobs. A unit decides at each rung from the rung
records already in the store (its own, just published, and those of the other tokenizers'
units of the same task at the same rung: same parameters, same evaluation dataset). On one
machine the units run one after another, so the first tokenizer always trains to the end and
later ones are judged against everything stored before them; on a cluster a unit sees the rungs
its rivals have reached when it gets there. The decision is recorded either way (docs/ladders.md).
Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tokbench.ladders.data import RUNG, Point, centred_replicates, engine_for


@dataclass
class Decision:
    stop: bool
    reason: str
    leader: str | None = None
    probability_worse: float | None = None  # P(this tokenizer's metric > the leader's)
    rivals: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probability_worse(mine: np.ndarray, theirs: np.ndarray) -> float:
    """Fraction of joint draws (independent: unpaired samples) in which ``mine`` is larger (worse
    for a distance such as gFID) than ``theirs``."""
    count = min(len(mine), len(theirs))
    return float(np.mean(mine[:count] > theirs[:count]))


def _comparable(record: dict[str, Any], params: dict[str, Any], dataset_fingerprint: str) -> bool:
    task = record.get("task", {})
    execution = set(task.get("execution_params") or ())
    theirs = {k: v for k, v in (task.get("params") or {}).items() if k not in execution}
    mine = {k: v for k, v in params.items() if k not in execution}
    return (record.get("type") == RUNG and task.get("kind") == "generation" and theirs == mine
            and (record.get("dataset") or {}).get("fingerprint") == dataset_fingerprint)


def decide(store, tokenizer: str, output, params: dict[str, Any], dataset_fingerprint: str, threshold: float,
           metric: str = "gfid") -> Decision:
    """Whether ``tokenizer``'s generator stops at this rung (``output``: its result there;
    ``params``: the rung record's task params, rung budget included)."""
    value = output.metrics.get(metric)
    evidence = (output.details.get("evidence") or {}).get(metric)
    if value is None or evidence is None:
        return Decision(False, f"no {metric} with per-item evidence at this rung: nothing to decide from")
    latest: dict[str, dict[str, Any]] = {}
    for record in store.results():
        name = record.get("tokenizer", {}).get("name")
        if name == tokenizer or not _comparable(record, params, dataset_fingerprint):
            continue
        if record.get("metrics", {}).get(metric) is None or not (record.get("details", {}).get("evidence") or {}).get(metric):
            continue
        started = (record.get("provenance") or {}).get("started") or 0
        if name not in latest or started >= (latest[name].get("provenance") or {}).get("started", 0):
            latest[name] = record
    if not latest:
        return Decision(False, "no other tokenizer's result at this rung yet (the first to get here trains on)")
    engine = engine_for(store)
    mine = centred_replicates(engine, Point(0.0, float(value), evidence, 0.0))
    best_name, best_value = min(((n, float(r["metrics"][metric])) for n, r in latest.items()), key=lambda item: item[1])
    rivals = sorted(latest)
    if value <= best_value:
        return Decision(False, f"leads this rung ({metric} {value:.4g}; best rival {best_name} {best_value:.4g})",
                        tokenizer, 0.0, rivals)
    leader = latest[best_name]
    theirs = centred_replicates(engine, Point(0.0, best_value, leader["details"]["evidence"][metric], 0.0))
    p = probability_worse(mine, theirs)
    text = f"{metric} {value:.4g} vs the leader {best_name}'s {best_value:.4g}: worse with probability {p:.3f}"
    return Decision(p >= threshold, text, best_name, p, rivals)
