"""The Slurm backend against a real Slurm controller: the one-node cluster of
slurm/local/start.sh (scripts/setup.sh --test starts it in CI). No mocks.

Skipped only on a machine that cannot have the cluster (not root and no `sinfo`);
where `sinfo` exists, or in CI, a cluster that does not answer is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import run_cli
from generation_suites import GENERATION_UNIT_SUITE

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cluster_answers() -> str | None:
    try:
        nodes = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
        acct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if nodes.returncode or not re.search(r"^(idle|mix|alloc)", nodes.stdout, re.M):
        return f"sinfo: {nodes.stdout.strip()} {nodes.stderr.strip()}"
    if acct.returncode:
        return f"sacct (accounting): {acct.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def cluster():
    required = os.environ.get("TOKBENCH_REQUIRE_SLURM") == "1" or bool(os.environ.get("CI"))
    can_have = shutil.which("sinfo") is not None or (os.geteuid() == 0 and shutil.which("apt-get") is not None)
    if not can_have and not required:
        pytest.skip("no Slurm here: as root, `bash slurm/local/start.sh` installs and starts the local test cluster")
    problem = _cluster_answers() if shutil.which("sinfo") else "sinfo is not installed"
    if problem:
        pytest.fail(f"the local Slurm cluster does not answer ({problem}); start it: sudo bash slurm/local/start.sh "
                    "(scripts/setup.sh --test does so); logs in /var/lib/tokbench-slurm/log", pytrace=False)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text).replace("STORE", str(tmp_path / "store")))
    return path


def _cli(*args, env=None, timeout=600):
    return run_cli(*args, env=env, timeout=timeout)


def _ledger(tmp_path: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["job_id"] for p in (tmp_path / "store" / "slurm" / "jobs").glob("*.json")}


def _sacct(job_ids, fields="JobID,State,Start,End", timeout_s: float = 60) -> dict[str, list[str]]:
    """sacct rows of the jobs once every one has ended (a unit's result is in the store a moment
    before its job exits)."""
    wanted = set(job_ids)
    deadline = time.time() + timeout_s
    while True:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", fields, "-j", ",".join(sorted({j.split("_")[0] for j in wanted}))],
                             capture_output=True, text=True, check=True).stdout
        rows = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines()}
        if all(j in rows and rows[j][0] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED") for j in wanted):
            return rows
        assert time.time() < deadline, f"jobs {sorted(wanted)} still not ended after {timeout_s}s: {rows}"
        time.sleep(0.5)


RECONSTRUCTION = """
name: slurm-e2e
store: {root: STORE}
launcher: {backend: slurm, profile: local}
datasets:
  d: {kind: shapes, params: {num_images: 8, resolution: 32}}
tokenizers:
  bicubic: {plugin: resample, params: {factor: 4}}
  coarse: {plugin: resample, params: {factor: 8}}
tasks:
  - kind: reconstruction
    dataset: d
    params: {metrics: [psnr, ssim]}
    resources: {cpus_per_task: 1, mem_gb: 2, time_min: 10}
report: {formats: [markdown]}
"""


def test_suite_through_sbatch_as_one_array_submitted_once(cluster, tmp_path):
    suite = _write(tmp_path, "e2e", RECONSTRUCTION)
    started = time.time()
    first = _cli("run", str(suite))
    submit_s = time.time() - started
    assert first.returncode == 0, first.stderr
    assert "submitted 2 unit(s)" in first.stdout
    assert submit_s < 10, f"`tokbench run` took {submit_s:.1f}s to submit and return"
    jobs = _ledger(tmp_path)
    assert len(jobs) == 2 and len({j.split("_")[0] for j in jobs.values()}) == 1, f"not one array: {jobs}"
    assert sorted(j.split("_")[1] for j in jobs.values()) == ["0", "1"]

    started = time.time()
    again = _cli("run", str(suite))  # while the array is still queued or running
    again_s = time.time() - started
    assert again.returncode == 0, again.stderr
    assert "submitted 0 unit(s)" in again.stdout and "2 already queued" in again.stdout, again.stdout
    assert _ledger(tmp_path) == jobs
    print(f"\nsubmit returned in {submit_s:.2f}s (jobs {sorted(jobs.values())}); "
          f"re-run while queued: {again_s:.2f}s, submitted nothing")

    waited = _cli("run", str(suite), "--wait")
    assert waited.returncode == 0, waited.stderr
    assert "submitted 0 unit(s)" in waited.stdout
    assert re.search(r"\| bicubic\s+\|\s+[*_]*\d", waited.stdout), waited.stdout  # the results table
    states = _sacct(jobs.values())
    assert {states[j][0] for j in jobs.values()} == {"COMPLETED"}, states
    status = _cli("status", "--store", str(tmp_path / "store"))
    assert status.returncode == 0 and "2 done" in status.stdout, status.stdout
    final = _cli("run", str(suite))
    assert "submitted 0 unit(s)" in final.stdout and "2 in the store" in final.stdout


CHAIN = """
name: slurm-chain
store: {root: STORE}
launcher: {backend: slurm, profile: local, resources: {cpus_per_task: 2, mem_gb: 3}}
datasets:
  d: {kind: shapes, params: {num_images: 8, resolution: 32}}
