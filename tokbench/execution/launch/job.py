"""What a Slurm job runs: one unit, named by (run directory, unit key).

The callable pickles two strings, never a model or a tensor. It is submitit
``Checkpointable``: on preemption or at the time limit submitit requeues the same
two strings, and the unit picks up from what it left in the store (a training
unit from its last checkpoint, an extraction unit from its last committed shard).
A requeue by the cluster (``scontrol requeue``, node failure) re-runs it the same way.

Unlike the in-process backends it raises when the unit fails, so Slurm records
the job as FAILED, ``afterok`` dependents are cancelled, and submitit hands the
error back to whoever waits on the job.

A job with several tasks (``tasks_per_node = gpus_per_node``) runs the unit on every rank,
in one process group: DDP training uses all of them, extraction shards are split across
them, and rank 0 alone commits (``tokbench.runtime.ranks``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import submitit


class UnitFailed(RuntimeError):
    """A unit failed inside its job; the message carries the error and the traceback."""


class UnitJob(submitit.helpers.Checkpointable):
    def __init__(self, run_dir: str, unit_key: str):
        self.run_dir = str(run_dir)
        self.unit_key = str(unit_key)

    def __call__(self) -> dict[str, Any] | None:
        from tokbench.execution.runner import execute_unit
        from tokbench.runtime.ranks import Ranks, agree_ranks

        ranks = Ranks()
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
            # One process per GPU: every rank runs the unit; rank 0 commits (tokbench.runtime.ranks).
            from tokbench.execution.launch.distributed import init_distributed

            init_distributed()
            ranks = agree_ranks()
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if ranks.leader and restarts and restarts != "0":
            print(f"[tokbench] unit {self.unit_key}: attempt {int(restarts) + 1} (requeued)", file=sys.stderr, flush=True)
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or None
        outcome = execute_unit(self.run_dir, self.unit_key, threads, False, ranks)
        if outcome["status"] == "failed":
            raise UnitFailed(f"{outcome['label']}: {outcome['error']}\n{outcome.get('traceback') or ''}".rstrip())
        return outcome if ranks.leader else None
