"""Leaderboard plots (matplotlib, Agg): PNG and SVG of each.

- ``gfid_vs_tokenizer_flops`` / ``gfid_vs_generator_flops``: the scaling curves of the VTP
  paper (generation quality against the compute spent pretraining the tokenizer, and
  against the generator's training compute);
- ``understanding_vs_generation`` (and ``understanding_vs_reconstruction``): one point per
  tokenizer, a probe or zero-shot accuracy against gFID (rFID);
- ``reconstruction_grid``: originals above each tokenizer's reconstruction of the same images;
- ``samples_*``: generated samples of each tokenizer's generator;
- ``ladder*``: budget ladders, rungs with intervals, fitted curves and extrapolation bands
  (``tokbench.report.ladders``).

A plot whose data is absent is not drawn; the report lists it with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tokbench.report.figure import Plot, new_figure, to_plot
from tokbench.report.ladders import ladder_plots
from tokbench.report.metrics import metric_info

PREVIEW_FILE = "preview.npz"  # written by the reconstruction task into its first shard
SAMPLES_FILE = "samples.npz"  # ADM layout: arr_0 = uint8 (N, H, W, 3)


def _points(frame, **match) -> dict[str, tuple[float, float | None, float | None]]:
    """Label -> (value, interval low, interval high) of one metric. Seeds of one measurement are
    averaged (t interval over the seeds); results that are not one measurement (another N,
    budget, code version, ...) are never averaged: each keeps its own point, numbered."""
    from tokbench.verdicts.engine import seed_interval

    rows = frame
    for column, value in match.items():
        rows = rows[rows[column] == value]
    rows = rows[rows["value"].notna()]
    points: dict[str, tuple[float, float | None, float | None]] = {}
    for tokenizer, by_tokenizer in rows.groupby("tokenizer", sort=False):
        groups = list(by_tokenizer.groupby("comparability", sort=False))
        for number, (_, group) in enumerate(groups, start=1):
            label = tokenizer if len(groups) == 1 else f"{tokenizer} ({number})"
            values = [float(v) for v in group["value"]]
            if len(values) > 1:
                interval = seed_interval(values, 0.95)
                points[label] = (sum(values) / len(values), interval.low, interval.high)
            else:
                low = group["ci_low"].iloc[0] if "ci_low" in group else None
                high = group["ci_high"].iloc[0] if "ci_high" in group else None
                points[label] = (values[0], _number(low), _number(high))
    return points


def _number(value) -> float | None:
    return None if value is None or value != value else float(value)


def _error(value: float, low: float | None, high: float | None, scale: float) -> list[list[float]] | None:
    """Asymmetric error bar lengths for matplotlib, or None without an interval."""
    if low is None or high is None:
        return None
    return [[max(value - low, 0.0) * abs(scale)], [max(high - value, 0.0) * abs(scale)]]


def scatter(frame, x_task: str, x_metric: str, y_task: str, y_metric: str, name: str, title: str) -> Plot | None:
    xs, ys = _points(frame, task=x_task, metric=x_metric), _points(frame, task=y_task, metric=y_metric)
    common = [t for t in xs if t in ys]
    if not common:
        return None
    x_info, y_info = metric_info(x_metric), metric_info(y_metric)
    fig, ax = new_figure()
    for tokenizer in common:
        (x, *x_ci), (y, *y_ci) = xs[tokenizer], ys[tokenizer]
        ax.errorbar([x * x_info.scale], [y * y_info.scale], xerr=_error(x, *x_ci, x_info.scale),
                    yerr=_error(y, *y_ci, y_info.scale), fmt="o", markersize=6, capsize=3, elinewidth=1)
        x, y = x * x_info.scale, y * y_info.scale
        ax.annotate(tokenizer, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(f"{x_task}: {x_info.label} {x_info.arrow}")
    ax.set_ylabel(f"{y_task}: {y_info.label} {y_info.arrow}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return to_plot(fig, name, title, f"one point per tokenizer; x from {x_task}, y from {y_task}; "
                                   "bars: 95% confidence intervals")


def flops_curve(records: list[dict[str, Any]], flops_of, name: str, title: str, xlabel: str, frame=None) -> Plot | None:
    """gFID against a FLOP count, one line per tokenizer family (plugin); error bars from the
    frame's intervals (``ci_low``/``ci_high`` of each result's gFID) when it has them."""
    intervals = {}
    if frame is not None and "ci_low" in frame:
        rows = frame[frame["metric"] == "gfid"]
        intervals = {k: (_number(lo), _number(hi)) for k, lo, hi in zip(rows["unit_key"], rows["ci_low"], rows["ci_high"])}
    points: dict[str, list[tuple[float, float, str, tuple]]] = {}
    for record in records:
        gfid = record.get("metrics", {}).get("gfid")
        flops = flops_of(record)
        if gfid is None or not flops:
            continue
        family = record["tokenizer"].get("plugin") or record["tokenizer"]["name"]
        points.setdefault(family, []).append((float(flops), float(gfid), record["tokenizer"].get("label") or "",
                                              intervals.get(record.get("key"), (None, None))))
    if not points:
        return None
    fig, ax = new_figure()
    for family, values in sorted(points.items()):
        values.sort(key=lambda v: v[:3])
        line = ax.plot([v[0] for v in values], [v[1] for v in values], marker="o", label=family)[0]
        for x, y, _, (low, high) in values:
            error = _error(y, low, high, 1.0)
            if error is not None:
                ax.errorbar([x], [y], yerr=error, fmt="none", ecolor=line.get_color(), capsize=3, elinewidth=1)
        for x, y, label, _ in values:
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("gFID ↓")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return to_plot(fig, name, title)


def image_grid(rows: list[tuple[str, np.ndarray]], name: str, title: str, caption: str = "") -> Plot:
    """Rows of uint8 (N, H, W, 3) images, each row labelled."""
    columns = max(len(images) for _, images in rows)
    height = max(images.shape[1] for _, images in rows)
    fig, axes = new_figure(width=1.1 * columns + 1.6, height=1.1 * len(rows) * max(1.0, height / 64) + 0.5)
    fig.clf()
    grid = fig.subplots(len(rows), columns, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(columns):
            ax = grid[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(images[c], interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return to_plot(fig, name, title, caption)


def _artifact_file(store, key: str, filename: str):
    if store is None:
        return None
    if not store.has(key):
        return None
    directory = store.path(key)
    found = sorted(directory.rglob(filename))
    return found[0] if found else None


def reconstruction_grids(records: list[dict[str, Any]], store) -> tuple[list[Plot], list[str]]:
    by_dataset: dict[tuple[str, str], list[tuple[str, np.ndarray, np.ndarray]]] = {}
    missing = []
    for record in records:
        if record["task"]["kind"] != "reconstruction":
            continue
        path = next((p for p in (_artifact_file(store, k, PREVIEW_FILE) for k in record.get("artifacts", [])) if p), None)
        if path is None:
            missing.append(record["tokenizer"].get("label") or record["tokenizer"]["name"])
            continue
        with np.load(path) as preview:
            by_dataset.setdefault((record["task"]["name"], record["dataset"]["name"]), []).append(
                (record["tokenizer"].get("label") or record["tokenizer"]["name"], preview["originals"], preview["reconstructions"]))
    plots = []
    for (task, dataset), entries in by_dataset.items():
        entries.sort(key=lambda e: e[0])
        rows = [("original", entries[0][1])] + [(label, recon) for label, _, recon in entries]
        name = "reconstruction_grid" if len(by_dataset) == 1 else f"reconstruction_grid_{task}_{dataset}"
        plots.append(image_grid(rows, name, f"Reconstructions of {dataset}",
                                "top row: the images fed to the tokenizers (same images in every row)"))
    return plots, missing


def sample_grids(records: list[dict[str, Any]], store, per_tokenizer: int = 8) -> list[Plot]:
    rows = []
    for record in records:
        path = next((p for p in (_artifact_file(store, k, SAMPLES_FILE) for k in record.get("artifacts", [])) if p), None)
        if path is None:
            continue
        with np.load(path) as samples:
            rows.append((record["tokenizer"].get("label") or record["tokenizer"]["name"], samples["arr_0"][:per_tokenizer]))
    if not rows:
        return []
    return [image_grid(sorted(rows, key=lambda r: r[0]), "samples", "Generated samples", "first samples of each generator")]


def draw_plots(records: list[dict[str, Any]], frame, store=None, ladders=None) -> tuple[list[Plot], dict[str, str]]:
    """Every plot the data allows, and why the others were not drawn. ``ladders``: the fitted
    budget ladders (``tokbench.report.ladders.ladder_groups``), one plot per task."""
    records = [r for r in records if r.get("type") == "result"]
    plots: list[Plot] = []
    if ladders:
        plots += ladder_plots(ladders)
    skipped: dict[str, str] = {}
    kinds = {t: k for t, k in zip(frame["task"], frame["task_kind"])} if len(frame) else {}
    understanding = next((t for t, k in kinds.items() if k == "linear_probe"), None) or next(
        (t for t, k in kinds.items() if k == "zero_shot"), None)
    generation = next((t for t, k in kinds.items() if k == "generation"), None)
    reconstruction = next((t for t, k in kinds.items() if k == "reconstruction"), None)

    def add(name: str, plot: Plot | None, why: str) -> None:
        if plot is None:
            skipped[name] = why
        else:
            plots.append(plot)

    no_generation = "no generation results (gFID) yet"
    add("gfid_vs_tokenizer_flops",
        flops_curve(records, lambda r: r["tokenizer"].get("training_flops"), "gfid_vs_tokenizer_flops",
                    "gFID vs tokenizer pretraining compute", "tokenizer pretraining FLOPs", frame),
        no_generation if generation is None else "no result records both gFID and the tokenizer's training FLOPs")
    add("gfid_vs_generator_flops",
        flops_curve(records, lambda r: r.get("details", {}).get("generator_training_flops"), "gfid_vs_generator_flops",
                    "gFID vs generator training compute", "generator training FLOPs", frame),
        no_generation if generation is None else "no result records both gFID and generator FLOPs")
    if understanding and generation:
        add("understanding_vs_generation", scatter(frame, understanding, "top1", generation, "gfid",
                                                   "understanding_vs_generation", "Understanding vs generation"),
            "no tokenizer has both numbers")
    else:
        skipped["understanding_vs_generation"] = no_generation if understanding else "no understanding results"
    if understanding and reconstruction:
        add("understanding_vs_reconstruction", scatter(frame, understanding, "top1", reconstruction, "rfid",
                                                       "understanding_vs_reconstruction", "Understanding vs reconstruction"),
            "no tokenizer has both numbers")
    grids, missing = reconstruction_grids(records, store)
    plots += grids
    if missing:
        skipped["reconstruction_grid"] = (f"no stored preview images for {', '.join(missing)} "
                                          "(measured before previews were kept, or no store given)")
    samples = sample_grids(records, store)
    plots += samples
    if not samples:
        skipped["samples"] = no_generation if generation is None else "no stored samples"
    return plots, skipped

