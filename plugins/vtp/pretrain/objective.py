"""The stage-1 objective as one module: one forward computes all three branches.

VTP trains the encoder with three separate student passes per step (CLIP images,
SSL multi-crops, reconstruction images), plus the text tower and the pixel decoder.
Putting every student computation in a single ``forward`` keeps DDP's contract
(one forward, one backward, every parameter reduced once) and lets the trainer wrap
exactly one module.

    L = λ_rec·(l1·L1 + p·LPIPS) + λ_ssl·(dino·DINO + ibot·iBOT + koleo·KoLeo) + λ_clip·CLIP

CLIP and SSL act on the D-dim normed features *before* the bottleneck; only the
reconstruction branch goes through it (``vision_bottleneck_ae_only``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tokbench.nn.layers import imagenet_normalize
from tokbench_vtp.model.vtp import VTPModel
from tokbench_vtp.pretrain.collate import PretrainBatch
from tokbench_vtp.pretrain.heads import DINOHead
from tokbench_vtp.pretrain.losses.clip import ClipLoss
from tokbench_vtp.pretrain.losses.dino import DINOLoss, dino_crop_pairs_loss
from tokbench_vtp.pretrain.losses.ibot import IBOTPatchLoss
from tokbench_vtp.pretrain.losses.koleo import KoLeoLoss
from tokbench_vtp.pretrain.losses.reconstruction import ReconstructionLoss
from tokbench_vtp.pretrain.recipe import PretrainRecipe


@dataclass
class TeacherTargets:
    """Teacher outputs for one step (no grad): DINO targets of the global crops
    (crop-major) and iBOT targets of the masked patches (order of ``masks[masks]``)."""

    cls_probs: Tensor
    patch_probs: Tensor


class Stage1Objective(nn.Module):
    """Student model + DINO head + the loss modules (whose centres are state)."""

    def __init__(self, model: VTPModel, head: DINOHead | None, recipe: PretrainRecipe, perceptual: nn.Module | None):
        super().__init__()
        self.model = model
        self.head = head
        loss = recipe.loss
        self.weights = loss
        self.drop = recipe.drop
        self.n_global = 2
        self.clip_loss = ClipLoss(gather=True, gather_with_grad=loss.clip_gather_with_grad, local_loss=loss.clip_local_loss)
        prototypes = recipe.head.prototypes
        self.dino_loss = DINOLoss(prototypes, student_temp=loss.student_temp)
        self.ibot_loss = IBOTPatchLoss(prototypes, student_temp=loss.student_temp)
        self.koleo_loss = KoLeoLoss()
        self.rec_loss = ReconstructionLoss(
            l1_weight=loss.l1, perceptual_weight=loss.perceptual if perceptual is not None else 0.0, perceptual=perceptual
        )

    def forward(self, batch: PretrainBatch, teacher: TeacherTargets | None) -> dict[str, Tensor]:
        w = self.weights
        parts: dict[str, Tensor] = {}
        total = batch.clip_images.new_zeros(())
        if w.clip > 0 and batch.clip_images.shape[0]:
            features = self.model.trunk.features(imagenet_normalize(batch.clip_images), drop_rate=self.drop.clip)
            image = F.normalize(self.model.clip_image_embedding(features), dim=-1)
            text = F.normalize(self.model.encode_text(batch.text_tokens), dim=-1)
            parts["clip"] = self.clip_loss(image, text, self.model.logit_scale.exp())
            total = total + w.clip * parts["clip"]
        if w.ssl > 0 and batch.global_crops.shape[0] and teacher is not None:
            crops = [imagenet_normalize(batch.global_crops)]
            masks: list[Tensor | None] = [batch.masks]
            if batch.local_crops.shape[0]:
                crops.append(imagenet_normalize(batch.local_crops))
                masks.append(None)
            outputs = self.model.trunk.forward_features(crops, masks, drop_rate=self.drop.ssl)
            global_out = outputs[0]
            masked_patches = global_out.patches[batch.masks]
            n_cls_global = global_out.cls.shape[0]
            cls_tokens = [global_out.cls] + ([outputs[1].cls] if len(outputs) > 1 else [])
            # One head call over CLS tokens and masked patches (shared head, one matmul chain).
            logits = self.head(torch.cat(cls_tokens + [masked_patches], dim=0))
            n_cls = sum(t.shape[0] for t in cls_tokens)
            student_global, student_local = logits[:n_cls_global], logits[n_cls_global:n_cls]
            dino = dino_crop_pairs_loss(student_global, student_local if student_local.shape[0] else None,
                                        teacher.cls_probs, self.n_global, student_temp=w.student_temp)
            parts["dino"] = dino.total
            ssl = w.dino * parts["dino"]
            if w.ibot > 0 and masked_patches.shape[0]:
                parts["ibot"] = self.ibot_loss.forward_masked(logits[n_cls:], teacher.patch_probs, batch.masks)
                ssl = ssl + w.ibot * parts["ibot"]
            if w.koleo > 0 and global_out.cls.shape[0] >= 2 * self.n_global:
                parts["koleo"] = sum(self.koleo_loss(chunk) for chunk in global_out.cls.chunk(self.n_global))
                ssl = ssl + w.koleo * parts["koleo"]
            parts["ssl"] = ssl
            total = total + w.ssl * ssl
        if w.rec > 0 and batch.rec_images.shape[0]:
            target = imagenet_normalize(batch.rec_images)
            reconstruction = self.model.decode_latents(self.model.trunk.latents(target, drop_rate=self.drop.rec))
            # The loss (LPIPS included) in fp32 whatever the autocast: same precision as stage 2.
            with torch.autocast(target.device.type, enabled=False):
                rec, rec_parts = self.rec_loss(reconstruction.float(), target.float())
            parts.update({f"rec_{k}": v for k, v in rec_parts.items()})
            parts["rec"] = rec
            total = total + w.rec * rec
        parts["total"] = total
        return parts


@torch.no_grad()
def teacher_targets(
    trunk: nn.Module, head: DINOHead, objective: Stage1Objective, batch: PretrainBatch, teacher_temp: float, centering: str
) -> TeacherTargets:
    """Teacher pass on the unmasked global crops; centring (softmax or Sinkhorn-Knopp) with the
    centre *before* this step's update, then the centres are updated (DINOv2 order)."""
    out = trunk.features(imagenet_normalize(batch.global_crops))
    patches = out.patches[batch.masks]
    logits = head(torch.cat([out.cls, patches], dim=0)).float()
    cls_logits, patch_logits = logits[: out.cls.shape[0]], logits[out.cls.shape[0]:]
    if centering == "sinkhorn":
        cls_probs = objective.dino_loss.sinkhorn_knopp_teacher(cls_logits, teacher_temp)
        # Called on every rank even with no masked patch here: Sinkhorn and the centre updates
        # are collectives (a rank skipping them would hang the others).
        n_masked = torch.tensor([patch_logits.shape[0]], device=patch_logits.device)
        patch_probs = objective.ibot_loss.sinkhorn_knopp_teacher(patch_logits, teacher_temp, n_masked)
    else:
        cls_probs = objective.dino_loss.softmax_center_teacher(cls_logits, teacher_temp)
        patch_probs = objective.ibot_loss.softmax_center_teacher(patch_logits, teacher_temp)
        objective.dino_loss.update_center(cls_logits)
        objective.ibot_loss.update_center(patch_logits)
    return TeacherTargets(cls_probs=cls_probs, patch_probs=patch_probs)
