"""Decoder training on a frozen encoder (RAE stage 1), and the ``tiny`` preset built from it.

The tiny preset is two store artifacts:

1. the encoder: a VTP-recipe ViT pretrained with the DINO/iBOT loss only
   (``presets/tiny-encoder.yaml``), trained and cached by the vtp plugin (``tokbench_vtp.api``);
2. the decoder: :func:`train_decoder` on 64 px ``shapes`` through that frozen encoder, written as
   ``model.pt`` (the released GeneralDecoder layout) + ``stat.pt`` (per-element statistics).

The decoder trains in the shared loop (:mod:`tokbench.training.loop`); this module supplies the
model, the loss (:class:`DecoderLoss`) and the settings.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from tokbench.errors import MissingAssetError
from tokbench.runtime.timing import phase
from tokbench.training.loop import Checkpoints, Discriminator, TrainingLoop
from tokbench.training.tiny import ShuffledIndices, sensible_threads, shapes_sources, summary_head, tail_means
from tokbench_rae.decoder import GeneralDecoder
from tokbench_rae.encoder import FrozenEncoder, VTPTrunkEncoder
from tokbench_rae.latent_stats import compute_stats, write_stats
from tokbench_rae.params import DecoderTrainParams, RAEParams, vtp_api
from tokbench_rae.pipeline import decode_pixels, encode_tokens, tokens_to_grid
from tokbench_rae.sizes import decoder_config

KIND = "tokenizer-checkpoint"
#: bump when the training code changes what a preset produces
TRAINING_FORMAT = 1
SUMMARY = "training.json"
#: RAE's DiffAugment policy (probability 1, no cutout)
RAE_AUGMENT = ("color", "translation")
logger = logging.getLogger("tokbench_rae")


# ---- pieces ----------------------------------------------------------------------------------------
def noise_augment(tokens: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
    """RAE's ``noising``: z + σ·ε with σ ~ U(0, τ) drawn once per sample and ε ~ N(0, I), on the raw tokens."""
    if tau <= 0:
        return tokens
    shape = (tokens.shape[0],) + (1,) * (tokens.dim() - 1)
    sigma = tau * torch.rand(shape, generator=generator, device="cpu").to(tokens.device, tokens.dtype)
    noise = torch.randn(tokens.shape, generator=generator, device="cpu").to(tokens.device, tokens.dtype)
    return tokens + sigma * noise


def perceptual_loss(device: torch.device) -> nn.Module:
    """LPIPS-VGG on [0, 1] images with the locally provided VGG16 (never downloaded, never skipped)."""
    from tokbench.metrics.errors import MetricUnavailable
    from tokbench.training.perceptual import LPIPSLoss

    try:
        return LPIPSLoss(input_space="unit").to(device)
    except MetricUnavailable as error:
        raise MissingAssetError(f"train.lpips_weight > 0 needs the VGG16 weights of LPIPS: {error} (or set `train: {{lpips_weight: 0}}`)") from error


@torch.no_grad()
def evaluate(encoder: FrozenEncoder, decoder: GeneralDecoder, images_uint8: Tensor, batch_size: int = 64) -> float:
    """Mean PSNR (dB, 8-bit, rounded) of noise-free reconstructions."""
    from tokbench.metrics.image_quality import mean_psnr, psnr_uint8, to_uint8

    device = next(decoder.parameters()).device
    grid = decoder.config.grid
    scores = []
    for chunk in images_uint8.split(batch_size):
        x = chunk.to(device).float() / 255
        recon = decode_pixels(decoder, tokens_to_grid(encode_tokens(encoder, x, grid), grid))
        scores.append(psnr_uint8(chunk.to(device), to_uint8(recon.clamp(0, 1))).cpu())
    return mean_psnr(torch.cat(scores))


@torch.no_grad()
def encode_pool(encoder: FrozenEncoder, images_uint8: Tensor, grid: int, batch_size: int = 128) -> Tensor:
    """Raw latent tokens (N, grid², C) of uint8 images, in batches."""
    return torch.cat([encode_tokens(encoder, chunk.float() / 255, grid) for chunk in images_uint8.split(batch_size)])


def decoder_training_flops(train: DecoderTrainParams, encoder: FrozenEncoder, latent_dim: int) -> float:
    """Approximate FLOPs of decoder training: 3 x forward for the decoder (forward + backward),
    one encoder forward (2 · params · tokens) per image; the small discriminator is ignored."""
    config = decoder_config(train.decoder_size, latent_dim, train.patch_size, train.grid)
    encoder_params = sum(p.numel() for p in encoder.parameters())
    per_image = 3 * 2 * config.forward_macs() + 2 * encoder_params * (config.num_patches + encoder.prefix_tokens)
    return float(per_image * train.batch_size * train.steps)


