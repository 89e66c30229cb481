"""Plots: what the data allows is drawn (PNG + SVG), the rest is listed with a reason;
reconstruction grids come from the previews the reconstruction task stores."""

from __future__ import annotations

import numpy as np

from report_fixtures import golden_records
from tokbench.report.frame import long_frame
from tokbench.report.plots import PREVIEW_FILE, SAMPLES_FILE, draw_plots
from tokbench.report.report import build_report, write_leaderboard
from tokbench.storage.store import Store


def test_plots_from_records_and_store(tmp_path):
    store = Store(tmp_path / "store")
    records = golden_records()
    rng = np.random.default_rng(0)
    originals = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    for record in records:
        if record["task"]["kind"] == "reconstruction":
            key = f"preview-{record['tokenizer']['name']}"
            recon = np.clip(originals.astype(int) + rng.integers(-20, 20, originals.shape), 0, 255).astype(np.uint8)
            store.get_or_create(key, lambda out, r=recon: np.savez(out / PREVIEW_FILE, originals=originals, reconstructions=r),
                                kind="test")
            record["artifacts"] = [key]
        if record["task"]["kind"] == "generation" and record["tokenizer"]["name"] == "vae":
            store.get_or_create("samples-vae", lambda out: np.savez(out / SAMPLES_FILE, arr_0=originals), kind="test")
            record["artifacts"] = ["samples-vae"]
    plots, skipped = draw_plots(records, long_frame(records), store)
    names = {p.name for p in plots}
    assert names == {"gfid_vs_tokenizer_flops", "gfid_vs_generator_flops", "understanding_vs_generation",
                     "understanding_vs_reconstruction", "reconstruction_grid", "samples"}, skipped
    for plot in plots:
        assert plot.png[:8] == b"\x89PNG\r\n\x1a\n" and plot.svg.lstrip().startswith(b"<?xml")
    scatter = next(p for p in plots if p.name == "understanding_vs_generation").svg.decode()
    assert "VTP tiny" in scatter and "VAE tiny" in scatter and "bicubic" not in scatter  # bicubic has no gFID
    written = write_leaderboard(build_report(records, store=store, plots=True), tmp_path / "board", ["html"])
    assert (tmp_path / "board" / "plots" / "reconstruction_grid.svg").is_file()
    assert 'id="plot-reconstruction_grid"' in written["html"].read_text()


def test_missing_data_is_explained_not_faked():
    records = [r for r in golden_records() if r["task"]["kind"] != "generation"]
    plots, skipped = draw_plots(records, long_frame(records), store=None)
    assert {p.name for p in plots} == {"understanding_vs_reconstruction"}
    assert skipped["gfid_vs_tokenizer_flops"] == "no generation results (gFID) yet"
    assert skipped["understanding_vs_generation"] == "no generation results (gFID) yet"
    assert "no stored preview images for" in skipped["reconstruction_grid"]
