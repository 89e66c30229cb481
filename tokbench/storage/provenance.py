"""Where a number came from: software versions, the code (git commit of a checkout, or the
installed package's version), host, device, job ids."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "tokbench", "torch", "torchvision", "numpy", "scipy", "pillow", "pydantic", "pluggy", "submitit",
    "torch-fidelity", "diffusers", "timm", "open_clip_torch", "lpips",
)


@functools.lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@functools.lru_cache(maxsize=1)
def git_commit() -> dict[str, Any] | None:
    """The commit of the tokbench checkout in use (None for a wheel install)."""
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def code_source() -> dict[str, Any]:
    """Which tokbench code ran: the git commit of a checkout (editable install), or, for a wheel or
    ``pip install .`` (no checkout), the installed package's version, saying which it is."""
    commit = git_commit()
    if commit is not None:
        return {"kind": "git checkout", **commit}
    try:
        version = metadata.version("tokbench")
    except metadata.PackageNotFoundError:  # pragma: no cover - source tree on sys.path, never installed
        from tokbench import __version__ as version
    return {"kind": "installed package", "distribution": "tokbench", "version": version}


def device_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"device": device, "cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")  # never imported just for this: a torch-free unit used no threads
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()  # CPU sums are split by it: a run's bits depend on it
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index or 0
        info.update(gpu=torch.cuda.get_device_name(index), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    tf32={"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32,
                          "metric_networks": False})
    return info


def apply_tf32_policy(device: str, allowed: bool) -> None:
    """TF32 matmuls and convolutions on for tokenizers and training, or off (exact fp32: the
    default). Metric networks (Inception, LPIPS) switch it off for themselves either way, so
    FID features never depend on it. Recorded in each result's ``provenance.device.tf32``."""
    if device.startswith("cuda"):
        import torch

        torch.backends.cuda.matmul.allow_tf32 = allowed
        torch.backends.cudnn.allow_tf32 = allowed


def job_ids() -> dict[str, str]:
    keys = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "TOKBENCH_LOCAL_JOB_ID", "SUBMITIT_DEBUG_JOB_ID")
    return {k: os.environ[k] for k in keys if k in os.environ}


def collect(device: str) -> dict[str, Any]:
    return {
        "software": software_versions(),
        "source": code_source(),
        "host": socket.gethostname(),
        "device": device_info(device),
        "jobs": job_ids(),
    }