# ---- the loss and the run --------------------------------------------------------------------------
class DecoderLoss:
    """RAE's decoder loss on a batch of indices into the image pool: L1 (+ ``lpips_weight`` x LPIPS) of
    the reconstruction of the (noise-augmented) frozen tokens, + from ``gan_start`` the hinge GAN loss
    with the adaptive weight; the PatchGAN's hinge loss on DiffAugment-ed real and 8-bit fake images
    from ``disc_start``."""

    def __init__(self, decoder: GeneralDecoder, pool: Tensor, tokens_pool: Tensor, train: DecoderTrainParams,
                 generator: torch.Generator, perceptual: nn.Module | None = None, disc: nn.Module | None = None):
        self.decoder, self.pool, self.tokens_pool, self.train = decoder, pool, tokens_pool, train
        self.generator, self.perceptual, self.disc = generator, perceptual, disc
        self.step_outputs: dict[str, Tensor] = {}

    def loss(self, step: int, index: Tensor) -> tuple[Tensor, dict[str, float]]:
        from tokbench.training.discriminators import diff_augment
        from tokbench.training.gan import adaptive_gan_weight, hinge_g_loss

        train, disc = self.train, self.disc
        index = index.to(self.pool.device)
        x = self.pool[index].float() / 255
        tokens = noise_augment(self.tokens_pool[index], train.noise_tau, self.generator)
        recon = decode_pixels(self.decoder, tokens_to_grid(tokens, train.grid))
        l1 = (recon - x).abs().mean()
        rec_total = l1
        record: dict[str, float] = {"l1": l1.item()}
        if self.perceptual is not None:
            lpips = self.perceptual(recon, x)
            rec_total = rec_total + train.lpips_weight * lpips
            record["lpips"] = lpips.item()
        loss = rec_total
        if disc is not None and step >= train.gan_start:
            disc.eval().requires_grad_(False)
            g_loss = hinge_g_loss(disc(diff_augment(recon * 2 - 1, RAE_AUGMENT, generator=self.generator)))
            weight = adaptive_gan_weight(rec_total, g_loss, self.decoder.decoder_pred.weight,
                                         max_weight=train.max_gan_weight, eps=1e-6)
            loss = rec_total + train.gan_weight * weight * g_loss
            record.update(g_loss=g_loss.item(), gan_weight=float(weight))
        self.step_outputs = {"x": x, "recon": recon}
        return loss, record

    def discriminator_loss(self, step: int) -> Tensor | None:
        from tokbench.training.discriminators import diff_augment
        from tokbench.training.gan import hinge_d_loss

        outputs, self.step_outputs = self.step_outputs, {}
        if self.disc is None or step < self.train.disc_start:
            return None
        self.disc.train().requires_grad_(True)
        # RAE quantises fakes to 8 bits for the D step (real images are 8-bit too).
        fake = ((outputs["recon"].detach().clamp(0, 1) * 255).round() / 255) * 2 - 1
        real = outputs["x"] * 2 - 1
        return hinge_d_loss(self.disc(diff_augment(real, RAE_AUGMENT, generator=self.generator)),
                            self.disc(diff_augment(fake, RAE_AUGMENT, generator=self.generator)))


