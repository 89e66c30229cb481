"""Stage 2: the tokenizer (trunk incl. bottleneck) is frozen and the pixel decoder is
fine-tuned with L1 + LPIPS + an adaptive-weight hinge GAN loss (VTP §3.2; the
discriminator is unspecified by the paper: PatchGAN by default, or a discriminator
on the frozen VTP trunk's own DINO-trained features).

Gradients of the decoder and discriminator are averaged across ranks by hand (two
small modules, two backward passes per step; simpler than two DDP wrappers)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager

import torch
from torch import Tensor, nn

from tokbench.nn.layers import imagenet_normalize
from tokbench.training.discriminators import FeatureDiscriminator, PatchGANDiscriminator
from tokbench.training.gan import adaptive_gan_weight, gan_start_factor, hinge_d_loss, hinge_g_loss
from tokbench_vtp.pretrain.distributed import all_reduce_mean_
from tokbench_vtp.pretrain.recipe import PretrainRecipe


class TrunkFeatures(nn.Module):
    """Patch tokens of a few blocks of a frozen copy of the trunk (the 'DINO' discriminator's backbone)."""

    def __init__(self, trunk: nn.Module, blocks: list[int]):
        super().__init__()
        self.trunk = trunk.requires_grad_(False).eval()
        self.blocks = blocks

    def forward(self, images: Tensor) -> list[Tensor]:
        return [x[:, 1:] for x in self.trunk.intermediate(images, self.blocks)]


def build_discriminator(kind: str, trunk: nn.Module, width: int, depth: int) -> nn.Module:
    if kind == "patchgan":
        return PatchGANDiscriminator(in_channels=3, base_channels=64, n_layers=3, norm="batch")
    import copy

    blocks = sorted({max(depth // 4 - 1, 0), max(depth // 2 - 1, 0), depth - 1})
    return FeatureDiscriminator(TrunkFeatures(copy.deepcopy(trunk), blocks), [width] * len(blocks))


class DecoderGANStage:
    """Stage 2 on its own inputs, not on the stage-1 trainer: the recipe, the frozen ``trunk``
    (``latents(images)``, and ``intermediate`` for the 'dino' discriminator), the ``decoder`` to
    fine-tune (with a ``last_layer`` weight), the image ``source``, and where it runs (``device``,
    ``rank`` / ``world_size``, ``autocast``: a context-manager factory for the frozen trunk's forward).
    ``state``: a :meth:`state_dict` to resume from; ``perceptual``: the LPIPS module (loaded by the
    caller, so a missing VGG16 file fails before stage 1)."""

    def __init__(self, recipe: PretrainRecipe, trunk: nn.Module, decoder: nn.Module, source, *,
                 device: torch.device, rank: int = 0, world_size: int = 1,
                 autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                 state: dict[str, Any] | None = None, perceptual: nn.Module | None = None):
        self.recipe, self.trunk, self.decoder = recipe, trunk, decoder
        self.device, self.world_size, self.autocast = device, world_size, autocast
        config = recipe.stage2
        self.config = config
        trunk.requires_grad_(False)
        self.discriminator = build_discriminator(config.discriminator, trunk, recipe.arch.vision_width,
                                                 recipe.arch.vision_depth).to(device)
        if world_size > 1 and device.type == "cuda":
            # One set of BatchNorm statistics across ranks (what every rank saves and resumes).
            self.discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(self.discriminator)
        self.generator_optimizer = torch.optim.AdamW(self.decoder.parameters(), lr=config.lr, betas=config.betas,
                                                     weight_decay=0.0)
        trainable = [p for p in self.discriminator.parameters() if p.requires_grad]
        self.discriminator_optimizer = torch.optim.AdamW(trainable, lr=config.discriminator_lr, betas=config.betas,
                                                         weight_decay=0.0)
        self.perceptual = perceptual if config.perceptual > 0 else None
        from tokbench_vtp.pretrain.data import build_loader
        from tokbench_vtp.pretrain.losses.reconstruction import ReconstructionLoss

        self.rec_loss = ReconstructionLoss(l1_weight=config.l1, perceptual_weight=config.perceptual if self.perceptual else 0.0,
                                           perceptual=self.perceptual)

        self.loader = build_loader(recipe, source, rank, world_size, stage2=True)
        if state is not None:
            self.load_state_dict(state)

    def train_step(self, global_step: int) -> dict[str, float]:
        config = self.config
        step = global_step - self.recipe.steps
        batch = next(self.loader).to(self.device, non_blocking=True)
        target = imagenet_normalize(batch.rec_images)
        with torch.no_grad(), self.autocast():
            latents = self.trunk.latents(target)
        self.decoder.train()
        reconstruction = self.decoder(latents.float()).float()
        rec, parts = self.rec_loss(reconstruction, target)
        record = {f"stage2_{name}": float(value) for name, value in parts.items()}
        factor = gan_start_factor(step, config.gan_start)
        total = rec
        if factor > 0 and config.gan_weight > 0:
            # Train mode for both passes (as taming): G is scored with the batch statistics D trains with.
            self.discriminator.train()
            g_loss = hinge_g_loss(self.discriminator(reconstruction))
            weight = adaptive_gan_weight(rec, g_loss, self.decoder.last_layer) if config.adaptive_weight else torch.ones(())
            total = total + factor * config.gan_weight * weight * g_loss
            record.update(stage2_g=float(g_loss.detach()), stage2_gan_weight=float(weight))
        self.generator_optimizer.zero_grad(set_to_none=True)
        total.backward()
        _average_gradients(self.decoder.parameters(), self.world_size)
        self.generator_optimizer.step()
        if factor > 0 and config.gan_weight > 0:
            d_loss = hinge_d_loss(self.discriminator(target), self.discriminator(reconstruction.detach()))
            self.discriminator_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            _average_gradients((p for p in self.discriminator.parameters() if p.requires_grad), self.world_size)
            self.discriminator_optimizer.step()
            record["stage2_d"] = float(d_loss.detach())
        record["stage2_total"] = float(total.detach())
        record["step"] = global_step + 1
        return record

    def state_dict(self) -> dict[str, Any]:
        return {
            "discriminator": self.discriminator.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "loader": self.loader.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        self.loader.load_state_dict(state["loader"])


def _average_gradients(params, world_size: int) -> None:
    if world_size == 1:
        return
    for param in params:
        if param.grad is not None:
            all_reduce_mean_(param.grad)
