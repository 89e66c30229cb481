"""Slurm backend without a cluster: profiles and resources -> submitit parameters (golden),
validation of resources, the Slurm -> torchrun environment. The real-cluster tests are in
test_slurm_cluster.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tokbench.config.resources import Resources, SlurmProfile, load_profile, submitit_parameters
from tokbench.config.suite import load_suite
from tokbench.errors import SuiteError, TokbenchError
from tokbench.execution.launch.distributed import first_host, torchrun_env

GOLDEN = Path(__file__).parent / "golden" / "slurm_parameters.json"

PROFILE = SlurmProfile(
    partition="gpu", account="proj", qos="high", constraint="h100", max_time_min=2880, max_gpus_per_node=8,
    resources=Resources(cpus_per_task=8, mem_gb=64, time_min=240),
    setup=["module load cuda/12.4", "source $HOME/venv/bin/activate"], signal_delay_s=300, sbatch={"exclusive": True},
)
CASES = {
    "cpu_defaults": (SlurmProfile(), Resources(), "tokbench-s-prepare", []),
    "one_gpu_array": (PROFILE, Resources(gpus_per_node=1, time_min=60), "tokbench-s-reconstruction", []),
    "ddp_two_nodes_after_prepare": (PROFILE, Resources(nodes=2, gpus_per_node=8, mem_gb=480), "tokbench-s-generation",
                                    ["1234", "1235_3"]),
}


def computed() -> dict:
    return {name: submitit_parameters(*case) for name, case in CASES.items()}


def test_parameters_match_golden():
    if os.environ.get("TOKBENCH_UPDATE_GOLDEN") == "1":  # after an intended change; review the diff
        GOLDEN.write_text(json.dumps(computed(), indent=2, sort_keys=True) + "\n")
    assert computed() == json.loads(GOLDEN.read_text())


def test_one_task_per_gpu_and_layering():
    params = computed()["ddp_two_nodes_after_prepare"]
    assert params["tasks_per_node"] == params["gpus_per_node"] == 8 and params["nodes"] == 2
    assert params["cpus_per_task"] == 8 and params["mem_gb"] == 480 and params["timeout_min"] == 240  # profile, suite
    assert params["slurm_dependency"] == "afterok:1234:1235_3"
    assert params["slurm_additional_parameters"] == {"exclusive": True, "kill-on-invalid-dep": "yes"}
    assert computed()["cpu_defaults"]["tasks_per_node"] == 1 and "gpus_per_node" not in computed()["cpu_defaults"]


def test_parameters_are_accepted_by_submitit(tmp_path):
    import submitit

    for params in computed().values():
        executor = submitit.AutoExecutor(folder=str(tmp_path / "%j"), cluster="slurm")
        executor.update_parameters(**params)  # raises on a name submitit does not know


SUITE = """
name: s
launcher: {backend: slurm, profile: local}
datasets:
  d: {kind: shapes, params: {num_images: 8, resolution: 32}}
tokenizers:
  bicubic: {plugin: resample, params: {factor: 4}}
tasks:
  - kind: reconstruction
    dataset: d
    params: {metrics: [psnr]}
"""


def _suite(tmp_path, extra: str = "", overrides=()):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SUITE) + extra)
    return load_suite(path, list(overrides))


def test_unknown_resource_key_fails_naming_allowed_fields(tmp_path):
    with pytest.raises(SuiteError) as error:
        _suite(tmp_path, overrides=["tasks.0.resources={gpus: 1}"])
    assert "tasks.0.resources.gpus: unknown field 'gpus'; allowed: nodes, gpus_per_node, cpus_per_task, mem_gb, time_min" in str(error.value)


def test_resources_beyond_the_profile_fail_validation(tmp_path):
    with pytest.raises(SuiteError) as error:
        _suite(tmp_path, overrides=["tasks.0.resources={gpus_per_node: 3}", "launcher.resources={nodes: 2}"])
    text = str(error.value)
    assert "tasks.0.resources: gpus_per_node 3 exceeds the profile's max_gpus_per_node 2" in text
    assert "launcher.resources: nodes 2 exceeds the profile's max_nodes 1" in text


def test_slurm_needs_a_known_profile(tmp_path):
    with pytest.raises(SuiteError, match="launcher.profile: the slurm backend needs a cluster profile"):
        _suite(tmp_path, overrides=["launcher.profile=null"])
    with pytest.raises(SuiteError, match="no Slurm profile 'nope'; known: .*example.*local"):
        _suite(tmp_path, overrides=["launcher.profile=nope"])


def test_shipped_profiles_validate(monkeypatch):
    monkeypatch.setenv("SLURM_ACCOUNT", "acct")
    assert load_profile("local").partition == "debug"
    example = load_profile("example")
    assert example.account == "acct" and example.setup[0] == "module load cuda/12.4"


def test_bad_profile_names_field_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("partition: gpu\nqueue: long\n")
    with pytest.raises(TokbenchError, match=r"bad.yaml: queue: unknown field 'queue'; allowed: description, partition"):
        load_profile(str(bad))


def test_validating_a_slurm_suite_imports_no_torch(tmp_path):
    _suite(tmp_path)  # the suite is valid
    code = ("import sys; from tokbench.config.suite import load_suite; "
            f"load_suite({str(tmp_path / 's.yaml')!r}); from tokbench.execution.launch import slurm, slurm_state; "
            "assert 'torch' not in sys.modules and 'submitit' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torchrun_env_from_slurm():
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "2(x4)",
           "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "gpu[007-010]", "SLURM_JOB_ID": "4242"}
    assert torchrun_env(env) == {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                                 "NODE_RANK": "1", "MASTER_ADDR": "gpu007", "MASTER_PORT": str(20000 + 4242)}
    assert torchrun_env({}) == {}
    assert first_host("a1,b[2-3]") == "a1" and first_host("n[12,15-16]") == "n12"
