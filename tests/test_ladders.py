"""Budget ladders: rungs read off one run equal shorter runs, the curve fit recovers known
curves, the predicted ranking's probability is calibrated, successive halving's probability,
the parameters' validation and the prediction table."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import requires_fid_weights
from tokbench.ladders.fit import (LOGLINEAR, POWER, ModelError, fit_curve, loo_rmse, model_error, predict, predict_group,
                                  predicted_ranking, walk_forward)
from tokbench.ladders.halving import probability_worse

FLOPS = np.array([0.05, 0.1, 0.25, 0.5]) * 1e13


# ---- rungs for free ---------------------------------------------------------------------------------
def test_snapshot_at_a_rung_equals_a_shorter_run(tmp_path):
    torch = pytest.importorskip("torch")
    from test_generation_train import trainer

    short = trainer(steps=6)
    short.fit()
    longer = trainer(tmp_path / "run", steps=10)  # the same seed, a longer budget
    longer.fit(until=3)
    resumed = trainer(tmp_path / "run", steps=10)  # interrupted at step 3, resumed in a new process
    resumed.fit(until=6)
    assert resumed.step == 6
    resumed.snapshot(tmp_path / "rung.pt")
    rung = torch.load(tmp_path / "rung.pt", weights_only=True)
    assert rung["step"] == 6
    for name, value in short.ema.state_dict().items():
        assert torch.equal(rung["ema"][name], value), name
    resumed.fit()  # the run goes on to its own budget: the rung did not disturb it
    assert resumed.step == 10
    moved = any(not torch.equal(rung["ema"][n], v) for n, v in resumed.ema.state_dict().items())
    assert moved

    from tokbench.generation.checkpoint import load_lightningdit

    assert load_lightningdit(tmp_path / "rung.pt").config == short.model.config


def test_snapshot_refuses_a_decayed_learning_rate(tmp_path):
    pytest.importorskip("torch")
    from test_generation_train import trainer

    run = trainer(steps=4)
    run.fit()
    for group in run.optimizer.param_groups:  # what a decaying schedule would have done
        group["lr"] *= 0.5
    with pytest.raises(ValueError, match="constant learning rate"):
        run.snapshot(tmp_path / "rung.pt")


def test_ladder_params_are_validated():
    from pydantic import ValidationError

    from tokbench.tasks.generation_params import GenerationParams

    ok = GenerationParams(training_flops=1e12, ladder=[0.1, 0.5], ladder_stop={"probability": 0.9})
    assert ok.ladder == [0.1, 0.5] and ok.ladder_stop.probability == 0.9
    for bad in ([0.5, 0.1], [0.1, 1.0], [0.0, 0.5], [0.2, 0.2]):
        with pytest.raises(ValidationError, match="ladder must be"):
            GenerationParams(training_flops=1e12, ladder=bad)
    with pytest.raises(ValidationError, match="set training_flops"):
        GenerationParams(steps=100, ladder=[0.5])
    with pytest.raises(ValidationError, match="needs a ladder"):
        GenerationParams(training_flops=1e12, ladder_stop={"probability": 0.9})


# ---- fits ---------------------------------------------------------------------------------------------
def test_power_law_parameters_are_recovered_from_noisy_rungs():
    rng = np.random.default_rng(1)
    flops = np.geomspace(1e11, 1e13, 6)
    a, b, c, noise = 3e6, 0.45, 8.0, 0.05
    truth = a * flops ** (-b) + c
    estimates = []
    for _ in range(20):
        fit = fit_curve(flops, truth + rng.normal(0, noise, flops.size), sigma=np.full(flops.size, noise))
        assert fit.model == POWER  # leave-one-out prefers the true family by far
        estimates.append([fit.params["b"], fit.params["c"]])
    b_hat, c_hat = np.median(estimates, axis=0)
    assert abs(b_hat - b) < 0.05 and abs(c_hat - c) < 0.5
    fit = fit_curve(flops, truth, model=POWER)  # noiseless: to the grid's resolution
    assert fit.predict([3e13])[0] == pytest.approx(a * 3e13 ** (-b) + c, rel=2e-3)


def test_log_linear_curves_choose_the_log_linear_model():
    rng = np.random.default_rng(2)
    values = 30.0 - 4.0 * np.log(FLOPS / 1e13) * 0 - 4.0 * np.log(FLOPS / 1e12) + rng.normal(0, 0.05, 4)
    fit = fit_curve(FLOPS, values, sigma=np.full(4, 0.05))
    assert fit.loo_rmse[LOGLINEAR] < 0.2
    assert fit.model == LOGLINEAR or fit.loo_rmse[POWER] <= fit.loo_rmse[LOGLINEAR]
    assert fit.predict([1e13])[0] == pytest.approx(30.0 - 4.0 * np.log(10.0), abs=0.3)
    with pytest.raises(ValueError, match="at least 2 rungs"):
        fit_curve(FLOPS[:1], values[:1])
    assert loo_rmse(POWER, FLOPS[:3], values[:3]) == float("inf")  # 2 rungs left cannot fit 3 parameters


def test_prediction_interval_covers_the_truth_and_the_band_contains_the_curve():
    rng = np.random.default_rng(3)
    truth = 4e6 * FLOPS ** (-0.5) + 10
    noise = 0.3
    observed = truth + rng.normal(0, noise, 4)
    replicates = observed[:, None] + rng.normal(0, noise, (4, 400))
    prediction = predict(FLOPS, observed, replicates, 1e13)
    target = 4e6 * 1e13 ** (-0.5) + 10
    assert prediction.interval.low < prediction.value < prediction.interval.high
    assert prediction.interval.low - 1.0 < target < prediction.interval.high + 1.0
    low, high = prediction.band(FLOPS)
    assert np.all(low <= high) and np.all(low < observed + 3 * noise) and np.all(high > observed - 3 * noise)
    with pytest.raises(ValueError, match="replicates must be"):
        predict(FLOPS, observed, replicates[:3], 1e13)


def test_ranking_probability_is_calibrated_on_synthetic_ladders():
    """Where the predicted ranking is given 70-90% (about 80%), it holds in 70-90% of the cases;
    over all cases the mean probability matches the hit rate (the report's path: the curve
    family's error pooled over the task's ladders and drawn into every prediction)."""
    rng = np.random.default_rng(0)
    probabilities, held = [], []
    for _ in range(400):
        ladders, truth = {}, {}
        for name in ("a", "b"):
            a, b, c = rng.uniform(20, 60), rng.uniform(0.3, 0.8), rng.uniform(5, 15)
            curve = a * (FLOPS / 1e12) ** (-b) + c
            observed = curve + rng.normal(0, 1.0, 4)
            ladders[name] = (FLOPS, observed, observed[:, None] + rng.normal(0, 1.0, (4, 100)))
            truth[name] = a * 10.0 ** (-b) + c
        ranking, probability = predicted_ranking(predict_group(ladders, 1e13))
        probabilities.append(probability)
        held.append(ranking == sorted(truth, key=truth.get))
    probabilities, held = np.array(probabilities), np.array(held)
    middle = (probabilities >= 0.7) & (probabilities < 0.9)
    assert middle.sum() >= 40
    assert 0.7 <= held[middle].mean() <= 0.9
    assert abs(held.mean() - probabilities.mean()) < 0.1


def _plateau_then_fall(rng):
    """gFID flat at first, then falling (a logistic in ln C): neither fitted family; the CPU ladders' shape."""
    height, middle, width = rng.uniform(40, 80), rng.uniform(0.5, 2.0), rng.uniform(0.6, 1.2)
    return lambda flops: 10 + height / (1 + np.exp((np.log(flops / 1e12) - middle) / width))


