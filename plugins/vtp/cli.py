"""``tokbench vtp ...``: pretraining, exporting and inspecting VTP models.

Only click at import time; torch is imported when a command runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click


@click.group(name="vtp")
def vtp() -> None:
    """VTP: pretrain a visual tokenizer (CLIP + DINO/iBOT + reconstruction, then a decoder GAN stage)."""


@vtp.command("pretrain")
@click.argument("recipe")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="where checkpoints, history and the exported model go (default: runs/vtp-<recipe name>)")
@click.option("-o", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a recipe field, e.g. -o steps=200 -o batch.clip=128")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
@click.option("--nproc-per-node", type=int, default=1, show_default=True,
              help="processes (GPUs) on this node; >1 launches torchrun with DDP")
@click.option("--dry-run", is_flag=True, help="validate the recipe, print it with its FLOPs per step, and stop")
def pretrain_command(recipe: str, run_dir: str | None, overrides: tuple[str, ...], device: str | None,
                     nproc_per_node: int, dry_run: bool) -> None:
    """Train (or resume) RECIPE: a preset (tiny, small, base, large) or a recipe YAML.

    Re-running the same command resumes from the run directory's checkpoint."""
    from pydantic import ValidationError

    from tokbench_vtp.pretrain.recipe import load_recipe
    from tokbench_vtp.pretrain.run import parse_overrides

    try:
        loaded = load_recipe(recipe, parse_overrides(list(overrides)))
    except (ValidationError, ValueError, FileNotFoundError) as error:
        raise click.ClickException(f"invalid VTP recipe {recipe!r}: {error}") from None
    run_dir = run_dir or f"runs/vtp-{loaded.name}"
    if dry_run:
        flops = {k: f"{v:.3e}" for k, v in loaded.training_flops().items()}
        click.echo(json.dumps({"recipe": loaded.model_dump(mode="json"), "flops_per_step": flops,
                               "parameters": loaded.arch.parameter_count()}, indent=2))
        return
    if nproc_per_node > 1:
        if device and device not in ("cpu", "cuda"):
            raise click.ClickException(
                f"--device {device} would put every rank on one device; with --nproc-per-node each rank uses "
                "its own GPU (LOCAL_RANK). Use --device cpu or cuda, or CUDA_VISIBLE_DEVICES to pick GPUs."
            )
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}",
                   "-m", "tokbench_vtp.pretrain.run", recipe, "--run-dir", run_dir]
        command += [arg for item in overrides for arg in ("--set", item)]
        if device:
            command += ["--device", device]
        raise SystemExit(subprocess.call(command, env=os.environ.copy()))
    from tokbench_vtp.pretrain.run import pretrain

    summary = pretrain(loaded, run_dir, device=device, log=click.echo)
    click.echo(f"exported {Path(run_dir) / 'model.safetensors'} ({summary['steps']} steps, {summary['wall_seconds']} s)")


@vtp.command("inspect")
@click.argument("checkpoint")
def inspect_command(checkpoint: str) -> None:
    """Print the architecture and tensor counts of an official-format CHECKPOINT (file, directory or hub id)."""
    from tokbench_vtp.checkpoint import config_overrides, infer_architecture, read_shapes, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    shapes = read_shapes(path)
    arch = infer_architecture(shapes, config_overrides(path))
    counts = {part: sum(k.startswith(f"{part}.") for k in shapes) for part in ("trunk", "pixel_decoder")}
    counts["text_and_clip"] = len(shapes) - sum(counts.values())
    click.echo(json.dumps({"path": str(path), "tensors": len(shapes), "tensor_counts": counts,
                           "architecture": arch.model_dump(mode="json"), "parameters": arch.parameter_count()}, indent=2))