def train_decoder(
    encoder: FrozenEncoder,
    train: DecoderTrainParams,
    images: Tensor,
    holdout: Tensor | None = None,
    *,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
    checkpoints: Checkpoints | None = None,
) -> tuple[GeneralDecoder, dict[str, Tensor], dict[str, Any]]:
    """Train a decoder on ``encoder``'s frozen tokens of ``images`` (uint8 (N, 3, H, W)).

    Returns the EMA decoder (eval), the per-element latent statistics ({'mean', 'var'} (C, h, w))
    and a summary (losses, held-out PSNR, wall time). ``checkpoints``: where to save (and resume
    from) the loop's state."""
    from tokbench.training.discriminators import PatchGANDiscriminator
    from tokbench.training.schedules import CosineSchedule

    started = time.time()
    device = torch.device(device)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"training images must be uint8 (N, 3, H, W), got {tuple(images.shape)} {images.dtype}")
    if images.shape[-1] != train.resolution or images.shape[-2] != train.resolution:
        raise ValueError(f"training images are {tuple(images.shape[-2:])} but train.resolution is {train.resolution}")
    grid = train.grid
    use_gan = train.gan_weight > 0 and train.gan_start < train.steps
    perceptual = perceptual_loss(device) if train.lpips_weight > 0 else None

    with sensible_threads() as threads:
        torch.manual_seed(train.seed)
        encoder = encoder.to(device).eval().requires_grad_(False)
        decoder = GeneralDecoder(decoder_config(train.decoder_size, encoder.width, train.patch_size, grid))
        decoder.init_weights()
        decoder = decoder.to(device).train()
        trainable = [p for p in decoder.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=train.lr, betas=train.betas, weight_decay=train.weight_decay)
        schedule = CosineSchedule(train.lr, train.lr * train.min_lr_ratio, train.steps,
                                  warmup_steps=min(train.warmup_steps, train.steps - 1))
        discriminator = None
        if use_gan:
            disc = PatchGANDiscriminator(base_channels=train.disc_channels, n_layers=train.disc_layers).to(device)
            disc_optimizer = torch.optim.AdamW(disc.parameters(), lr=train.disc_lr, betas=train.betas, weight_decay=0.0)
            discriminator = Discriminator(disc, disc_optimizer, lambda step: train.disc_lr * schedule(step) / train.lr)
        generator = torch.Generator().manual_seed(train.seed)  # data order, noise, augmentation
        pool = images.to(device)
        # The encoder is frozen and images are not augmented, so each image is encoded once
        # (the per-step noise is the augmentation); the statistics come from the same tokens.
        tokens_pool = encode_pool(encoder, pool, grid)
        encode_seconds = time.time() - started
        objective = DecoderLoss(decoder, pool, tokens_pool, train, generator, perceptual,
                                discriminator.module if discriminator is not None else None)
        loop = TrainingLoop(decoder, optimizer, schedule, train.steps, ShuffledIndices(len(pool), train.batch_size, generator),
                            objective, ema_decay=train.ema_decay, discriminator=discriminator, generators=[generator],
                            name="rae decoder", details=lambda step, record: f"lr {schedule(step):.2e}", log=log,
                            checkpoints=checkpoints, identity=train.cache_inputs())
        history = loop.run()
        ema = loop.ema

        decoder.eval()
        summary: dict[str, Any] = {
            **summary_head(train, device, threads, started),
            "encode_seconds": round(encode_seconds, 2),
            "decoder_parameters": sum(p.numel() for p in ema.parameters()),
            "first_l1": history[0]["l1"],
            **tail_means(history, {"final_train_l1": "l1"}),
            "train_psnr": round(evaluate(encoder, ema, images[: min(len(images), 64)]), 3),
        }
        if holdout is not None:
            summary["holdout_psnr"] = round(evaluate(encoder, ema, holdout), 3)
            summary["holdout_psnr_raw_weights"] = round(evaluate(encoder, decoder, holdout), 3)
            summary["holdout_images"] = len(holdout)
        stats = compute_stats(tokens_to_grid(chunk, grid) for chunk in tokens_pool[: train.stats_images].split(256))
        summary["wall_seconds"] = round(time.time() - started, 2)
    if log is not None:
        log(f"rae decoder: {train.steps} steps in {summary['train_seconds']:.0f}s"
            + (f", held-out PSNR {summary['holdout_psnr']:.2f} dB" if "holdout_psnr" in summary else ""))
    return ema, stats, summary


# ---- the tiny preset ---------------------------------------------------------------------------------
def load_vtp_encoder(directory: str | Path) -> VTPTrunkEncoder:
    """The frozen trunk of a VTP-format checkpoint directory (text tower and pixel decoder not loaded)."""
    return VTPTrunkEncoder(vtp_api().load_trunk(directory))


def shapes_images(train: DecoderTrainParams, context) -> tuple[Tensor, Tensor]:
    """(training images, held-out images) as uint8 tensors, from the built-in ``shapes`` dataset."""
    from tokbench.data.loader import load_images

    train_set, holdout = shapes_sources(train, context)
    return load_images(train_set, range(len(train_set))), load_images(holdout, range(len(holdout)))


def tiny_artifacts(params: RAEParams, context) -> tuple[Path, Path, float]:
    """(encoder directory, decoder directory, total training FLOPs) of the tiny preset, from the store
    (each trained once: the encoder by the VTP trainer, the decoder here)."""
    recipe = params.encoder_recipe()
    encoder_dir = vtp_api().pretrained_checkpoint(recipe, context)
    train = params.train
    key_inputs = {"family": "tokbench_rae", "format": TRAINING_FORMAT, "encoder": recipe.cache_inputs(),
                  "train": train.cache_inputs()}
    encoder_flops = recipe.training_flops()["total"] * recipe.steps

    def produce(target: Path) -> dict[str, Any]:
        encoder = load_vtp_encoder(encoder_dir)
        images, holdout = shapes_images(train, context)
        with phase("tokenizer training", f"rae decoder, {train.steps} steps"):
            decoder, stats, summary = train_decoder(encoder, train, images, holdout, device=context.device, log=logger.info,
                                                    checkpoints=Checkpoints.for_artifact(context, key_inputs, KIND))
        torch.save({k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}, target / "model.pt")
        write_stats(stats, target / "stat.pt")
        summary["decoder_training_flops"] = decoder_training_flops(train, encoder, encoder.width)
        summary["encoder_training_flops"] = encoder_flops
        (target / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True))
        return {"training": summary}

    decoder_dir = context.cached(key_inputs, KIND, produce, label="rae tiny decoder")
    summary = json.loads((decoder_dir / SUMMARY).read_text())
    return encoder_dir, decoder_dir, float(summary["encoder_training_flops"] + summary["decoder_training_flops"])
