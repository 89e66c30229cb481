"""Intervals, ties and the comparability guard on real store evidence (tokbench.report.verdicts)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from report_fixtures import record
from tokbench.report.report import FILES, build_report, write_leaderboard
from tokbench.storage.store import Store
from tokbench.verdicts.evidence import distance, per_item, pointer

N = 200
FID = {"protocol": "rfid-v1", "fid": {"weights_sha256": "7ff4a85c"}}


def _artifact(store: Store, name: str, arrays: dict[str, np.ndarray]) -> str:
    def produce(out):
        for file, array in arrays.items():
            np.save(out / file, array)

    key = f"{name:0<64}"[:64].replace(" ", "0")
    store.get_or_create(key, produce, kind="test-evidence")
    return key


def _recon(store: Store, tokenizer: str, psnr: np.ndarray, features: np.ndarray, reference_key: str,
           **overrides) -> dict:
    key = _artifact(store, f"{tokenizer}{overrides.get('tag', '')}", {"psnr.npy": psnr, "features.npy": features})
    from tokbench.metrics.frechet import frechet_distance_from_features

    reference = np.load(store.object_dir(reference_key) / "features.npy")
    evidence = {"psnr": per_item("mean", pointer(key, "psnr.npy")),
                "rfid": distance("frechet", pointer(key, "features.npy"), pointer(reference_key, "features.npy"), paired=True)}
    rec = record("reconstruction", "reconstruction", "rfid-v1", tokenizer, tokenizer,
                 {"psnr": float(psnr.mean()), "rfid": frechet_distance_from_features(reference, features)},
                 evaluator=FID, details={"num_images": len(psnr), "evidence": evidence}, plugin="vae",
                 key=f"recon-{tokenizer}{overrides.get('tag', '')}")
    rec["task"]["params"].update(overrides.get("params", {}))
    return rec


@pytest.fixture
def store_and_records(tmp_path):
    rng = np.random.default_rng(0)
    store = Store(tmp_path / "store")
    reference = rng.normal(size=(N, 16))
    reference_key = _artifact(store, "reference", {"features.npy": reference})
    psnr = rng.normal(25.0, 2.0, size=N)
    good = reference + rng.normal(scale=0.3, size=reference.shape)
    records = [
        _recon(store, "alpha", psnr, good, reference_key),
        _recon(store, "twin", psnr.copy(), good.copy(), reference_key),  # identical outputs: must tie
        _recon(store, "worse", psnr - 3.0, reference + rng.normal(scale=1.5, size=reference.shape), reference_key),
    ]
    return store, records


def _table(report, name="reconstruction"):
    return next(t for t in report.tables if t.name == name)


def test_every_cell_has_an_interval_and_identical_rows_tie(store_and_records):
    store, records = store_and_records
    report = build_report(records, store=store)
    table = _table(report)
    psnr = table.columns.index(next(c for c in table.columns if c.metric == "psnr"))
    rfid = table.columns.index(next(c for c in table.columns if c.metric == "rfid"))
    rows = {name: i for i, name in enumerate(table.rows)}
    for column in (psnr, rfid):
        for name in rows:
            cell = table.cell(rows[name], column)
            assert cell.ci_low is not None and cell.ci_low <= cell.value <= cell.ci_high, (name, column, cell)
            assert cell.ci_method
        assert table.cell(rows["alpha"], column).tied_with_best
        assert table.cell(rows["twin"], column).tied_with_best
        assert table.cell(rows["worse"], column).tied_with_best is False
        assert table.cell(rows["worse"], column).rank_range == (3, 3)
        assert table.cell(rows["alpha"], column).rank_range == (1, 2)
    # the small-N FID footnote, on the FID cells only
    assert any("biased upward" in text for text in table.footnotes.values())
    assert table.cell(rows["alpha"], rfid).notes and not table.cell(rows["alpha"], psnr).notes


def test_every_format_shows_intervals_and_ties(store_and_records, tmp_path):
    store, records = store_and_records
    report = build_report(records, store=store)
    written = write_leaderboard(report, tmp_path / "board", formats=list(FILES))
    data = json.loads(written["json"].read_text())
    cells = [cell for table in data["tables"] for row in table["rows"] for cell in row["cells"] if cell["value"] is not None]
    assert cells and all(c["ci_low"] is not None and c["ci_high"] is not None and c["ci_method"] for c in cells)
    assert {c["tied_with_best"] for c in cells} == {True, False}
    assert all(r["ci_low"] is not None for r in data["results"])
    csv = written["csv"].read_text().splitlines()[0].split(",")
    assert {"ci_low", "ci_high", "ci_method"} <= set(csv)
    markdown = written["markdown"].read_text()
    assert "±" in markdown and "confidence intervals" in markdown and "Holm" in markdown
    assert "**" in markdown  # tied-with-best cells in bold
    assert r"\pm" in written["latex"].read_text()
    html = written["html"].read_text()
    assert "±" in html and 'class="best"' in html and "Holm" in html


def test_interval_style_bounds(store_and_records):
    from tokbench.config.suite import ReportConfig

    store, records = store_and_records
    report = build_report(records, store=store, settings=ReportConfig(interval_style="bounds", resamples=200))
    from tokbench.report.exporters.text import markdown_table

    text = markdown_table(_table(report))
    assert "[" in text and "±" not in text.split("\n\n")[0].split("|", 3)[-1]


def test_results_at_two_sample_sizes_are_never_averaged(store_and_records):
    store, records = store_and_records
    rng = np.random.default_rng(1)
    reference_key = records[0]["details"]["evidence"]["rfid"]["reference"]["artifact"]
    more = _recon(store, "alpha", rng.normal(24.0, 2.0, size=N // 2), rng.normal(size=(N // 2, 16)), reference_key,
                  tag="half")
    more["details"]["num_images"] = N // 2
    report = build_report([*records, more], store=store)
    table = _table(report)
    labels = [row for row in table.rows if row.startswith("alpha")]
    assert len(labels) == 2 and all("num_images=" in label for label in labels), table.rows
    assert all(table.cell(r, c).count == 1 for r in range(len(table.rows)) for c in range(len(table.columns))
               if table.cell(r, c).value is not None)


def test_seeds_of_one_measurement_are_averaged_with_a_t_interval(tmp_path):
    records = [record("generation", "generation", "gfid-v1", "vtp", "VTP", {"gfid": value}, task_params={"seed": seed},
                      key=f"gen-{seed}") for seed, value in ((0, 41.0), (1, 43.0), (2, 42.5))]
    records.append(record("generation", "generation", "gfid-v1", "vtp", "VTP", {"gfid": 40.0},
                          task_params={"seed": 3, "training_flops": 2e12}, key="gen-bigger"))
    report = build_report(records, store=Store(tmp_path / "store"))  # seed groups need no evidence
    table = report.tables[0]
    averaged = [table.cell(r, 0) for r in range(len(table.rows)) if table.cell(r, 0).count == 3]
    assert len(averaged) == 1 and averaged[0].ci_method.startswith("t interval over 3 seeds")
    assert averaged[0].ci_low < 42.1666 < averaged[0].ci_high
    assert any("training_flops" in row for row in table.rows)  # the other budget: its own, labelled row


def test_accuracies_use_wilson_and_mcnemar(tmp_path):
    store = Store(tmp_path / "store")
    rng = np.random.default_rng(2)
    truth = rng.random(400) < 0.8
    worse = truth & (rng.random(400) < 0.7)
    records = []
    for name, hits in (("a", truth), ("b", truth.copy()), ("c", worse)):
        key = _artifact(store, f"hits{name}", {"top1.npy": hits.astype(np.float32)})
        records.append(record("zero_shot", "zero_shot", "zero-shot-v1", name, name, {"top1": float(hits.mean())},
                              dataset="colours", key=f"zs-{name}",
                              details={"num_images": 400, "evidence": {"top1": per_item("proportion", pointer(key, "top1.npy"))}}))
    table = build_report(records, store=store).tables[0]
    cells = {row: table.cell(r, 0) for r, row in enumerate(table.rows)}
    assert cells["a"].ci_method.startswith("95% Wilson") or "Wilson" in cells["a"].ci_method
    assert cells["a"].tied_with_best and cells["b"].tied_with_best and cells["c"].tied_with_best is False
    assert "McNemar" in cells["c"].test


def test_plot_points_never_average_unlike_results_and_carry_intervals(store_and_records):
    from tokbench.report.plots import _points

    store, records = store_and_records
    rng = np.random.default_rng(3)
    reference_key = records[0]["details"]["evidence"]["rfid"]["reference"]["artifact"]
    other = _recon(store, "alpha", rng.normal(20.0, 2.0, size=N), rng.normal(size=(N, 16)), reference_key,
                   tag="b", params={"rounding": "truncate"})
    report = build_report([*records, other], store=store)
    points = _points(report.frame, task="reconstruction", metric="psnr")
    assert {"alpha (1)", "alpha (2)", "twin", "worse"} == set(points)
    assert sorted(round(points[k][0], 3) for k in ("alpha (1)", "alpha (2)")) == sorted(
        [round(float(records[0]["metrics"]["psnr"]), 3), round(float(other["metrics"]["psnr"]), 3)])
    value, low, high = points["worse"]
    assert low < value < high


def test_generation_rows_are_compared_unpaired_and_recall_resamples_the_generated_set(tmp_path):
    store = Store(tmp_path / "store")
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(N, 8))
    reference_ptr = pointer(_artifact(store, "genref", {"features.npy": reference}), "features.npy")
    records = []
    for name, shift in (("near", 0.1), ("far", 1.5)):
        samples = rng.normal(loc=shift, size=(N, 8))
        key = _artifact(store, f"gen{name}", {"features.npy": samples})
        from tokbench.metrics.frechet import frechet_distance_from_features
        from tokbench.stats.manifold import recall_hits

        evidence = {"gfid": distance("frechet", pointer(key, "features.npy"), reference_ptr, paired=False),
                    "recall": distance("recall", pointer(key, "features.npy"), reference_ptr, paired=False)}
        records.append(record("generation", "generation", "gfid-v2", name, name,
                              {"gfid": frechet_distance_from_features(reference, samples),
                               "recall": float(recall_hits(reference, samples).mean())},
                              key=f"gen-{name}", details={"num_images": N, "evidence": evidence}))
    table = build_report(records, store=store).tables[0]
    columns = {c.metric: i for i, c in enumerate(table.columns)}
    rows = {name: i for i, name in enumerate(table.rows)}
    for metric in ("gfid", "recall"):
        near, far = table.cell(rows["near"], columns[metric]), table.cell(rows["far"], columns[metric])
        assert near.ci_low <= near.value <= near.ci_high and far.ci_low <= far.value <= far.ci_high
        assert near.tied_with_best and far.tied_with_best is False
        assert "unpaired" in far.test
    assert "manifold rebuilt" in table.cell(rows["near"], columns["recall"]).ci_method


def test_a_store_that_cannot_be_written_still_gets_intervals(store_and_records, monkeypatch):
    from tokbench.errors import StoreError

    store, records = store_and_records

    def refuse(*args, **kwargs):
        raise StoreError("the store at /shared is read-only")

    monkeypatch.setattr(store, "get_or_create", refuse)
    table = _table(build_report(records, store=store))
    rfid = next(i for i, c in enumerate(table.columns) if c.metric == "rfid")
    cell = table.cell(0, rfid)
    assert cell.ci_low is not None and cell.ci_low <= cell.value <= cell.ci_high