def _two_power_laws(rng):
    """A fast power law fading into a slow one: the curve bends across the ladder."""
    a1, b1, a2, b2, c = rng.uniform(30, 60), rng.uniform(1.5, 2.5), rng.uniform(20, 40), rng.uniform(0.1, 0.3), rng.uniform(5, 15)
    return lambda flops: a1 * (flops / 5e11) ** (-b1) + a2 * (flops / 5e11) ** (-b2) + c


@pytest.mark.parametrize("family, old_at_most", [(_plateau_then_fall, 0.6), (_two_power_laws, 0.85)])
def test_intervals_cover_curves_outside_the_fitted_families(family, old_at_most):
    """With the curve family's error (walk-forward, pooled over a task's three ladders) the 95%
    intervals cover the true value at the target in at least 80% of cases on curves neither model
    describes; the sampling noise alone (ModelError(0, 0), the former interval) does not."""
    rng = np.random.default_rng(4)
    old, new = [], []
    for _ in range(50):
        curves = {name: family(rng) for name in "abc"}
        ladders = {}
        for name, curve in curves.items():
            observed = curve(FLOPS) + rng.normal(0, 1.0, 4)
            ladders[name] = (FLOPS, observed, observed[:, None] + rng.normal(0, 1.0, (4, 100)))
        widened = predict_group(ladders, 1e13)
        for name, curve in curves.items():
            truth = curve(1e13)
            noise_only = predict(*ladders[name], 1e13, error=ModelError(0.0, 0))
            old.append(noise_only.interval.low <= truth <= noise_only.interval.high)
            new.append(widened[name].interval.low <= truth <= widened[name].interval.high)
            assert widened[name].value == noise_only.value  # the point prediction is unchanged
    assert np.mean(new) >= 0.8
    assert np.mean(old) <= old_at_most


