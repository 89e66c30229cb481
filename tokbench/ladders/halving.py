"""Successive halving over a ladder: stop a tokenizer's generator at a rung where its metric
predicted at the full budget is worse than the leader's with high probability.

Units of different tokenizers are independent jobs. A unit decides at each rung from the rung
records already in the store (its own rungs so far, and those of the other tokenizers' units of
the same task that have reached this rung: same parameters, same evaluation dataset). Each
ladder's curve predicts the full budget with the curve family's error drawn in (walk-forward
errors pooled over the ladders, ``tokbench.ladders.fit.predict_group``); the stop probability is
the fraction of joint draws in which this tokenizer's prediction is worse than the predicted
leader's. Before the third rung the model error cannot be estimated (no rung can be predicted
from two below it and checked), so no generator stops there. On one machine the units run one
after another, so the first tokenizer always trains to the end and later ones are judged against
everything stored before them; on a cluster a unit sees the rungs its rivals have reached when
it gets there. The decision is recorded either way (docs/ladders.md). Torch-free.
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


#: task parameters that differ between the rungs of one ladder
RUNG_PARAMS = ("training_flops", "ladder_rung")


def _comparable(record: dict[str, Any], params: dict[str, Any], dataset_fingerprint: str) -> bool:
    """A rung record of the same task as ``params`` (any rung), on the same evaluation dataset."""
    task = record.get("task", {})
    ignored = set(task.get("execution_params") or ()) | set(RUNG_PARAMS)
    theirs = {k: v for k, v in (task.get("params") or {}).items() if k not in ignored}
    mine = {k: v for k, v in params.items() if k not in ignored}
    return (record.get("type") == RUNG and task.get("kind") == "generation" and theirs == mine
            and (record.get("dataset") or {}).get("fingerprint") == dataset_fingerprint)


def rival_ladders(store, tokenizer: str, params: dict[str, Any], dataset_fingerprint: str, fraction: float,
                  metric: str = "gfid") -> dict[str, list[Point]]:
    """The other tokenizers' rungs up to ``fraction`` (the latest record of each rung), for those
    that have reached it; each rung with its per-item evidence."""
    latest: dict[tuple[str, float], dict[str, Any]] = {}
    for record in store.results():
        name = record.get("tokenizer", {}).get("name")
        if name == tokenizer or not _comparable(record, params, dataset_fingerprint):
            continue
        rung = float((record.get("details") or {}).get("ladder_fraction", -1))
        if rung > fraction + 1e-12 or record.get("metrics", {}).get(metric) is None:
            continue
        if not (record.get("details", {}).get("evidence") or {}).get(metric):
            continue
        started = (record.get("provenance") or {}).get("started") or 0
        previous = latest.get((name, rung))
        if previous is None or started >= (previous.get("provenance") or {}).get("started", 0):
            latest[(name, rung)] = record
    ladders: dict[str, list[Point]] = {}
    for (name, rung), record in sorted(latest.items()):
        details = record["details"]
        ladders.setdefault(name, []).append(Point(float(details["rung_flops"]), float(record["metrics"][metric]),
                                                  details["evidence"][metric], rung))
    return {name: points for name, points in ladders.items() if any(abs(p.fraction - fraction) < 1e-12 for p in points)}


def decide(store, tokenizer: str, mine: list[Point], params: dict[str, Any], dataset_fingerprint: str, threshold: float,
           target_flops: float, metric: str = "gfid") -> Decision:
    """Whether ``tokenizer``'s generator stops at its latest rung. ``mine``: its rungs so far (the
    latest last, each with its metric's per-item evidence); ``params``: the task's parameters;
    ``target_flops``: the full budget the curves predict."""
    if not mine or mine[-1].evidence is None:
        return Decision(False, f"no {metric} with per-item evidence at this rung: nothing to decide from")
    rivals = rival_ladders(store, tokenizer, params, dataset_fingerprint, mine[-1].fraction, metric)
    return decide_among(engine_for(store), tokenizer, mine, rivals, threshold, target_flops, metric)


def decide_among(engine, tokenizer: str, mine: list[Point], rivals: dict[str, list[Point]], threshold: float,
                 target_flops: float, metric: str = "gfid") -> Decision:
    """``decide`` given the rivals' rungs up to this one (``engine``: the verdicts engine that
    draws each rung's bootstrap replicates)."""
    from tokbench.ladders.fit import predict_group

    if not rivals:
        return Decision(False, "no other tokenizer's result at this rung yet (the first to get here trains on)")
    names = sorted(rivals)
    if len(mine) < 3 or any(len(rivals[n]) < 3 for n in names):
        return Decision(False, f"{len(mine)} rung(s): the curve family's error needs a rung predicted from two below it "
                               "(from the third rung on)", None, None, names)
    ladders = {name: ([p.flops for p in points], [p.value for p in points],
                      np.stack([centred_replicates(engine, p) for p in points]))
               for name, points in {**rivals, tokenizer: mine}.items()}
    predictions = predict_group(ladders, target_flops)
    leader = min(names, key=lambda n: predictions[n].value)
    me, best = predictions[tokenizer], predictions[leader]
    at = f"predicted {metric} at {target_flops:.3g} FLOPs"
    if me.value <= best.value:
        return Decision(False, f"leads: {at} {me.value:.4g}; best rival {leader} {best.value:.4g}", tokenizer, 0.0, names)
    p = probability_worse(me.draws, best.draws)
    text = (f"{at} {me.value:.4g} vs the leader {leader}'s {best.value:.4g} (from {len(mine)} rungs, curve family's "
            f"error included): worse with probability {p:.3f}")
    return Decision(p >= threshold, text, leader, p, names)
