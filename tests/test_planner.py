"""Plans: content keys that depend on what produces a result, never on names."""

from __future__ import annotations

import textwrap

from tokbench.config.suite import load_suite
from tokbench.execution.planner import plan_suite

SUITE = """
name: p
datasets:
  d: {kind: shapes, params: {num_images: 8, resolution: 32}}
tokenizers:
  bicubic: {plugin: resample, params: {factor: 4}}
  coarse: {plugin: resample, params: {factor: 8}}
tasks:
  - kind: reconstruction
    dataset: d
    params: {metrics: [psnr, ssim]}
"""


def plan_for(tmp_path, text, overrides=()):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text))
    return plan_suite(load_suite(path, list(overrides)))


def keys(plan):
    return {unit.label: unit.key for unit in plan.units}


def test_one_unit_per_tokenizer_and_stable_keys(tmp_path):
    first, second = plan_for(tmp_path, SUITE), plan_for(tmp_path, SUITE)
    assert sorted(keys(first)) == ["reconstruction/bicubic/d", "reconstruction/coarse/d"]
    assert keys(first) == keys(second)


def test_renaming_does_not_change_keys(tmp_path):
    renamed = SUITE.replace("bicubic:", "smooth:").replace("name: p", "name: other")
    assert set(keys(plan_for(tmp_path, SUITE)).values()) == set(keys(plan_for(tmp_path, renamed)).values())


def test_what_changes_numbers_changes_keys(tmp_path):
    base = keys(plan_for(tmp_path, SUITE))
    for override in ("tokenizers.bicubic.params.mode=area", "datasets.d.params.seed=1", "tasks.0.params.rounding=truncate"):
        changed = keys(plan_for(tmp_path, SUITE, [override]))
        assert changed["reconstruction/bicubic/d"] != base["reconstruction/bicubic/d"], override
    # changing another tokenizer's params leaves this tokenizer's key alone
    assert keys(plan_for(tmp_path, SUITE, ["tokenizers.coarse.params.mode=area"]))["reconstruction/bicubic/d"] == base["reconstruction/bicubic/d"]


def test_duplicate_measurements_planned_once(tmp_path):
    text = SUITE + "  - kind: reconstruction\n    name: again\n    dataset: d\n    params: {metrics: [psnr, ssim]}\n"
    assert len(plan_for(tmp_path, text).units) == 2


def test_waves_respect_dependencies(tmp_path):
    from tokbench.execution.planner import Plan, Unit

    plan = Plan("x", [Unit("b", "evaluate", "t", "b", 0, ("a",)), Unit("a", "prepare", "t", "a")])
    assert [[u.key for u in wave] for wave in plan.waves()] == [["a"], ["b"]]
    assert Plan.from_json(plan.to_json()).units == plan.units


def test_prepare_unit_for_trained_presets(tmp_path):
    text = SUITE.replace("tokenizers:\n", "tokenizers:\n  vae: {plugin: vae, params: {preset: tiny}}\n")
    plan = plan_for(tmp_path, text)
    prepare = [u for u in plan.units if u.action == "prepare"]
    assert [u.label for u in prepare] == ["prepare/vae"]
    evaluate = next(u for u in plan.units if u.label == "reconstruction/vae/d")
    assert evaluate.deps == (prepare[0].key,)
    first_wave = plan.waves()[0]
    assert prepare[0] in first_wave and evaluate not in first_wave