tokenizers:
  vae:
    plugin: vae
    params: {preset: tiny, train: {steps: LPIPS_STEPS, batch_size: 4, num_images: 16, holdout_images: 4,
             resolution: 32, crop_size: null, full_resolution_steps: 0, lpips_weight: LPIPS_WEIGHT}}
    resources: {time_min: 20}
tasks:
  - kind: reconstruction
    dataset: d
    params: {metrics: [psnr]}
report: {formats: [markdown]}
"""


def test_dependency_chain_prepare_then_evaluate(cluster, tmp_path):
    suite = _write(tmp_path, "chain", CHAIN.replace("LPIPS_STEPS", "6").replace("LPIPS_WEIGHT", "0"))
    result = _cli("run", str(suite), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = _ledger(tmp_path)
    assert len(jobs) == 2
    prepare, evaluate = sorted(jobs.values(), key=lambda j: int(j.split("_")[0]))
    submission = next((tmp_path / "store" / "runs").glob(f"*/slurm/{evaluate}/{evaluate}_submission.sh")).read_text()
    assert f"--dependency=afterok:{prepare}" in submission and "--kill-on-invalid-dep=yes" in submission
    states = _sacct(jobs.values())
    assert states[prepare][0] == states[evaluate][0] == "COMPLETED", states
    assert states[evaluate][1] >= states[prepare][2], f"evaluation started before the tokenizer was trained: {states}"


def test_failing_unit_reaches_the_user_and_cancels_dependents(cluster, tmp_path):
    suite = _write(tmp_path, "fail", CHAIN.replace("LPIPS_STEPS", "6").replace("LPIPS_WEIGHT", "0.5"))
    env = {"TOKBENCH_LPIPS_VGG": str(tmp_path / "no-such-vgg16.pth")}  # the prepare unit fails in its job
    result = _cli("run", str(suite), "--wait", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "failed  prepare/vae" in output
    assert "MissingAssetError: train.lpips_weight > 0 needs the VGG16 weights" in output
    assert "no-such-vgg16.pth" in output
    jobs = _ledger(tmp_path)
    prepare, evaluate = sorted(jobs.values(), key=lambda j: int(j.split("_")[0]))
    states = _sacct(jobs.values())
    assert states[prepare][0] == "FAILED" and states[evaluate][0] == "CANCELLED", states
    status = _cli("status", "--store", str(tmp_path / "store"))
    assert "FAILED" in status.stdout and "MissingAssetError" in status.stdout and "CANCELLED" in status.stdout, status.stdout

    # re-running resubmits what failed (and only that), and `cancel` stops it
    again = _cli("run", str(suite), env=env)
    assert "submitted 2 unit(s)" in again.stdout, again.stdout
    cancelled = _cli("cancel", "--store", str(tmp_path / "store"))
    assert cancelled.returncode == 0 and re.search(r"cancelled [12] job\(s\)", cancelled.stdout), cancelled.stdout


TRAINING = """
name: slurm-requeue
store: {root: STORE}
launcher: {backend: slurm, profile: local, resources: {cpus_per_task: 2, mem_gb: 4}}
datasets:
  train: {kind: shapes, params: {split: train, num_images: 64, resolution: 32}}
  val: {kind: shapes, params: {split: val, num_images: 32, resolution: 32}}
tokenizers:
  bicubic: {plugin: resample, params: {factor: 4}}
tasks:
  - kind: generation
    dataset: val
    train_dataset: train
    params: {model: micro, target_tokens: 16, steps: STEPS, batch_size: 16, precision: fp32, sample_steps: 4,
             num_samples: 32, metrics: [gfid], shard_size: 32, extract_batch_size: 32, sample_batch_size: 32}
