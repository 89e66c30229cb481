"""Result records -> a pandas table -> Markdown / CSV / JSON.

Torch-free. The full leaderboard (LaTeX, HTML, plots) builds on ``results_frame``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable

#: preferred column order and direction (True: higher is better)
METRIC_ORDER: dict[str, bool] = {
    "rfid": False, "kid": False, "psnr": True, "ssim": True, "lpips": False,
    "top1": True, "top5": True, "top1_best_on_val": True,
}


def results_frame(records: Iterable[dict[str, Any]], suite: str | None = None):
    """One row per result: task, tokenizer, dataset, metrics, protocol and key."""
    import pandas as pd

    rows = []
    for record in records:
        if record.get("type") != "result":
            continue
        if suite is not None and record.get("suite", {}).get("name") != suite:
            continue
        row = {
            "task": record["task"]["name"],
            "tokenizer": record["tokenizer"]["label"],
            "dataset": record["dataset"]["name"],
            "n": record.get("details", {}).get("num_images"),
        }
        for name, value in record["metrics"].items():
            row[name] = value
        for name in record.get("unavailable", {}):
            row[name] = None
        row["protocol"] = record["task"]["protocol_version"]
        row["key"] = record["key"][:10]
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    metrics = [m for m in METRIC_ORDER if m in frame.columns]
    others = [c for c in frame.columns if c not in {"task", "tokenizer", "dataset", "n", "protocol", "key", *metrics}]
    frame = frame[["task", "tokenizer", "dataset", "n", *metrics, *others, "protocol", "key"]]
    return frame.sort_values(["task", "dataset", "tokenizer"]).reset_index(drop=True)


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def export_markdown(frame) -> str:
    from tabulate import tabulate

    if frame.empty:
        return "(no results)"
    headers = [f"{c} {'↓' if METRIC_ORDER.get(c) is False else '↑'}" if c in METRIC_ORDER else c for c in frame.columns]
    rows = [[_format(v) for v in row] for row in frame.itertuples(index=False)]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def export_csv(frame) -> str:
    return frame.to_csv(index=False)


def export_json(frame) -> str:
    return json.dumps(json.loads(frame.to_json(orient="records")), indent=2)