def test_walk_forward_errors_measure_a_bend_and_not_the_noise():
    rng = np.random.default_rng(5)
    straight = 50 - 5 * np.log(FLOPS / 1e12)
    replicates = straight[:, None] + rng.normal(0, 1.0, (4, 400))
    steps = walk_forward(FLOPS, straight, replicates, LOGLINEAR)
    assert len(steps) == 2 and [round(s.distance, 3) for s in steps] == [round(np.log(2.5), 3), round(np.log(2), 3)]
    assert max(abs(s.error) for s in steps) < 1e-9 and all(s.noise_var > 0.5 for s in steps)
    assert model_error(steps).scale == 0.0 and model_error(steps).dof == 2  # noise alone: no widening
    bent = straight - np.array([0, 0, 6, 18])  # falls faster and faster
    error = model_error(walk_forward(FLOPS, bent, bent[:, None] + replicates - straight[:, None], LOGLINEAR))
    assert error.scale > 5 and error.dof == 2
    far, near = (predict(FLOPS, bent, bent[:, None] + replicates - straight[:, None], t, model=LOGLINEAR) for t in (1e14, 1e13))
    assert far.extrapolation == pytest.approx(20) and far.rungs == 4 and far.model_error == error
    assert far.interval.high - far.interval.low > 2 * (near.interval.high - near.interval.low)  # grows with ln distance
    assert model_error([]).dof == 0 and predict(FLOPS[:2], bent[:2], replicates[:2], 1e13).model_error.dof == 0


def test_ranking_probability_counts_joint_draws_in_order():
    class P:  # the two fields predicted_ranking reads
        def __init__(self, value, draws):
            self.value, self.draws = value, np.asarray(draws, dtype=float)

    names, p = predicted_ranking({"x": P(1.0, [1, 1, 3, 1]), "y": P(2.0, [2, 2, 2, 0])})
    assert names == ["x", "y"] and p == 0.5  # draws 0 and 1 keep x < y; 2 and 3 do not
    names, p = predicted_ranking({"x": P(1.0, [1, 1]), "y": P(2.0, [2, 2])}, higher_is_better=True)
    assert names == ["y", "x"] and p == 1.0


# ---- successive halving -----------------------------------------------------------------------------
def test_probability_worse_is_the_fraction_of_draws():
    mine = np.array([3.0, 3.0, 1.0, 3.0])
    theirs = np.array([2.0, 2.0, 2.0, 4.0])
    assert probability_worse(mine, theirs) == 0.5


# ---- from stored records: halving decisions, the prediction table and the ladder plot -----------------
def _features(store, name: str, shift: float, n: int = 64, seed: int = 0):
    """A features artifact of ``n`` 8-d Gaussian items offset by ``shift`` (a stand-in for Inception features)."""
    rng = np.random.default_rng(seed)

    def produce(out):
        np.save(out / "features.npy", rng.normal(shift, 1.0, (n, 8)))

    store.get_or_create(name, produce, kind="generated-features")
    return {"artifact": name, "file": "features.npy", "shards": None}


def _rung_record(store, tokenizer: str, fraction: float, shift: float, params: dict, seed: int, reference) -> dict:
    from tokbench.metrics.frechet import feature_statistics, frechet_distance
    from tokbench.verdicts.evidence import distance, load_array

    features = _features(store, f"{tokenizer}-{fraction}-{seed}", shift, seed=seed)
    value = frechet_distance(*feature_statistics(load_array(store, reference)), *feature_statistics(load_array(store, features)))
    return {"type": "rung", "part_of": f"unit-{tokenizer}", "suite": {"name": "s"}, "tokenizer": {"name": tokenizer},
            "task": {"kind": "generation", "name": "generation", "params": {**params, "ladder_rung": fraction},
                     "execution_params": ["compile"]},
            "dataset": {"name": "val", "fingerprint": "fp"}, "metrics": {"gfid": value},
            "details": {"evidence": {"gfid": distance("frechet", features, reference, paired=False)},
                        "ladder_fraction": fraction, "rung_flops": fraction * 1e12, "full_training_flops": 1e12}}


