"""The ``tiny`` preset's model and loss, trained by the shared loop (:mod:`tokbench.training.loop`).

AdamW with linear warm-up and cosine decay, gradient clipping at 1; loss = L1 + MSE +
VQ loss (codebook + beta-weighted commitment) (+ optional LPIPS, + optional PatchGAN with
taming's adaptive weight from ``gan_start``) on ``shapes`` train images (random flips, and
random crops for all but the last steps), images in [-1, 1]. Residual branches start at
zero, the codebook starts from encoder outputs of the first batch, and codes left unused
for a window of steps are restarted from current encoder outputs. The data pipeline and
helpers are shared with the vae plugin (same crops, flips, PSNR: :mod:`tokbench.training.tiny`).
Resumable to the bit from a checkpoint. Returns the trained model, its architecture and a
JSON-able summary (losses, held-out PSNR, codebook usage, wall time).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from tokbench.training.loop import Checkpoints, Discriminator, bf16_autocast
from tokbench.training.perceptual import lpips_training_loss
from tokbench.training.tiny import (  # noqa: F401 - images_tensor, shapes_sources re-exported for the plugin's callers
    ImageSource, Track, images_tensor, lr_at, prepare_model, psnr, run_tiny_loop, sensible_threads, shapes_sources,
    summary_head, tail_means, training_pool, zero_init_residuals,
)
from tokbench_vqgan.model import VQArchitecture, build_model
from tokbench_vqgan.params import TinyTrainParams

__all__ = ["DeadCodeRestart", "VQGANLoss", "evaluate", "shapes_sources", "tiny_architecture", "train_tiny"]


def tiny_architecture(train: TinyTrainParams) -> VQArchitecture:
    """The tiny preset's model: attention at the lowest resolution and in the mid block, as in
    taming and LlamaGen, so it can be saved in either official layout."""
    levels = len(train.block_out_channels)
    return VQArchitecture(
        block_out_channels=tuple(train.block_out_channels), layers_per_block=train.layers_per_block,
        latent_channels=train.latent_channels, codebook_size=train.codebook_size, codebook_dim=train.codebook_dim,
        attention_levels=(levels - 1,) if train.attention else (), mid_attention=train.attention,
        norm_num_groups=train.norm_num_groups, l2_norm=train.l2_norm, beta=train.beta, legacy_beta=train.legacy_beta,
        sample_size=train.resolution,
    )


def sample_codes(quantizer, latents: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` randomly chosen (slightly jittered) latent vectors of a (B, C, h, w) batch, as
    codebook rows (unit length for an l2 codebook), on the codebook's device and dtype."""
    vectors = quantizer.prepare(latents.detach()).reshape(-1, quantizer.vq_embed_dim).float().cpu()
    pick = torch.randint(0, len(vectors), (count,), generator=generator)
    # the jitter separates codes drawn from the same vector, so they do not stay tied
    codes = vectors[pick] + 0.01 * vectors.std() * torch.randn(count, vectors.shape[1], generator=generator)
    if quantizer.l2_norm:
        codes = F.normalize(codes, dim=-1)
    return codes.to(quantizer.embedding.weight)


@torch.no_grad()
def init_codebook_from_data(quantizer, latents: torch.Tensor, generator: torch.Generator) -> None:
    """Set the codebook to randomly chosen (slightly jittered) latent vectors of one batch."""
    quantizer.embedding.weight.copy_(sample_codes(quantizer, latents, quantizer.n_e, generator))


class DeadCodeRestart:
    """Dead-code restart: counts how often each code is chosen; every ``window`` observed steps,
    the codes chosen zero times in that window get new values drawn from the current encoder
    outputs, and their optimiser moments are cleared (stale Adam moments would push the new
    code straight back where the dead one was)."""

    def __init__(self, quantizer, window: int, generator: torch.Generator, optimizer: torch.optim.Optimizer | None = None):
        self.quantizer = quantizer
        self.window = window
        self.generator = generator
        self.optimizer = optimizer
        self.counts = torch.zeros(quantizer.n_e, dtype=torch.long)
        self.seen = 0
        self.restarted = 0

    def observe(self, indices: torch.Tensor, latents: torch.Tensor) -> int:
        """Count one step's code ``indices``; at the end of a window restart the dead codes with
        vectors of ``latents`` (B, C, h, w). Returns how many codes were restarted."""
        self.counts += torch.bincount(indices.detach().reshape(-1).cpu(), minlength=self.quantizer.n_e)
        self.seen += 1
        if self.seen < self.window:
            return 0
        dead = (self.counts == 0).nonzero().flatten()
        self.counts.zero_()
        self.seen = 0
        if len(dead):
            self._restart(dead, latents)
        self.restarted += len(dead)
        return len(dead)

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.clone(), "seen": self.seen, "restarted": self.restarted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts, self.seen, self.restarted = state["counts"].clone(), int(state["seen"]), int(state["restarted"])

    @torch.no_grad()
    def _restart(self, dead: torch.Tensor, latents: torch.Tensor) -> None:
        weight = self.quantizer.embedding.weight
        rows = dead.to(weight.device)
        weight[rows] = sample_codes(self.quantizer, latents, len(dead), self.generator)
        state = self.optimizer.state.get(weight, {}) if self.optimizer is not None else {}
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in state:
                state[moment][rows] = 0


