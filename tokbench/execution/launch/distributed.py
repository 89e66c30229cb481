"""torch.distributed from a Slurm job's environment.

A job with ``tasks_per_node = gpus_per_node`` runs one process per GPU. Slurm tells
each its place (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, the node list);
this module turns that into torchrun's variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), so code written for torchrun (VTP
pretraining, DiT training) runs unchanged under Slurm, and initialises the process group.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Mapping


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: ``gpu[003-005,9],cpu1`` -> ``gpu003``."""
    match = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if match is None:
        raise ValueError(f"cannot read Slurm node list {nodelist!r}")
    prefix, ranges = match.group(1), match.group(3)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def torchrun_env(env: Mapping[str, str]) -> dict[str, str]:
    """torchrun's variables from a Slurm task's environment (empty outside a Slurm job step). Pure."""
    if "SLURM_PROCID" not in env or "SLURM_NTASKS" not in env:
        return {}
    job_id = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID", "0")
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "127.0.0.1"
    return {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": env["SLURM_NTASKS"],
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "LOCAL_WORLD_SIZE": env.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0],
        "NODE_RANK": env.get("SLURM_NODEID", "0"),
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodelist),
        # one port per job, the same on every rank, away from the ephemeral range
        "MASTER_PORT": env.get("MASTER_PORT") or str(20000 + int(re.sub(r"\D", "", job_id) or 0) % 20000),
    }


def export_torchrun_env() -> dict[str, str]:
    """Set torchrun's variables in this process from Slurm's (no-op outside Slurm); returns them."""
    values = torchrun_env(os.environ)
    if values and "SLURM_JOB_NODELIST" in os.environ and not os.environ.get("MASTER_ADDR"):
        values["MASTER_ADDR"] = _resolve_first_host(os.environ["SLURM_JOB_NODELIST"], values["MASTER_ADDR"])
    os.environ.update(values)
    return values


def _resolve_first_host(nodelist: str, fallback: str) -> str:
    try:  # scontrol knows every node-list syntax; the parser above covers the common ones
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
        hosts = out.stdout.split()
        return hosts[0] if out.returncode == 0 and hosts else fallback
    except (OSError, subprocess.TimeoutExpired):
        return fallback


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Initialise the default process group from the Slurm (or torchrun) environment; (rank, world size).

    One process and no Slurm step: nothing to initialise, (0, 1).
    """
    import torch
    import torch.distributed as dist

    export_torchrun_env()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size)
    return rank, world_size
