"""The ``tiny`` preset's model and loss, trained by the shared loop (:mod:`tokbench.training.loop`).

AdamW with linear warm-up and cosine decay, gradient clipping at 1; loss =
L1 + MSE + KL (+ optional LPIPS) on ``shapes`` train images (random flips, and
random crops for all but the last steps), images in [-1, 1]. Residual branches
start at zero, which makes a few hundred CPU steps go a long way. bf16 autocast
on CUDA; ``torch.compile`` only when asked. Deterministic for a given seed and
device, and resumable to the bit from a checkpoint. Returns the trained model and a
JSON-able summary (final losses, held-out PSNR, steps, wall time) that the producer
records in the store manifest.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from tokbench.training.loop import Checkpoints, bf16_autocast
from tokbench.training.perceptual import lpips_training_loss
from tokbench.training.tiny import (  # noqa: F401 - re-exported for the plugin's callers
    HOLDOUT_SEED_OFFSET, ImageSource, Track, images_tensor, lr_at, prepare_model, psnr, run_tiny_loop,
    sensible_threads, shapes_sources, summary_head, tail_means, training_pool, zero_init_residuals,
)
from tokbench_vae.params import TinyTrainParams
from tokbench_vae.presets import autoencoder_config


# ---- helpers -------------------------------------------------------------------
def init_logvar(model, value: float) -> None:
    """Start the posterior log-variance at ``value`` (instead of about 0) so the decoder
    sees informative latents from the first step, not unit-variance noise."""
    conv = model.quant_conv if model.quant_conv is not None else model.encoder.conv_out
    channels = conv.out_channels // 2
    with torch.no_grad():
        conv.bias[channels:].fill_(value)


@torch.no_grad()
def evaluate(model, images_uint8: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """Mean PSNR and L1 of posterior-mode reconstructions of uint8 images (fp32)."""
    device = next(model.parameters()).device
    psnrs, l1s = [], []
    for start in range(0, len(images_uint8), batch_size):
        x = images_uint8[start : start + batch_size].to(device).float() / 255.0
        recon = model.decode(model.encode(x * 2 - 1).latent_dist.mode()).sample
        recon = ((recon + 1) / 2).clamp(0, 1)
        psnrs.append(psnr(x, recon).cpu())
        l1s.append((recon - x).abs().flatten(1).mean(1).cpu())
    return {"psnr": float(torch.cat(psnrs).mean()), "l1": float(torch.cat(l1s).mean())}


@torch.no_grad()
def latent_statistics(model, images_uint8: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """Global mean and std of posterior-mode latents (for scaling/shift factors)."""
    device = next(model.parameters()).device
    latents = []
    for start in range(0, len(images_uint8), batch_size):
        x = images_uint8[start : start + batch_size].to(device).float() / 127.5 - 1
        latents.append(model.encode(x).latent_dist.mode().float().cpu())
    stacked = torch.cat(latents)
    return {"mean": float(stacked.mean()), "std": float(stacked.std())}


# ---- the loss and the run --------------------------------------------------------
class VAELoss:
    """L1 + ``kl_weight`` x KL (per latent element) + ``mse_weight`` x MSE (+ ``lpips_weight`` x
    LPIPS) of a posterior sample's reconstruction (bf16 autocast on CUDA)."""

    def __init__(self, model, train: TinyTrainParams, noise: torch.Generator, perceptual=None):
        self.model, self.train, self.noise, self.perceptual = model, train, noise, perceptual
        self.device = next(model.parameters()).device

    def loss(self, step: int, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        model, train = self.model, self.train
        with bf16_autocast(self.device):
            posterior = model.encode(x).latent_dist
            recon = model.decode(posterior.sample(generator=self.noise)).sample.float()
            l1 = (recon - x).abs().mean()
            kl = posterior.kl().float().mean() / posterior.mean[0].numel()
            loss = l1 + train.kl_weight * kl
            if train.mse_weight > 0:
                loss = loss + train.mse_weight * (recon - x).pow(2).mean()
            if self.perceptual is not None:
                loss = loss + train.lpips_weight * self.perceptual(recon, x)
        return loss, {"l1": l1.item(), "kl": kl.item()}


def train_tiny(train: TinyTrainParams, train_images: ImageSource | torch.Tensor,
               holdout_images: ImageSource | torch.Tensor | None = None, *, device: str | torch.device = "cpu",
               track: Track | None = None, log: Callable[[str], None] | None = None,
               checkpoints: Checkpoints | None = None):
    """Train the tiny preset; returns ``(model (eval, on device), summary dict)``.

    ``train_images``/``holdout_images``: uint8 tensors (N,3,H,W) or objects with
    ``len()`` and ``image(i)`` (e.g. a ``ShapesDataset``). ``checkpoints``: where to save
    (and resume from) the loop's state.
    """
    from diffusers import AutoencoderKL

    started = time.time()
    device = torch.device(device)
    pool, holdout = training_pool(train, train_images, holdout_images)
    perceptual = lpips_training_loss(device) if train.lpips_weight > 0 else None

    with sensible_threads() as threads:
        torch.manual_seed(train.seed)
        model = AutoencoderKL(**autoencoder_config(train))
        if train.zero_init_residuals:
            zero_init_residuals(model)
        if train.initial_logvar is not None:
            init_logvar(model, train.initial_logvar)
        model = prepare_model(model, device, train.compile)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=train.lr, betas=(0.9, 0.99), weight_decay=train.weight_decay
        )
        generator = torch.Generator().manual_seed(train.seed)  # data order and flips (CPU)
        noise = torch.Generator(device=device).manual_seed(train.seed + 1)  # posterior samples
        history = run_tiny_loop(
            train, pool, model, optimizer, VAELoss(model, train, noise, perceptual), generator, name="vae tiny",
            generators=[noise], track=track, log=log, checkpoints=checkpoints,
            details=lambda step, record: f"kl {record['kl']:.3f} lr {lr_at(step, train):.2e}")

        model.eval()
        summary: dict[str, Any] = {
            **summary_head(train, device, threads, started),
            "parameters": sum(p.numel() for p in model.parameters()),
            "first_loss": history[0]["loss"],
            **tail_means(history, {"final_loss": "loss", "final_train_l1": "l1", "final_kl": "kl"}),
        }
        train_eval = evaluate(model, pool[: min(len(pool), 64)].cpu())  # first training images, no flips
        summary["train_psnr"] = round(train_eval["psnr"], 3)
        if holdout is not None:
            held = evaluate(model, holdout)
            summary.update({"holdout_psnr": round(held["psnr"], 3), "holdout_l1": held["l1"], "holdout_images": len(holdout)})
        stats = latent_statistics(model, pool[: min(len(pool), 256)].cpu())
        summary["latent_mean"], summary["latent_std"] = stats["mean"], stats["std"]
        # Generation pipelines use (z - shift_factor) * scaling_factor; encode/decode do not.
        model.register_to_config(scaling_factor=1.0 / max(stats["std"], 1e-6), shift_factor=stats["mean"])
        summary["wall_seconds"] = round(time.time() - started, 2)
    if log is not None:
        log(
            f"vae tiny: {train.steps} steps in {summary['train_seconds']:.0f}s, train L1 {summary['final_train_l1']:.4f}"
            + (f", held-out PSNR {summary['holdout_psnr']:.2f} dB" if "holdout_psnr" in summary else "")
        )
    return model, summary