def param_groups(model, train: TinyTrainParams) -> list[dict[str, Any]]:
    """The codebook (learning rate ``lr * codebook_lr_scale``) and everything else (``lr``)."""
    codebook = model.quantize.embedding.weight
    rest = [p for p in model.parameters() if p is not codebook]
    return [{"params": rest, "lr_scale": 1.0}, {"params": [codebook], "lr_scale": train.codebook_lr_scale}]


def reconstruct(model, x: torch.Tensor):
    """(reconstruction, VQ loss, pre-quant latent, indices) of images in [-1, 1]."""
    h = model.encode(x).latents
    z_q, vq_loss, (_, _, index) = model.quantize(h)
    return model.decoder(model.post_quant_conv(z_q)), vq_loss, h, index


@torch.no_grad()
def evaluate(model, images_uint8: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """Mean PSNR and L1 of quantised reconstructions, and codebook usage, on uint8 images (fp32)."""
    from tokbench_vqgan.tokenizer import usage_statistics

    device = next(model.parameters()).device
    psnrs, l1s = [], []
    counts = torch.zeros(model.quantize.n_e, dtype=torch.float64)
    for start in range(0, len(images_uint8), batch_size):
        x = images_uint8[start:start + batch_size].to(device).float() / 255.0
        recon, _, _, index = reconstruct(model, x * 2 - 1)
        recon = ((recon + 1) / 2).clamp(0, 1)
        psnrs.append(psnr(x, recon).cpu())
        l1s.append((recon - x).abs().flatten(1).mean(1).cpu())
        counts += torch.bincount(index.cpu(), minlength=model.quantize.n_e).double()
    return {"psnr": float(torch.cat(psnrs).mean()), "l1": float(torch.cat(l1s).mean()), **usage_statistics(counts)}


class VQGANLoss:
    """L1 + ``mse_weight`` x MSE (+ ``lpips_weight`` x LPIPS) + ``codebook_weight`` x VQ loss, + the
    hinge GAN loss with taming's adaptive weight from ``gan_start``; the codebook starts from the
    first batch's encoder outputs, dead codes restart after each update; the PatchGAN's hinge loss
    on the same step's real and reconstructed images (bf16 autocast on CUDA)."""

    def __init__(self, model, train: TinyTrainParams, generator: torch.Generator, perceptual=None,
                 discriminator: torch.nn.Module | None = None, restart: DeadCodeRestart | None = None):
        self.model, self.train, self.generator, self.perceptual = model, train, generator, perceptual
        self.discriminator, self.restart = discriminator, restart
        self.device = next(model.parameters()).device
        self.step_outputs: dict[str, Any] = {}

    def loss(self, step: int, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        from tokbench.training.gan import adaptive_gan_weight, gan_start_factor, hinge_g_loss

        model, train, discriminator = self.model, self.train, self.discriminator
        if step == 0 and train.init_codebook_from_data:
            with torch.no_grad():
                init_codebook_from_data(model.quantize, model.encode(x).latents, self.generator)
        with bf16_autocast(self.device):
            recon, vq_loss, latents, codes = reconstruct(model, x)
            recon = recon.float()
            l1 = (recon - x).abs().mean()
            rec_loss = l1 + train.mse_weight * (recon - x).pow(2).mean() if train.mse_weight > 0 else l1
            if self.perceptual is not None:
                rec_loss = rec_loss + train.lpips_weight * self.perceptual(recon, x)
            loss = rec_loss + train.codebook_weight * vq_loss.float()
            gan_on = discriminator is not None and gan_start_factor(step, train.gan_start) > 0
            g_loss = torch.zeros(())
            if gan_on:
                discriminator.requires_grad_(False)
                g_loss = hinge_g_loss(discriminator(recon))
                weight = adaptive_gan_weight(rec_loss, g_loss, model.decoder.conv_out.weight) * train.gan_weight
                loss = loss + weight * g_loss
        self.step_outputs = {"x": x, "recon": recon, "latents": latents, "codes": codes, "gan_on": gan_on}
        return loss, {"l1": l1.item(), "vq": vq_loss.item(), "g": g_loss.item(), "codes": int(codes.unique().numel())}

    def after_update(self, step: int) -> None:
        if self.restart is not None:
            self.restart.observe(self.step_outputs["codes"], self.step_outputs["latents"])

    def discriminator_loss(self, step: int) -> torch.Tensor | None:
        from tokbench.training.gan import hinge_d_loss

        outputs, self.step_outputs = self.step_outputs, {}
        if not outputs["gan_on"]:
            return None
        self.discriminator.requires_grad_(True)
        with bf16_autocast(self.device):
            return hinge_d_loss(self.discriminator(outputs["x"]), self.discriminator(outputs["recon"].detach()))

    def state_dict(self) -> dict[str, Any]:
        return {"restart": self.restart.state_dict() if self.restart is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.restart is not None:
            self.restart.load_state_dict(state["restart"])


def train_tiny(train: TinyTrainParams, train_images: ImageSource | torch.Tensor,
               holdout_images: ImageSource | torch.Tensor | None = None, *, device: str | torch.device = "cpu",
               track: Track | None = None, log: Callable[[str], None] | None = None,
               checkpoints: Checkpoints | None = None):
    """Train the tiny preset; returns ``(model (eval, on device), architecture, summary dict)``.
    ``checkpoints``: where to save (and resume from) the loop's state."""
    from tokbench.training.discriminators import PatchGANDiscriminator

    started = time.time()
    device = torch.device(device)
    pool, holdout = training_pool(train, train_images, holdout_images)
    perceptual = lpips_training_loss(device) if train.lpips_weight > 0 else None
    arch = tiny_architecture(train)

    with sensible_threads() as threads:
        torch.manual_seed(train.seed)
        model = build_model(arch)
        if train.zero_init_residuals:
            zero_init_residuals(model)
        model = prepare_model(model, device, train.compile)
        discriminator = None
        if train.gan_weight > 0:
            module = PatchGANDiscriminator(n_layers=train.disc_layers, base_channels=32, norm="batch").to(device).train()
            disc_optimizer = torch.optim.AdamW(module.parameters(), lr=train.lr, betas=(0.5, 0.9), weight_decay=0.0)
            discriminator = Discriminator(module, disc_optimizer, lambda step: lr_at(step, train))
        optimizer = torch.optim.AdamW(param_groups(model, train), lr=train.lr, betas=(0.9, 0.99), weight_decay=0.0)
        generator = torch.Generator().manual_seed(train.seed)
        restart = DeadCodeRestart(model.quantize, train.restart_window, generator, optimizer) if train.restart_dead_codes else None
        objective = VQGANLoss(model, train, generator, perceptual, discriminator.module if discriminator else None, restart)
        history = run_tiny_loop(
            train, pool, model, optimizer, objective, generator, name="vqgan tiny", discriminator=discriminator,
            track=track, log=log, checkpoints=checkpoints,
            details=lambda step, record: f"vq {record['vq']:.4f} codes/batch {record['codes']} lr {lr_at(step, train):.2e}")

        model.eval()
        summary: dict[str, Any] = {
            **summary_head(train, device, threads, started),
            "parameters": sum(p.numel() for p in model.parameters()),
            "first_loss": history[0]["loss"],
            **tail_means(history, {"final_loss": "loss", "final_train_l1": "l1", "final_vq_loss": "vq"}),
            "restarted_codes": restart.restarted if restart is not None else 0,
        }
        train_eval = evaluate(model, pool[: min(len(pool), 64)])
        summary["train_psnr"] = round(train_eval["psnr"], 3)
        if holdout is not None:
            held = evaluate(model, holdout)
            summary.update({"holdout_psnr": round(held["psnr"], 3), "holdout_l1": held["l1"], "holdout_images": len(holdout),
                            "codebook_usage": round(held["codebook_usage"], 4), "code_perplexity": round(held["code_perplexity"], 1)})
        summary["wall_seconds"] = round(time.time() - started, 2)
    if log is not None:
        log(f"vqgan tiny: {train.steps} steps in {summary['train_seconds']:.0f}s, train L1 {summary['final_train_l1']:.4f}"
            + (f", held-out PSNR {summary['holdout_psnr']:.2f} dB, codebook usage {summary['codebook_usage']:.1%}" if holdout is not None else ""))
    return model, arch, summary
