"""Leaderboard plots (matplotlib, Agg): PNG and SVG of each.

- ``gfid_vs_tokenizer_flops`` / ``gfid_vs_generator_flops``: the scaling curves of the VTP
  paper (generation quality against the compute spent pretraining the tokenizer, and
  against the generator's training compute);
- ``understanding_vs_generation`` (and ``understanding_vs_reconstruction``): one point per
  tokenizer, a probe or zero-shot accuracy against gFID (rFID);
- ``reconstruction_grid``: originals above each tokenizer's reconstruction of the same images;
- ``samples_*``: generated samples of each tokenizer's generator.

A plot whose data is absent is not drawn; the report lists it with the reason.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from tokbench.report.metrics import metric_info
from tokbench.report.report import Plot

PREVIEW_FILE = "preview.npz"  # written by the reconstruction task into its first shard
SAMPLES_FILE = "samples.npz"  # ADM layout: arr_0 = uint8 (N, H, W, 3)


def _figure(width: float = 6.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "tokbench", "font.size": 10})
    return plt.subplots(figsize=(width, height), dpi=110)


def _save(fig, name: str, title: str, caption: str = "") -> Plot:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffers = {}
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata={"Date": None} if fmt == "svg" else {"Software": None})
        buffers[fmt] = buffer.getvalue()
    plt.close(fig)
    return Plot(name, title, buffers["png"], buffers["svg"], caption)


def _value(frame, **match) -> dict[str, float]:
    rows = frame
    for column, value in match.items():
        rows = rows[rows[column] == value]
    rows = rows[rows["value"].notna()]
    return rows.groupby("tokenizer", sort=False)["value"].mean().to_dict()


def scatter(frame, x_task: str, x_metric: str, y_task: str, y_metric: str, name: str, title: str) -> Plot | None:
    xs, ys = _value(frame, task=x_task, metric=x_metric), _value(frame, task=y_task, metric=y_metric)
    common = [t for t in xs if t in ys]
    if not common:
        return None
    x_info, y_info = metric_info(x_metric), metric_info(y_metric)
    fig, ax = _figure()
    for tokenizer in common:
        x, y = xs[tokenizer] * x_info.scale, ys[tokenizer] * y_info.scale
        ax.scatter([x], [y], s=40)
        ax.annotate(tokenizer, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(f"{x_task}: {x_info.label} {x_info.arrow}")
    ax.set_ylabel(f"{y_task}: {y_info.label} {y_info.arrow}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, name, title, f"one point per tokenizer; x from {x_task}, y from {y_task}")


def flops_curve(records: list[dict[str, Any]], flops_of, name: str, title: str, xlabel: str) -> Plot | None:
    """gFID against a FLOP count, one line per tokenizer family (plugin)."""
    points: dict[str, list[tuple[float, float, str]]] = {}
    for record in records:
        gfid = record.get("metrics", {}).get("gfid")
        flops = flops_of(record)
        if gfid is None or not flops:
            continue
        family = record["tokenizer"].get("plugin") or record["tokenizer"]["name"]
        points.setdefault(family, []).append((float(flops), float(gfid), record["tokenizer"].get("label") or ""))
    if not points:
        return None
    fig, ax = _figure()
    for family, values in sorted(points.items()):
        values.sort()
        ax.plot([v[0] for v in values], [v[1] for v in values], marker="o", label=family)
        for x, y, label in values:
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("gFID ↓")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, name, title)


def image_grid(rows: list[tuple[str, np.ndarray]], name: str, title: str, caption: str = "") -> Plot:
    """Rows of uint8 (N, H, W, 3) images, each row labelled."""
    columns = max(len(images) for _, images in rows)
    height = max(images.shape[1] for _, images in rows)
    fig, axes = _figure(width=1.1 * columns + 1.6, height=1.1 * len(rows) * max(1.0, height / 64) + 0.5)
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
    return _save(fig, name, title, caption)


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


def draw_plots(records: list[dict[str, Any]], frame, store=None) -> tuple[list[Plot], dict[str, str]]:
    """Every plot the data allows, and why the others were not drawn."""
    records = [r for r in records if r.get("type") == "result"]
    plots: list[Plot] = []
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
                    "gFID vs tokenizer pretraining compute", "tokenizer pretraining FLOPs"),
        no_generation if generation is None else "no result records both gFID and the tokenizer's training FLOPs")
    add("gfid_vs_generator_flops",
        flops_curve(records, lambda r: r.get("details", {}).get("generator_training_flops"), "gfid_vs_generator_flops",
                    "gFID vs generator training compute", "generator training FLOPs"),
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

