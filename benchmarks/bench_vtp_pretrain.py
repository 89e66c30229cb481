"""VTP pretraining step time, per branch, and (on GPU) throughput and model FLOPs utilisation.

    .venv/bin/python benchmarks/bench_vtp_pretrain.py                       # tiny recipe, CPU
    .venv/bin/python benchmarks/bench_vtp_pretrain.py --recipe large --clip-batch 64 --device cuda
    .venv/bin/python benchmarks/bench_vtp_pretrain.py --no-record           # print only

Batches are synthetic tensors of the recipe's shapes (the data pipeline is timed on its own
line), so the figures are the model's. Each branch is timed alone (forward + backward of the
student objective with the other branches' inputs empty), the teacher pass separately, then
a whole optimizer step; the student trunk alone is timed beside timm's ViT of the same size
(forward + backward on the CLIP images), the baseline. MFU = model FLOPs (2·params·tokens per forward, ×3 with backward, from
``PretrainRecipe.training_flops``) / time / peak; pass --peak-tflops for your GPU (H100 SXM
dense bf16: 989).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import add_common_options, best_seconds, comparison, record, setup, sync  # noqa: E402

import tokbench_vtp.pretrain.loader as loader_module
from tokbench_vtp.pretrain.collate import PretrainBatch
from tokbench_vtp.pretrain.objective import teacher_targets
from tokbench_vtp.pretrain.recipe import load_recipe
from tokbench_vtp.pretrain.trainer import VTPPretrainer


def synthetic_batch(recipe, clip: int, ssl: int, rec: int, device) -> PretrainBatch:
    crops, arch = recipe.crops, recipe.arch
    grid = (crops.global_size // arch.patch_size) ** 2
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 49000, (clip, arch.text_context_length), generator=generator)
    tokens[:, 12] = 49407
    masks = torch.rand(2 * ssl, grid, generator=generator) < 0.3
    return PretrainBatch(
        clip_images=torch.rand(clip, 3, crops.image_size, crops.image_size, generator=generator),
        text_tokens=tokens,
        global_crops=torch.rand(2 * ssl, 3, crops.global_size, crops.global_size, generator=generator),
        local_crops=torch.rand(crops.n_local * ssl, 3, crops.local_size, crops.local_size, generator=generator),
        masks=masks,
        rec_images=torch.rand(rec, 3, crops.image_size, crops.image_size, generator=generator),
        indices=torch.arange(clip),
        ssl_positions=torch.arange(ssl),
        rec_positions=torch.arange(rec),
    ).to(device)


def timm_vit_step(recipe, clip: int, device):
    """Baseline: timm's ViT built like the VTP trunk (width, depth, heads, patch, SwiGLU MLP of the
    same hidden size, RMSNorm, qk-norm; learned absolute positions instead of RoPE) on the CLIP
    images, forward + backward of a plain loss (what the student trunk does in the CLIP branch)."""
    from timm.layers import RmsNorm, SwiGLU
    from timm.models.vision_transformer import VisionTransformer

    arch, size = recipe.arch, recipe.crops.image_size
    model = VisionTransformer(
        img_size=size, patch_size=arch.patch_size, embed_dim=arch.vision_width, depth=arch.vision_depth,
        num_heads=arch.vision_heads, mlp_ratio=arch.vision_hidden / arch.vision_width, num_classes=0,
        qk_norm=arch.vision_qk_norm, norm_layer=RmsNorm, mlp_layer=SwiGLU, act_layer=torch.nn.SiLU,
    ).to(device)
    images = torch.rand(clip, 3, size, size, device=device)

    def step():
        with _autocast(recipe, device):
            model.forward_features(images).float().square().mean().backward()

    return step


def _autocast(recipe, device):
    if device.type == "cuda" and recipe.precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="tiny")
    parser.add_argument("--clip-batch", type=int, default=None, help="per-device CLIP batch (SSL/rec scale with it)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    add_common_options(parser)
    args = parser.parse_args(argv)
    device = setup(args)
    base = load_recipe(args.recipe)
    clip = args.clip_batch or base.batch.clip
    ssl = max(clip * base.batch.ssl // base.batch.clip, 1)
    rec = max(clip * base.batch.rec // base.batch.clip, 1)
    overrides = {"batch": {"clip": clip, "ssl": ssl, "rec": rec, "accumulation": 1}, "compile": args.compile,
                 "activation_checkpointing": args.activation_checkpointing,
                 "loss": {"perceptual": 0.0}, "data": {"kind": "shapes", "num_images": max(clip, 64),
                                                        "resolution": base.crops.image_size}}
    if args.precision:
        overrides["precision"] = args.precision
    recipe = load_recipe(args.recipe, overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = VTPPretrainer(recipe, run_dir, device=device, log=lambda _: None)
        objective, results = trainer.objective, {}
        batches = {
            "clip": synthetic_batch(recipe, clip, 0, 0, device),
            "ssl": synthetic_batch(recipe, clip, ssl, 0, device),
            "rec": synthetic_batch(recipe, clip, 0, rec, device),
        }
        batches["clip"].rec_images = batches["clip"].rec_images[:0]
        full = synthetic_batch(recipe, clip, ssl, rec, device)

        def teacher(batch):
            return teacher_targets(trainer.teacher_trunk, trainer.teacher_head, objective, batch,
                                   recipe.loss.teacher_temp, recipe.loss.centering)

        def branch(name):
            batch = batches[name]
            weights = objective.weights
            only = {"clip": {"ssl": 0.0, "rec": 0.0}, "ssl": {"clip": 0.0, "rec": 0.0}, "rec": {"clip": 0.0, "ssl": 0.0}}[name]
            objective.weights = weights.model_copy(update=only)
            targets = teacher(batch) if name == "ssl" else None

            def step():
                with trainer.autocast():
                    objective(batch, targets)["total"].backward()

            seconds = best_seconds(step, device, args.repeat)
            objective.weights = weights
            trainer.optimizer.zero_grad(set_to_none=True)
            return seconds

        for name in ("clip", "ssl", "rec"):
            results[f"{name}_fwd_bwd_s"] = branch(name)

        def teacher_pass():
            with trainer.autocast():
                teacher(full)

        results["teacher_fwd_s"] = best_seconds(teacher_pass, device, args.repeat)
        trainer.loader = iter(lambda: full, None)  # the synthetic batch as an endless loader
        results["optimizer_step_s"] = best_seconds(trainer.train_step, device, args.repeat)

        def data_batch_seconds() -> float:
            data_loader = trainer._make_loader(None)
            next(data_loader)
            start = time.perf_counter()
            for _ in range(2):
                next(data_loader)
            return (time.perf_counter() - start) / 2

        results["data_batch_s"] = data_batch_seconds()  # views augmented with one torch thread
        one_thread = loader_module.torch_threads
        loader_module.torch_threads = lambda count: contextlib.nullcontext()  # baseline: all of the process's threads
        try:
            results["data_batch_all_threads_s"] = data_batch_seconds()
        finally:
            loader_module.torch_threads = one_thread

        # the student trunk alone on the CLIP images (forward + backward), beside timm's ViT
        trunk = trainer.model.trunk
        images = batches["clip"].clip_images

        def trunk_step():
            with trainer.autocast():
                trunk.features(images).patches.float().square().mean().backward()

        results["trunk_fwd_bwd_s"] = best_seconds(trunk_step, device, args.repeat)
        trainer.optimizer.zero_grad(set_to_none=True)
    results["timm_vit_fwd_bwd_s"] = best_seconds(timm_vit_step(recipe, clip, device), device, args.repeat)
    sync(device)
    flops = recipe.training_flops()
    results["model_tflops_per_step"] = flops["total"] / 1e12
    results["achieved_tflops"] = flops["total"] / results["optimizer_step_s"] / 1e12
    results["images_per_s"] = clip / results["optimizer_step_s"]
    if device.type == "cuda":
        results["mfu"] = results["achieved_tflops"] / args.peak_tflops
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    settings = {"recipe": args.recipe, "batch": {"clip": clip, "ssl": ssl, "rec": rec},
                "precision": recipe.precision if device.type == "cuda" else "fp32", "compile": args.compile,
                "activation_checkpointing": args.activation_checkpointing, "peak_tflops": args.peak_tflops}
    comparisons = [comparison(f"student trunk fwd+bwd, {clip} images at {recipe.crops.image_size}²",
                              results["trunk_fwd_bwd_s"], "timm VisionTransformer, same blocks (SwiGLU, RMSNorm, qk-norm), no RoPE", results["timm_vit_fwd_bwd_s"], "s"),
                   comparison(f"one data batch ({clip} images, multi-crop views), augmented with 1 torch thread", results["data_batch_s"],
                              f"the same with the process's {torch.get_num_threads()} threads", results["data_batch_all_threads_s"], "s")]
    return record("vtp_pretrain", settings, results, comparisons, device, save=not args.no_record)


if __name__ == "__main__":
    main()
