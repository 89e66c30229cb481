"""What a unit asks of a cluster, and the one function that turns it into submitit parameters.

Three layers, later ones winning field by field: a cluster profile's defaults
(``slurm/profiles/<name>.yaml``), the suite's ``launcher.resources``, and the
``resources`` of a task (its evaluation units) or of a tokenizer (its prepare
unit). Nothing here names a cluster, a partition or a path: those live in the
profile. Imports pydantic only (no torch, no submitit).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError

from tokbench.config.files import interpolate_env, pydantic_problems
from tokbench.errors import TokbenchError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """Per-unit resources; unset fields fall back to the layer below."""

    nodes: PositiveInt | None = Field(None, description="nodes per job (multi-node DDP)")
    gpus_per_node: NonNegativeInt | None = Field(None, description="GPUs per node; one task (rank) per GPU")
    cpus_per_task: PositiveInt | None = Field(None, description="CPU cores per task (per GPU when gpus_per_node > 0)")
    mem_gb: PositiveFloat | None = Field(None, description="memory per node, GB")
    time_min: PositiveInt | None = Field(None, description="time limit per job, minutes (a requeue starts a new limit)")

    def over(self, base: "Resources") -> "Resources":
        """These resources with the unset fields taken from ``base``."""
        return base.model_copy(update=self.model_dump(exclude_none=True))


DEFAULT_RESOURCES = Resources(nodes=1, gpus_per_node=0, cpus_per_task=1, mem_gb=4, time_min=60)


class SlurmProfile(_Strict):
    """A cluster: where jobs go and how a job prepares its environment."""

    description: str = ""
    partition: str | None = Field(None, description="sbatch --partition (None: the cluster's default)")
    account: str | None = None
    qos: str | None = None
    constraint: str | None = Field(None, description="sbatch --constraint, e.g. a GPU type")
    max_time_min: PositiveInt | None = Field(None, description="the partition's time limit; longer requests fail at validation")
    max_gpus_per_node: NonNegativeInt | None = Field(None, description="GPUs a node has; larger requests fail at validation")
    max_nodes: PositiveInt | None = None
    resources: Resources = Field(default_factory=Resources, description="defaults for every unit on this cluster")
    setup: list[str] = Field(default_factory=list, description="shell lines run before each job (module loads, venv activation)")
    signal_delay_s: NonNegativeInt = Field(120, description="USR2 this long before the time limit: checkpoint and requeue")
    array_parallelism: PositiveInt = Field(64, description="array tasks running at once")
    sbatch: dict[str, str | int | bool] = Field(
        default_factory=dict, description="other sbatch options, without the leading dashes (e.g. exclusive: true)")


def profile_dirs() -> list[Path]:
    """Where profiles are looked up: $TOKBENCH_SLURM_PROFILES (os.pathsep-separated), ./slurm/profiles, the repository's."""
    dirs = [Path(p) for p in os.environ.get("TOKBENCH_SLURM_PROFILES", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "slurm" / "profiles")
    dirs.append(Path(__file__).resolve().parents[2] / "slurm" / "profiles")
    return list(dict.fromkeys(dirs))


def load_profile(name: str) -> SlurmProfile:
    """A profile by name (``slurm/profiles/<name>.yaml``) or by path to a YAML file."""
    candidates = [Path(name)] if name.endswith((".yaml", ".yml")) else [d / f"{name}.yaml" for d in profile_dirs()]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        known = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")})
        raise TokbenchError(f"launcher.profile: no Slurm profile {name!r}; known: {', '.join(known) or 'none'} "
                            f"(looked in {', '.join(str(d) for d in profile_dirs())})")
    problems: list[str] = []
    data = interpolate_env(yaml.safe_load(path.read_text()) or {}, "", problems, str(path))
    if problems:
        raise TokbenchError("\n".join(problems))
    try:
        return SlurmProfile.model_validate(data)
    except ValidationError as error:
        raise TokbenchError("\n".join(pydantic_problems(error, SlurmProfile, str(path)))) from None


def check_fits(profile: SlurmProfile, resources: Resources, what: str) -> list[str]:
    """Problems with running ``resources`` on this profile's cluster (empty: it fits)."""
    problems = []
    if profile.max_time_min and resources.time_min and resources.time_min > profile.max_time_min:
        problems.append(f"{what}: time_min {resources.time_min} exceeds the profile's max_time_min "
                        f"{profile.max_time_min}; lower it (a checkpointed unit is requeued and resumes)")
    if profile.max_gpus_per_node is not None and (resources.gpus_per_node or 0) > profile.max_gpus_per_node:
        problems.append(f"{what}: gpus_per_node {resources.gpus_per_node} exceeds the profile's max_gpus_per_node "
                        f"{profile.max_gpus_per_node}; use nodes: N for more GPUs")
    if profile.max_nodes is not None and (resources.nodes or 1) > profile.max_nodes:
        problems.append(f"{what}: nodes {resources.nodes} exceeds the profile's max_nodes {profile.max_nodes}")
    return problems


def submitit_parameters(profile: SlurmProfile, resources: Resources, job_name: str,
                        dependencies: list[str] | None = None) -> dict[str, Any]:
    """The submitit ``update_parameters`` arguments for one job (or array) of units. Pure.

    One task per GPU (``tasks_per_node = gpus_per_node``, at least one), so each rank of a
    DDP job is its own process with its own GPU, initialised from the job environment.
    ``dependencies`` are job ids that must end successfully first (``afterok``); a failed
    one cancels this job instead of leaving it pending forever.
    """
    merged = resources.over(profile.resources.over(DEFAULT_RESOURCES))
    gpus = merged.gpus_per_node or 0
    params: dict[str, Any] = {
        "name": job_name,
        "nodes": merged.nodes,
        "tasks_per_node": max(1, gpus),
        "cpus_per_task": merged.cpus_per_task,
        "mem_gb": merged.mem_gb,
        "timeout_min": merged.time_min,
        "slurm_signal_delay_s": profile.signal_delay_s,
        "slurm_array_parallelism": profile.array_parallelism,
    }
    if gpus:
        params["gpus_per_node"] = gpus
    for field in ("partition", "account", "qos", "constraint"):
        value = getattr(profile, field)
        if value is not None:
            params[f"slurm_{field}"] = value
    if profile.setup:
        params["slurm_setup"] = list(profile.setup)
    additional: dict[str, Any] = dict(profile.sbatch)
    if dependencies:
        params["slurm_dependency"] = "afterok:" + ":".join(dependencies)
        additional["kill-on-invalid-dep"] = "yes"
    if additional:
        params["slurm_additional_parameters"] = dict(sorted(additional.items()))
    return params