report: {formats: [markdown]}
"""


def test_requeued_training_unit_resumes_from_its_checkpoint(cluster, tmp_path):
    # a checkpoint every 100 steps; long enough that the requeue lands before training ends
    # (at 100 steps the first attempt could finish and commit the generator first)
    steps = 1000
    suite = _write(tmp_path, "requeue", TRAINING.replace("STEPS", str(steps)))
    assert _cli("run", str(suite)).returncode == 0
    (job,) = _ledger(tmp_path).values()

    deadline = time.time() + 240
    checkpoints: list[Path] = []
    while not checkpoints:
        assert time.time() < deadline, "the training unit wrote no checkpoint in 240s"
        checkpoints = list((tmp_path / "store" / "partial").glob("*/checkpoint.pt"))
        time.sleep(0.2)
    subprocess.run(["scontrol", "requeue", job], check=True)
    requeued_at = time.time()

    result = _cli("run", str(suite), "--wait")  # nothing to submit: the requeued job is still ours
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted 0 unit(s)" in result.stdout and "1 already queued" in result.stdout
    log = next((tmp_path / "store" / "runs").glob(f"*/slurm/{job}/{job}_0_log.err")).read_text()
    resumed = re.search(r"\[dit\] resumed \S+ at step (\d+) of (\d+)", log)
    assert resumed, f"the requeued job did not resume from a checkpoint:\n{log[-3000:]}"
    step = int(resumed.group(1))
    print(f"\nrequeued job {job} resumed at step {step} of {steps} "
          f"({time.time() - requeued_at:.1f}s from requeue to result)")
    assert 0 < step < steps and step % (steps // 10) == 0
    assert "attempt 2 (requeued)" in log
    restarts = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert re.search(r"Restarts=[1-9]", restarts), restarts


def _ranks():
    import os as _os

    import torch
    import torch.distributed as dist

    from tokbench.execution.launch.distributed import init_distributed

    rank, world = init_distributed("gloo")
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    dist.destroy_process_group()
    return rank, world, value.item(), _os.environ["LOCAL_RANK"], _os.environ.get("CUDA_VISIBLE_DEVICES")


def test_two_ranks_from_the_job_environment(cluster, tmp_path):
    import cloudpickle
    import submitit

    from tokbench.config.resources import Resources, load_profile, submitit_parameters

    params = submitit_parameters(load_profile("local"), Resources(gpus_per_node=2, cpus_per_task=1, mem_gb=2),
                                 "tokbench-ddp-test")
    assert params["tasks_per_node"] == 2
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job cannot import this test module
    executor = submitit.AutoExecutor(folder=str(tmp_path / "%j"), cluster="slurm")
    executor.update_parameters(**params)
    job = executor.submit(_ranks)
    results = sorted(job.results())
    assert [r[:4] for r in results] == [(0, 2, 3.0, "0"), (1, 2, 3.0, "1")], results  # all_reduce of 1 + 2
    assert results[0][4] == "0,1"  # the two fake GPUs of the node


TWO_RANKS = (GENERATION_UNIT_SUITE.replace("NAME", "slurm-two-ranks")
             .replace("LAUNCHER", "{backend: slurm, profile: local, device: cpu, resources: {cpus_per_task: 1, mem_gb: 2}}")
             .replace("RESOURCES", "{gpus_per_node: 2, time_min: 20}").replace("STEPS", "20"))


def test_a_unit_on_a_two_task_job_trains_on_both_ranks_and_commits_once(cluster, tmp_path):
    from tokbench.storage.store import Store

    suite = _write(tmp_path, "ranks", TWO_RANKS)
    result = _cli("run", str(suite), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    (job,) = _ledger(tmp_path).values()
    assert _sacct([job])[job][0] == "COMPLETED"
    submission = next((tmp_path / "store" / "runs").glob(f"*/slurm/{job}/{job}_submission.sh")).read_text()
    assert "--ntasks-per-node=2" in submission
    store = Store(tmp_path / "store")
    assert [c["kind"] for c in store.commits()].count("result") == 1
    (generator,) = [a for a in store.artifacts() if a["kind"] == "generator-checkpoint"]
    assert generator["meta"]["ranks"] == 2, "DiT training did not run under DDP on both tasks"
    shard_writers = {json.loads(m.read_text())["pid"] for m in (tmp_path / "store" / "objects").glob("*/*/shard-*/MANIFEST.json")}
    assert len(shard_writers) == 2, f"extraction shards written by {shard_writers}"
    print(f"\ntwo-task job {job}: DDP training on 2 ranks, shards written by {len(shard_writers)} processes, one commit")


def test_each_evaluation_waits_only_for_its_own_tokenizer(cluster, tmp_path):
    two = CHAIN.replace("LPIPS_STEPS", "6").replace("LPIPS_WEIGHT", "0").replace("tokenizers:\n  vae:", "tokenizers:\n  vae:", 1)
    two = two.replace("    resources: {time_min: 20}\n", "    resources: {time_min: 20}\n  vae2:\n    plugin: vae\n"
                      "    params: {preset: tiny, train: {steps: 7, batch_size: 4, num_images: 16, holdout_images: 4,\n"
                      "             resolution: 32, crop_size: null, full_resolution_steps: 0, lpips_weight: 0}}\n", 1)
    suite = _write(tmp_path, "two", two)
    result = _cli("run", str(suite))
    assert result.returncode == 0 and "submitted 4 unit(s)" in result.stdout, result.stdout + result.stderr
    try:
        scripts = {p.parent.name: p.read_text() for p in (tmp_path / "store" / "runs").glob("*/slurm/*/*_submission.sh")}
        waits = {job: re.search(r"--dependency=afterok:(\S+)", text) for job, text in scripts.items()}
        evaluations = {job: m.group(1) for job, m in waits.items() if m}
        assert len(evaluations) == 2, f"the two evaluations went out as one array: {scripts.keys()}"
        assert all(":" not in deps for deps in evaluations.values()), f"an evaluation waits for both trainings: {evaluations}"
        assert len(set(evaluations.values())) == 2
    finally:
        _cli("cancel", "--store", str(tmp_path / "store"))