def test_halving_stops_a_clearly_worse_generator_and_spares_a_close_one(tmp_path):
    """The stop probability compares the ladders' predictions at the full budget, the curve
    family's error included; before the third rung (no walk-forward error yet) nothing stops."""
    from tokbench.ladders.data import Point
    from tokbench.ladders.halving import decide
    from tokbench.storage.store import Store

    store = Store(tmp_path / "store")
    reference = _features(store, "reference", 0.0, n=128, seed=99)
    params = {"training_flops": 1e12, "seed": 0, "compile": False}
    fractions = (0.05, 0.1, 0.25)
    for i, (fraction, shift) in enumerate(zip(fractions, (0.6, 0.4, 0.2))):
        store.put_result(f"leader-rung-{i}", _rung_record(store, "leader", fraction, shift, params, 1 + i, reference))

    def mine(shifts, seed):
        points = []
        for i, (fraction, shift) in enumerate(zip(fractions, shifts)):
            record = _rung_record(store, "me", fraction, shift, params, seed + i, reference)
            points.append(Point(record["details"]["rung_flops"], record["metrics"]["gfid"],
                                record["details"]["evidence"]["gfid"], fraction))
        return points

    far = decide(store, "me", mine((2.6, 2.3, 2.0), 20), params, "fp", 0.95, 1e12)
    assert far.stop and far.leader == "leader" and far.probability_worse >= 0.95
    assert "predicted gfid at 1e+12 FLOPs" in far.reason and "curve family's error included" in far.reason
    close = decide(store, "me", mine((0.65, 0.45, 0.25), 30), params, "fp", 0.95, 1e12)
    assert not close.stop and (close.probability_worse is None or close.probability_worse < 0.95)
    early = decide(store, "me", mine((2.6, 2.3, 2.0), 20)[:2], params, "fp", 0.95, 1e12)
    assert not early.stop and "from the third rung on" in early.reason
    other_task = decide(store, "me", mine((2.6, 2.3, 2.0), 20), params | {"seed": 1}, "fp", 0.95, 1e12)
    assert not other_task.stop and "no other tokenizer" in other_task.reason  # rivals only of the same task
    compiled = decide(store, "me", mine((2.6, 2.3, 2.0), 20), params | {"compile": True}, "fp", 0.95, 1e12)
    assert compiled.stop  # execution-only params do not split the comparison


def test_prediction_table_and_ladder_plot_from_stored_rungs(tmp_path):
    pytest.importorskip("matplotlib")
    from tokbench.report.ladders import ladder_groups, ladder_plots, prediction_table
    from tokbench.report.report import build_report
    from tokbench.storage.store import Store

    store = Store(tmp_path / "store")
    reference = _features(store, "reference", 0.0, n=128, seed=99)
    records = []
    # gFID falls with the budget (the shift shrinks), 'good' always below 'poor'
    for tokenizer, scale in (("good", 1.0), ("poor", 2.0)):
        for i, fraction in enumerate((0.05, 0.1, 0.25, 0.5)):
            records.append(_rung_record(store, tokenizer, fraction, scale / (1 + i), {"seed": 0}, 10 + i, reference))
    full = _rung_record(store, "good", 1.0, 0.2, {"seed": 0}, 20, reference)  # the measured full budget of 'good'
    full.update(type="result", key="unit-good")
    full["details"]["generator_training_flops"] = 0.998e12  # steps round: a little short of the budget
    records.append(full)
    groups = ladder_groups(records, store)
    assert len(groups) == 1 and groups[0].target_flops == 1e12
    assert len(groups[0].points["good"]) == 4  # held out of the fit, shown beside the prediction
    assert groups[0].ranking == ["good", "poor"] and 0.5 < groups[0].probability <= 1.0
    table = prediction_table(groups)
    assert "PREDICTED at 1e+12 training FLOPs" in table and "not measured" in table
    assert "| 1 | good |" in table and "| 2 | poor |" in table and "Probability that the predicted ranking" in table
    for name in ("good", "poor"):  # rungs, family and extrapolation factor of each prediction
        prediction = groups[0].predictions[name]
        assert prediction.rungs == 4 and prediction.extrapolation == pytest.approx(2.0)
        row = next(line for line in table.splitlines() if f"| {name} |" in line)
        assert f"| {prediction.fit.model}: " in row and "| 4 | " in row and "| 2x |" in row, row
    assert "walk-forward errors" in table  # the interval says it carries the curve family's error
    assert f"| {full['metrics']['gfid']:.4g} |" in next(line for line in table.splitlines() if "| good |" in line)
    farther = ladder_groups(records, store, target_flops=2e13)[0]
    assert len(farther.points["good"]) == 5  # beyond the budget the full result joins the fit
    assert farther.target_flops == 2e13 and farther.predictions["good"].extrapolation == pytest.approx(20 / 0.998)
    assert farther.predictions["poor"].extrapolation == pytest.approx(40.0)
    assert "| 40x |" in prediction_table([farther]) and "PREDICTED at 2e+13 training FLOPs" in prediction_table([farther])
    plots = ladder_plots(groups)
    assert plots[0].name == "ladder" and plots[0].png.startswith(b"\x89PNG")
    rungs = [{**r, "key": f"k{i}"} for i, r in enumerate(records[:-1])]
    report = build_report(rungs, store=store)
    assert report.predictions == prediction_table(ladder_groups(rungs, store))
    assert len(report.frame) == 0  # rungs stay out of the measured tables
    from tokbench.config.suite import ReportConfig

    chosen = build_report(rungs, store=store, plots=False,
                          settings=ReportConfig(ladder_target_flops=2e13))
    assert "PREDICTED at 2e+13 training FLOPs" in chosen.predictions  # the suite's report: ladder_target_flops


