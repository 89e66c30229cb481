"""Result records -> one long pandas frame: one row per (result, metric).

Every row carries what is needed to decide whether two numbers may share a column
(task, dataset, protocol version, evaluator identity) and where it came from (unit key,
tokenizer fingerprint, provenance). Torch-free.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from tokbench.hashing import content_key
from tokbench.report.comparability import measurement_identity
from tokbench.report.metrics import SPREADS, metric_info

COLUMNS = [
    "suite", "task", "task_kind", "protocol", "dataset", "tokenizer", "tokenizer_name", "plugin",
    "metric", "value", "spread", "spread_count", "n", "seed", "higher_is_better", "evaluator_id",
    "unavailable", "unit_key", "tokenizer_fingerprint", "run", "provenance",
    "comparability", "identity", "evidence", "footnote",
]

#: evaluator sub-records that belong to one metric family only (the rest is shared)
_METRIC_FAMILIES = {"fid": {"rfid", "kid", "gfid", "precision", "recall", "inception_score"},
                    "kid": {"kid"}, "ssim": {"ssim"}, "psnr": {"psnr"}, "lpips": {"lpips"}}


def relevant_evaluator(evaluator: dict[str, Any], metric: str) -> dict[str, Any]:
    """The evaluator settings behind ``metric``: shared entries (protocol, crop, recipe, ...)
    plus the metric's own family (e.g. the FID weights for rFID), so an LPIPS backbone that
    was missing for one tokenizer does not split the rFID column."""
    return {key: value for key, value in evaluator.items()
            if key not in _METRIC_FAMILIES or metric in _METRIC_FAMILIES[key]}


def evaluator_identity(evaluator: dict[str, Any], metric: str) -> str:
    """Hash of ``relevant_evaluator``."""
    return content_key(relevant_evaluator(evaluator, metric))[:12]


def _find_seed(params: Any) -> int | None:
    """A unit's seed: an integer ``seed`` anywhere in its task or tokenizer params."""
    if isinstance(params, dict):
        if isinstance(params.get("seed"), int) and not isinstance(params.get("seed"), bool):
            return params["seed"]
        for value in params.values():
            found = _find_seed(value)
            if found is not None:
                return found
    return None


def long_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    if record.get("type") != "result":
        return []
    task = record["task"]
    metrics = dict(record.get("metrics", {}))
    unavailable = record.get("unavailable", {})
    for name in unavailable:
        metrics.setdefault(name, None)
    seeds = task.get("params", {}).get("seeds")
    seed = _find_seed(task.get("params", {}))
    if seed is None:
        seed = _find_seed(record["tokenizer"].get("params", {}))
    base = {
        "suite": record.get("suite", {}).get("name"),
        "task": task["name"],
        "task_kind": task["kind"],
        "protocol": task["protocol_version"],
        "dataset": record["dataset"]["name"],
        "tokenizer": record["tokenizer"].get("label") or record["tokenizer"]["name"],
        "tokenizer_name": record["tokenizer"]["name"],
        "plugin": record["tokenizer"].get("plugin"),
        "n": record.get("details", {}).get("num_images"),
        "seed": seed,
        "unit_key": record.get("key"),
        "tokenizer_fingerprint": record["tokenizer"].get("fingerprint"),
        "run": record.get("suite", {}).get("run"),
        "provenance": json.dumps(record.get("provenance", {}), sort_keys=True, default=str),
        # a caveat on every number of this result (e.g. generation's token count under token_match: nearest)
        "footnote": record.get("details", {}).get("footnote"),
    }
    identity = measurement_identity(record)
    evidence = record.get("details", {}).get("evidence") or {}
    rows = []
    for name, value in metrics.items():
        if name in SPREADS:
            continue
        info = metric_info(name)
        spread = metrics.get(info.spread) if info.spread else None
        rows.append({
            **base,
            "metric": name,
            "value": None if value is None else float(value),
            "spread": None if spread is None else float(spread),
            "spread_count": len(seeds) if spread is not None and isinstance(seeds, list) else None,
            "higher_is_better": info.higher_is_better,
            "evaluator_id": evaluator_identity(record.get("evaluator", {}), name),
            **_comparability(identity, relevant_evaluator(record.get("evaluator", {}), name)),
            "unavailable": unavailable.get(name),
            # what the metric was computed from, per item (see tokbench.verdicts): its interval and tests
            "evidence": json.dumps(evidence[name], sort_keys=True) if name in evidence else None,
        })
    return rows


def _comparability(identity: dict[str, Any], evaluator: dict[str, Any]) -> dict[str, str]:
    """The measurement identity of one metric (its own evaluator part) and its hash."""
    identity = {**identity, "evaluator": evaluator}
    return {"comparability": content_key(identity)[:16], "identity": json.dumps(identity, sort_keys=True, default=str)}


def long_frame(records: Iterable[dict[str, Any]], suite: str | None = None):
    """All result records (optionally of one suite name) as the long frame."""
    import pandas as pd

    rows = [row for record in records for row in long_rows(record)
            if suite is None or row["suite"] == suite]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("n", "seed", "spread_count"):  # integers with gaps, not floats
        frame[column] = frame[column].astype("Int64")
    return frame.sort_values(["task", "dataset", "tokenizer", "metric", "seed"], na_position="first", kind="stable").reset_index(drop=True)
