"""Symmetric softmax InfoNCE (CLIP / OpenCLIP ``ClipLoss``) with cross-rank gathering.

VTP trains its CLIP branch "following CLIP" on one 16k global batch, so the negatives of
every pair must come from all ranks: features are gathered before the logits are formed.

Gathering options (OpenCLIP semantics):

- ``gather=False``: every rank uses only its local batch (negatives are local).
- ``gather_with_grad=True`` (default here): features are gathered with
  ``torch.distributed.nn`` so gradients flow back to the rank that produced them. With
  DDP's gradient *averaging* this reproduces the single-process full-batch gradient
  exactly (each rank's slice receives the sum over ranks, i.e. ``world_size`` times its
  share, and DDP divides by ``world_size``).
- ``gather_with_grad=False`` (the OpenCLIP default): gathered copies carry no gradient;
  without ``local_loss`` the rank's own slice is put back with its graph, so each rank
  back-propagates only through its own features. Under DDP averaging the encoder
  gradients are then ``1/world_size`` of the full-batch gradient (``logit_scale``'s is
  not scaled). With ``local_loss`` no column carries a gradient at all.
- ``local_loss=True``: each rank computes the logits of its *local* rows against all
  gathered columns, with labels offset by ``rank * B_local``. The loss value on a rank
  is then the local part; its mean over ranks equals the full-batch loss. Without it
  every rank computes the full ``(N, N)`` global logits (same value on every rank).

All ranks must hold the same local batch size (``all_gather`` needs equal shapes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tokbench_vtp.pretrain.distributed import all_gather_no_grad, all_gather_with_grad, world_info

__all__ = ["ClipLoss", "clamp_logit_scale_"]


class ClipLoss(nn.Module):
    """CLIP contrastive loss: mean of image→text and text→image cross-entropies."""

    def __init__(
        self,
        gather: bool = True,
        gather_with_grad: bool = True,
        local_loss: bool = False,
    ) -> None:
        super().__init__()
        self.gather = gather
        self.gather_with_grad = gather_with_grad
        self.local_loss = local_loss

    def _gather(self, features: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        if self.gather_with_grad:
            return all_gather_with_grad(features)
        gathered = all_gather_no_grad(features)
        if self.local_loss:
            return gathered
        # Put the local slice back with its graph so this rank's features get gradients.
        b = features.shape[0]
        return torch.cat([gathered[: rank * b], features, gathered[(rank + 1) * b :]], dim=0)

    def logits(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits_per_image, logits_per_text, labels)`` for this rank."""
        rank, world_size = world_info()
        b = image_features.shape[0]
        device = image_features.device
        if not self.gather or world_size == 1:
            per_image = logit_scale * image_features @ text_features.T
            labels = torch.arange(b, device=device)
            return per_image, per_image.T, labels
        all_image = self._gather(image_features, rank, world_size)
        all_text = self._gather(text_features, rank, world_size)
        if self.local_loss:
            per_image = logit_scale * image_features @ all_text.T
            per_text = logit_scale * text_features @ all_image.T
            labels = torch.arange(b, device=device) + rank * b
            return per_image, per_text, labels
        per_image = logit_scale * all_image @ all_text.T
        labels = torch.arange(per_image.shape[0], device=device)
        return per_image, per_image.T, labels

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
    ) -> torch.Tensor:
        """Loss from L2-normalised ``(B, E)`` features and the *exponentiated* scale.

        ``logit_scale`` is ``exp(param)`` (VTP's ``forward_clip`` already returns it so),
        a scalar tensor; row ``i`` of the image features is paired with row ``i`` of the
        text features.
        """
        if image_features.ndim != 2 or image_features.shape != text_features.shape:
            raise ValueError(
                "ClipLoss expects image_features and text_features of the same (B, E) shape, "
                f"got {tuple(image_features.shape)} and {tuple(text_features.shape)}"
            )
        if logit_scale.numel() != 1:
            raise ValueError(
                f"ClipLoss expects a scalar logit_scale (already exp'd), got shape {tuple(logit_scale.shape)}"
            )
        per_image, per_text, labels = self.logits(image_features, text_features, logit_scale)
        return (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2


@torch.no_grad()
def clamp_logit_scale_(param: torch.Tensor, max_value: float = math.log(100)) -> torch.Tensor:
    """Clamp the raw (log-space) ``logit_scale`` parameter to ``[0, max_value]`` in place.

    OpenCLIP does this after every optimiser step so the temperature never drops below
    1/100; call it on the parameter, not on its exponential. Returns ``param``.
    """
    return param.clamp_(0, max_value)
