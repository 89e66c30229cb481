"""Ladders read back from result records: each tokenizer's rungs (records of type ``rung``,
written by the generation task while it trains, see ``TaskContext.publish``), its full-budget
result, and each rung's bootstrap replicates from the verdicts engine. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from tokbench.stats import BootstrapSettings

RUNG = "rung"


@dataclass
class Point:
    flops: float  # generator training FLOPs achieved at this rung
    value: float
    evidence: dict[str, Any] | None
    fraction: float  # of the full budget (1.0: the full-budget result)


@dataclass
class Ladder:
    """One tokenizer's rungs of one generation task (one full-budget unit)."""

    suite: str | None
    task: str
    dataset: str
    tokenizer: str
    unit: str  # key of the full-budget unit the rungs belong to
    metric: str
    budget: float  # the task's training_flops
    rungs: list[Point] = field(default_factory=list)
    full: Point | None = None  # the full-budget result, when measured
    stopped: dict[str, Any] | None = None  # details.ladder_stop of a generator successive halving stopped
    seed: int | None = None  # the generator's seed (ladders of different seeds are fitted apart)


def _label(record: dict[str, Any]) -> str:
    tokenizer = record.get("tokenizer", {})
    return tokenizer.get("label") or tokenizer.get("name", "?")


def collect(records: Iterable[dict[str, Any]], metric: str = "gfid") -> list[Ladder]:
    """The ladders in ``records`` (rung records and the full-budget results they belong to), in a
    stable order (suite, task, tokenizer)."""
    records = list(records)
    by_key = {r.get("key"): r for r in records if r.get("type") == "result"}
    ladders: dict[str, Ladder] = {}
    for record in records:
        if record.get("type") != RUNG or record.get("metrics", {}).get(metric) is None:
            continue
        unit = record.get("part_of", "")
        details = record.get("details", {})
        if unit not in ladders:
            ladders[unit] = Ladder(record.get("suite", {}).get("name"), record["task"]["name"], record["dataset"]["name"],
                                   _label(record), unit, metric, float(details["full_training_flops"]),
                                   seed=(record["task"].get("params") or {}).get("seed"))
        ladders[unit].rungs.append(Point(float(details["rung_flops"]), float(record["metrics"][metric]),
                                         (details.get("evidence") or {}).get(metric), float(details["ladder_fraction"])))
    for unit, ladder in ladders.items():
        ladder.rungs.sort(key=lambda p: p.flops)
        full = by_key.get(unit)
        if full is None:
            continue
        details = full.get("details", {})
        if (details.get("ladder_stop") or {}).get("stopped"):
            ladder.stopped = details["ladder_stop"]
        elif full.get("metrics", {}).get(metric) is not None:
            ladder.full = Point(float(details["generator_training_flops"]), float(full["metrics"][metric]),
                                (details.get("evidence") or {}).get(metric), 1.0)
    return sorted(ladders.values(), key=lambda l: (l.suite or "", l.task, l.dataset, l.seed or 0, l.tokenizer))


def centred_replicates(engine, point: Point) -> np.ndarray:
    """The point's bootstrap replicates (drawn and cached by the verdicts engine), shifted so they
    centre on the measured value: the bootstrap's upward bias of a Fréchet distance is removed
    as its interval removes it (``FRECHET_INTERVAL`` is the centred construction)."""
    if point.evidence is None:
        from tokbench.verdicts.evidence import EvidenceError

        raise EvidenceError("the rung has no per-item evidence (e.g. scored against an ADM reference batch)")
    replicates = np.asarray(engine.material(point.evidence, point.value).replicates, dtype=np.float64)
    return replicates - replicates.mean() + point.value


def engine_for(store, settings: BootstrapSettings | None = None):
    from tokbench.verdicts.engine import VerdictEngine

    return VerdictEngine(store, settings or BootstrapSettings())