# ---- the generation task with a ladder (real training, sampling and Inception scoring) ------------------
@requires_fid_weights
@pytest.mark.slow
def test_generation_ladder_publishes_each_rung_and_reuses_them(tmp_path):
    pytest.importorskip("torch")
    from tokbench.data.shapes import ShapesDataset
    from tokbench.generation.flops import steps_for_budget
    from tokbench.generation.model import dit_config
    from tokbench.runtime.context import BuildContext
    from tokbench.storage.store import Store
    from tokbench.tasks.base import TaskContext
    from tokbench.tasks.generation import GenerationTask
    from tokbench.tasks.generation_params import GenerationParams
    from tokbench.tokenizers.resample import ResampleParams, build_resample
    from test_generation_task import PARAMS

    published = []

    def once():
        build = BuildContext(store=Store(tmp_path / "store"), progress=False)
        tokenizer = build_resample(ResampleParams(factor=4), build)
        context = TaskContext(build=build, tokenizer=tokenizer, tokenizer_name="f4", tokenizer_fingerprint=tokenizer.fingerprint(),
                              dataset=ShapesDataset(num_images=24, resolution=16), dataset_name="val", unit_key="k",
                              train_dataset=ShapesDataset(split="train", num_images=48, resolution=16), train_dataset_name="train",
                              publish=lambda name, output, params: published.append((name, output, params)))
        params = GenerationParams(**{**PARAMS, "metrics": ["gfid", "kid"], "ladder": [0.25, 0.5]})
        return GenerationTask(params).run(context), build.store

    full, store = once()
    assert [name for name, _, _ in published] == ["rung-0.25", "rung-0.5"]
    config = dit_config("micro/1", 3, input_size=4, num_classes=12)
    for (name, output, params), fraction in zip(published, (0.25, 0.5)):
        assert params == {"training_flops": fraction * 2.0e10, "ladder_rung": fraction}
        assert output.details["steps"] == steps_for_budget(config, fraction * 2.0e10, 16)
        assert output.details["ladder_fraction"] == fraction and output.metrics["gfid"] > 0
        assert output.details["evidence"]["gfid"]["kind"] == "frechet"
    assert full.details["steps"] == steps_for_budget(config, 2.0e10, 16)
    assert [rung["steps"] for rung in full.details["ladder"]] == [o.details["steps"] for _, o, _ in published]
    assert published[0][1].artifacts[1] != published[1][1].artifacts[1] != full.artifacts[1]  # three generators
    commits, first = len(store.commits()), [o.metrics for _, o, _ in published]
    published.clear()
    again, _ = once()  # every rung and the full result come back from the store
    assert len(store.commits()) == commits and again.metrics == full.metrics
    assert [o.metrics for _, o, _ in published] == first
