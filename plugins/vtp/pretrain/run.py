"""Entry points of VTP pretraining: from a recipe to a trained, exported model.

- :func:`pretrain`: train (or resume) a recipe in a run directory, one process or one
  rank of a ``torchrun`` job (the process group is set up from the torchrun env).
- :func:`trained_checkpoint`: the store artifact of a recipe (a suite naming a
  tokenizer by its recipe), trained once, resumable in the store's ``partial/`` area.
- ``python -m tokbench_vtp.pretrain.run RECIPE --run-dir DIR`` is what
  ``tokbench vtp pretrain --nproc-per-node N`` hands to torchrun.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from tokbench_vtp.pretrain.recipe import PretrainRecipe, load_recipe

KIND = "vtp-pretrained"
EXPORTED = ("model.safetensors", "config.json", "training.json", "history.jsonl")
logger = logging.getLogger("tokbench_vtp.pretrain")


def _init_distributed() -> tuple[int, int, str]:
    """(rank, world size, device) from torchrun's environment; one process without it."""
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = "cpu"
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)  # before NCCL initialises, so each rank talks from its own GPU
        device = f"cuda:{local}"
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device != "cpu" else "gloo")
    return rank, world_size, device


def pretrain(recipe: PretrainRecipe, run_dir: str | os.PathLike, device: str | None = None,
             evaluate: bool = True, log=None) -> dict[str, Any]:
    """Train ``recipe`` into ``run_dir`` (resuming from its checkpoint) and export the model."""
    from tokbench_vtp.pretrain.evaluate import ShapesProbe
    from tokbench_vtp.pretrain.trainer import VTPPretrainer

    rank, _, default_device = _init_distributed()
    device = device or default_device
    evaluator = None
    if evaluate and recipe.data.kind == "shapes" and rank == 0:
        evaluator = ShapesProbe(recipe.crops.image_size, seed=recipe.data.shapes_seed, device=device)
    eval_every = max(recipe.steps // 5, 1) if evaluator else 0
    trainer = VTPPretrainer(recipe, run_dir, device=device, evaluator=evaluator, eval_every=eval_every, log=log)
    return trainer.fit()


def trained_checkpoint(recipe: PretrainRecipe, context) -> Path:
    """Directory with the recipe's exported ``model.safetensors`` (+ config, summary), from the store.
    The run's ``launcher.checkpoint_every`` (``context.checkpoint_every``), when set, replaces the
    recipe's ``checkpoint_every`` (in no key either)."""
    every = getattr(context, "checkpoint_every", None)
    if every is not None:
        recipe = recipe.model_copy(update={"checkpoint_every": every})
    key_inputs = recipe.cache_inputs()
    work = context.work_dir(key_inputs, KIND)

    def produce(target: Path) -> dict[str, Any]:
        from tokbench.runtime.timing import phase

        with phase("tokenizer training", f"vtp recipe {recipe.name}, {recipe.total_steps} steps"):
            summary = pretrain(recipe, work, device=context.device, log=logger.info)
        from tokbench_vtp.pretrain.distributed import world_info

        if world_info()[0] != 0:  # another rank of a multi-GPU unit: rank 0 exports and commits
            return {}
        for name in EXPORTED:
            if (work / name).is_file():
                shutil.copy2(work / name, target / name)
        shutil.rmtree(work, ignore_errors=True)
        evaluations = summary.get("evaluations") or [{}]
        return {"training": {k: summary[k] for k in ("steps", "wall_seconds", "device")}, "last_eval": evaluations[-1]}

    return context.cached(key_inputs, KIND, produce, label=f"vtp recipe {recipe.name}", collective=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="VTP pretraining (one process, or one torchrun rank)")
    parser.add_argument("recipe", help="preset name (tiny, small, base, large) or recipe YAML")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--device", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override, e.g. steps=100")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    recipe = load_recipe(args.recipe, parse_overrides(args.set))
    try:
        pretrain(recipe, args.run_dir, device=args.device, log=print)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``a.b=value`` strings (YAML values) into a nested dict."""
    import yaml

    result: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected key.path=value")
        key, _, raw = item.partition("=")
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return result


if __name__ == "__main__":
    main()
