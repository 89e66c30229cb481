"""Adversarial losses and the taming-style adaptive generator weight.

Every loss takes discriminator logits as one tensor or as a list of tensors (one per head
of a multi-scale / multi-layer discriminator). For a list, the loss is the mean of the
per-head losses, so each head counts equally whatever its number of logits; when all
heads emit the same number of logits (ViT layers of one feature network) this equals the
mean over the concatenated logits used by StyleGAN-T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "adaptive_gan_weight",
    "gan_start_factor",
    "hinge_d_loss",
    "hinge_g_loss",
    "non_saturating_g_loss",
    "vanilla_d_loss",
]

Logits = torch.Tensor | Sequence[torch.Tensor]


def _heads(logits: Logits, name: str) -> list[torch.Tensor]:
    heads = [logits] if isinstance(logits, torch.Tensor) else list(logits)
    if not heads:
        raise ValueError(f"{name}: got an empty list of logits")
    for head in heads:
        if not isinstance(head, torch.Tensor):
            raise TypeError(f"{name}: logits must be tensors, got {type(head).__name__}")
    return heads


def _mean_over_heads(fn: Callable[[torch.Tensor], torch.Tensor], logits: Logits, name: str) -> torch.Tensor:
    heads = _heads(logits, name)
    return torch.stack([fn(head).mean() for head in heads]).mean()


def _paired(real: Logits, fake: Logits, name: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    real_heads, fake_heads = _heads(real, name), _heads(fake, name)
    if len(real_heads) != len(fake_heads):
        raise ValueError(f"{name}: {len(real_heads)} real heads but {len(fake_heads)} fake heads")
    return real_heads, fake_heads


def hinge_d_loss(logits_real: Logits, logits_fake: Logits) -> torch.Tensor:
    """Discriminator hinge loss ``0.5 * (mean(relu(1 - D(x))) + mean(relu(1 + D(x̂))))`` (taming)."""
    real, fake = _paired(logits_real, logits_fake, "hinge_d_loss")
    loss_real = _mean_over_heads(lambda r: F.relu(1.0 - r), real, "hinge_d_loss")
    loss_fake = _mean_over_heads(lambda f: F.relu(1.0 + f), fake, "hinge_d_loss")
    return 0.5 * (loss_real + loss_fake)


def vanilla_d_loss(logits_real: Logits, logits_fake: Logits) -> torch.Tensor:
    """Discriminator logistic loss ``0.5 * (mean(softplus(-D(x))) + mean(softplus(D(x̂))))`` (taming)."""
    real, fake = _paired(logits_real, logits_fake, "vanilla_d_loss")
    loss_real = _mean_over_heads(lambda r: F.softplus(-r), real, "vanilla_d_loss")
    loss_fake = _mean_over_heads(F.softplus, fake, "vanilla_d_loss")
    return 0.5 * (loss_real + loss_fake)


def hinge_g_loss(logits_fake: Logits) -> torch.Tensor:
    """Generator loss paired with the hinge discriminator: ``-mean(D(x̂))`` (taming, RAE)."""
    return _mean_over_heads(torch.neg, logits_fake, "hinge_g_loss")


def non_saturating_g_loss(logits_fake: Logits) -> torch.Tensor:
    """Non-saturating generator loss ``mean(softplus(-D(x̂)))`` = ``-mean(log sigmoid(D(x̂)))``."""
    return _mean_over_heads(lambda f: F.softplus(-f), logits_fake, "non_saturating_g_loss")


def adaptive_gan_weight(
    rec_loss: torch.Tensor,
    gan_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Taming's adaptive weight ``||∇ rec|| / (||∇ gan|| + eps)`` at ``last_layer``, clamped to [0, max_weight].

    Balances the GAN term against the reconstruction term by the size of their gradients at
    the decoder's output weight (taming ``decoder.conv_out.weight``, RAE ``decoder_pred.weight``).
    Both graphs are retained, so the caller can still backpropagate the total loss; the result is
    detached (a 0-dim tensor) and is to be multiplied by the configured discriminator weight.
    """
    for name, loss in (("rec_loss", rec_loss), ("gan_loss", gan_loss)):
        if not loss.requires_grad:
            raise ValueError(
                f"adaptive_gan_weight: {name} does not require grad; call it during training, with "
                "autograd enabled, before backward()"
            )
    if not last_layer.requires_grad:
        raise ValueError(
            "adaptive_gan_weight: last_layer does not require grad; pass the decoder's trainable last weight"
        )
    rec_grad, = torch.autograd.grad(rec_loss, last_layer, retain_graph=True, allow_unused=True)
    gan_grad, = torch.autograd.grad(gan_loss, last_layer, retain_graph=True, allow_unused=True)
    for name, grad in (("rec_loss", rec_grad), ("gan_loss", gan_grad)):
        if grad is None:
            raise ValueError(
                f"adaptive_gan_weight: {name} does not depend on last_layer; pass the weight of the "
                "layer that produces the reconstruction"
            )
    weight = torch.linalg.vector_norm(rec_grad) / (torch.linalg.vector_norm(gan_grad) + eps)
    return weight.clamp(0.0, max_weight).detach()


def gan_start_factor(step: int, start_step: int) -> float:
    """``0.0`` before ``start_step``, ``1.0`` from it on (taming's ``adopt_weight``: on at ``step == start_step``)."""
    return 1.0 if step >= start_step else 0.0
