"""Suite validation: every malformed suite fails with one actionable line."""

from __future__ import annotations

import textwrap

import pytest

from tokbench.config.suite import apply_overrides, load_suite
from tokbench.errors import SuiteError

from conftest import REPO, run_cli

GOOD = """
name: t
datasets:
  shapes-val: {kind: shapes, params: {num_images: 8, resolution: 32}}
tokenizers:
  bicubic: {plugin: resample, params: {factor: 4}}
tasks:
  - kind: reconstruction
    dataset: shapes-val
    params: {batch_size: 4}
"""


def write(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text, overrides=()):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path, list(overrides))
    return info.value.problems, str(path)


def test_good_suite_resolves_defaults(tmp_path):
    suite = load_suite(write(tmp_path, GOOD))
    assert suite.tasks[0].params["protocol"] == "rfid-v1"
    assert suite.tokenizers["bicubic"].params == {"factor": 4, "mode": "bicubic"}
    assert suite.datasets["shapes-val"].params["split"] == "val"
    assert suite.launcher.backend == "debug"


def test_unknown_task_kind(tmp_path):
    lines, path = problems(tmp_path, GOOD.replace("kind: reconstruction", "kind: reconstrution"))
    assert lines == [
        f"{path}: tasks.0.kind: unknown task kind 'reconstrution'; allowed: generation, linear_probe, reconstruction, zero_shot (did you mean 'reconstruction'?)"
    ]


def test_wrong_type(tmp_path):
    lines, path = problems(tmp_path, GOOD.replace("batch_size: 4", "batch_size: lots"))
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: tasks.0.params.batch_size: ")
    assert "'lots'" in lines[0] and "integer" in lines[0]


def test_missing_dataset(tmp_path):
    lines, path = problems(tmp_path, GOOD.replace("dataset: shapes-val", "dataset: shapes-test"))
    assert lines == [
        f"{path}: tasks.0.dataset: unknown dataset 'shapes-test'; allowed: shapes-val "
        "(did you mean 'shapes-val'?) (define it under 'datasets:')"
    ]


def test_unknown_plugin(tmp_path):
    lines, path = problems(tmp_path, GOOD.replace("plugin: resample", "plugin: resampel"))
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: tokenizers.bicubic.plugin: unknown tokenizer plugin 'resampel'; allowed: ")
    assert "resample" in lines[0] and "(did you mean 'resample'?)" in lines[0]


def test_unknown_field_lists_allowed_fields(tmp_path):
    lines, path = problems(tmp_path, GOOD + "launcher: {backnd: local}\n")
    assert lines == [
        f"{path}: launcher.backnd: unknown field 'backnd'; allowed: backend, max_workers, device, loader_workers, tf32, checkpoint_every, "
        "timeout_min, profile, resources "
        "(did you mean 'backend'?)"
    ]


def test_bad_literal_lists_allowed_values(tmp_path):
    lines, path = problems(tmp_path, GOOD + "launcher: {backend: slrum}\n")
    assert lines == [f"{path}: launcher.backend: invalid value 'slrum'; allowed: debug, local, slurm (did you mean 'slurm'?)"]


def test_plugin_params_validated_with_path(tmp_path):
    lines, path = problems(tmp_path, GOOD.replace("factor: 4", "factor: 3"))
    assert len(lines) == 1 and lines[0].startswith(f"{path}: tokenizers.bicubic.params.factor: invalid value 3; allowed: 2, 4, 8, 16")


def test_unknown_param_field_suggests(tmp_path):
    lines, path = problems(tmp_path, GOOD.replace("batch_size: 4", "batchsize: 4"))
    assert len(lines) == 1
    assert "tasks.0.params.batchsize: unknown field 'batchsize'" in lines[0]
    assert "(did you mean 'batch_size'?)" in lines[0]


def test_several_problems_reported_together(tmp_path):
    text = GOOD.replace("plugin: resample", "plugin: nope").replace("dataset: shapes-val", "dataset: other")
    lines, _ = problems(tmp_path, text)
    assert len(lines) == 2


def test_missing_required_section(tmp_path):
    lines, path = problems(tmp_path, "name: t\ndatasets: {}\ntokenizers: {}\n")
    assert lines == [f"{path}: tasks: required field is missing"]


def test_env_interpolation(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_STORE", "/tmp/somewhere")
    suite = load_suite(write(tmp_path, GOOD + "store: {root: '${MY_STORE}'}\n"))
    assert suite.store.root == "/tmp/somewhere"
    suite = load_suite(write(tmp_path, GOOD + "store: {root: '${UNSET_VAR_X:-fallback}'}\n"))
    assert suite.store.root == "fallback"
    lines, _ = problems(tmp_path, GOOD + "store: {root: '${UNSET_VAR_X}'}\n")
    assert "store.root: environment variable ${UNSET_VAR_X} is not set" in lines[0]


def test_overrides(tmp_path):
    suite = load_suite(write(tmp_path, GOOD), ["tasks.0.params.batch_size=16", "tokenizers.bicubic.params.factor=8"])
    assert suite.tasks[0].params["batch_size"] == 16
    assert suite.tokenizers["bicubic"].params["factor"] == 8
    suite = load_suite(write(tmp_path, GOOD), ["tasks.reconstruction.params.num_images=4"])
    assert suite.tasks[0].params["num_images"] == 4
    data = apply_overrides({"a": [1, 2]}, ["a.1=x", "b.c=[1, 2]"])
    assert data == {"a": [1, "x"], "b": {"c": [1, 2]}}
    with pytest.raises(SuiteError, match="index 5 out of range"):
        load_suite(write(tmp_path, GOOD), ["tasks.5.params.batch_size=1"])


def test_capability_mismatch_fails_validation(tmp_path, monkeypatch):
    from tokbench.api import Capability
    from tokbench.registry.plugins import get_registry

    registry = get_registry()
    entry = registry.tasks["reconstruction"]
    monkeypatch.setitem(
        registry.tasks, "reconstruction",
        type(entry)(entry.name, entry.task, entry.params, frozenset({Capability.TEXT}), entry.description, entry.plugin),
    )
    lines, _ = problems(tmp_path, GOOD.replace("dataset: shapes-val", "dataset: shapes-val\n    tokenizers: [bicubic]"))
    assert lines[0].endswith("tokenizer 'bicubic' (resample) lacks text needed by task 'reconstruction'")


def test_cli_validate_reports_one_line_and_exit_code(tmp_path):
    path = write(tmp_path, GOOD.replace("kind: reconstruction", "kind: recon"))
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: tasks.0.kind: unknown task kind 'recon'; allowed: generation, linear_probe, reconstruction, zero_shot"
    ]
    assert "Traceback" not in result.stderr


def test_cli_validate_quickstart():
    result = run_cli("validate", str(REPO / "suites" / "quickstart.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: suite 'quickstart'")


@pytest.mark.parametrize("suite", sorted((REPO / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_suite_validates(suite):
    result = run_cli("validate", str(suite))
    assert result.returncode == 0, result.stderr
