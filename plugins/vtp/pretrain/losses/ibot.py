"""iBOT masked-patch loss (DINOv2 recipe), with its own teacher centring.

The student sees masked global crops (mask token substituted); the teacher sees them
unmasked. Both pass their patch tokens through the head shared with DINO, and only the
masked positions enter the loss. The teacher targets are centred with a centre of their
own (patch statistics differ from CLS statistics) or produced by Sinkhorn-Knopp over all
masked patches of the global batch.
"""

from __future__ import annotations

import torch

from tokbench_vtp.pretrain.losses.dino import TeacherCentering, pair_cross_entropy, sinkhorn_knopp

__all__ = ["IBOTPatchLoss", "masked_patch_weights"]


def masked_patch_weights(masks_flat: torch.Tensor) -> torch.Tensor:
    """Weight ``1 / (masked patches in its image)`` for each masked patch, shape ``(M,)``.

    Ordered like ``masks_flat[masks_flat]`` (image-major, then patch index). Images with
    no masked patch contribute no entries.
    """
    per_image = masks_flat.sum(dim=-1).clamp(min=1).to(torch.float32)
    return (1.0 / per_image).unsqueeze(-1).expand_as(masks_flat)[masks_flat]


class IBOTPatchLoss(TeacherCentering):
    """Cross-entropy between student and teacher head outputs at masked patch positions."""

    def __init__(self, patch_out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__(patch_out_dim, student_temp, center_momentum)

    @property
    def patch_out_dim(self) -> int:
        return self.out_dim

    @torch.no_grad()
    def sinkhorn_knopp_teacher(
        self,
        teacher_logits: torch.Tensor,
        teacher_temp: float,
        n_masked_patches_tensor: torch.Tensor | int | None = None,
        n_iterations: int = 3,
    ) -> torch.Tensor:
        """Sinkhorn-Knopp targets for this rank's ``(M, K)`` masked teacher patch logits.

        ``n_masked_patches_tensor`` is this rank's number of masked patches (the rows of
        ``teacher_logits``, which must hold only valid masked patches); it is summed over
        ranks to give the global sample count. See :func:`sinkhorn_knopp` for the
        normalisation (every returned row sums to 1; prototype marginals ≈ M_global / K).
        """
        return sinkhorn_knopp(teacher_logits, teacher_temp, n_iterations, n_samples=n_masked_patches_tensor)

    def forward_masked(
        self,
        student_patch_logits_masked: torch.Tensor,
        teacher_patch_probs_masked: torch.Tensor,
        student_masks_flat: torch.Tensor,
        n_masked_patches: int | None = None,
        masks_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """iBOT loss with DINOv2's per-image normalisation.

        ``student_patch_logits_masked`` and ``teacher_patch_probs_masked`` are ``(M, K)``,
        row ``m`` being the ``m``-th ``True`` of ``student_masks_flat`` ``(B, N)`` in
        row-major order (image-major, then patch). Each masked patch's cross-entropy is
        weighted by ``1 / (masked patches in its image)``; the weighted sum is divided by
        ``B`` (all images, masked or not). So every image with a mask contributes the mean
        CE over its masked patches and the loss is the mean of those over the ``B``
        images. ``n_masked_patches`` keeps only the first rows (for padded buffers);
        ``masks_weight`` (``(M,)``) overrides the weights computed from the masks.
        """
        if student_masks_flat.ndim != 2 or student_masks_flat.dtype != torch.bool:
            raise ValueError(
                f"student_masks_flat must be a (B, N) bool tensor, got {student_masks_flat.dtype} "
                f"of shape {tuple(student_masks_flat.shape)}"
            )
        if student_patch_logits_masked.shape != teacher_patch_probs_masked.shape:
            raise ValueError(
                f"student logits {tuple(student_patch_logits_masked.shape)} and teacher probabilities "
                f"{tuple(teacher_patch_probs_masked.shape)} must have the same (M, K) shape"
            )
        ce = pair_cross_entropy(student_patch_logits_masked, teacher_patch_probs_masked, self.student_temp)
        if n_masked_patches is not None:
            ce = ce[:n_masked_patches]
        if masks_weight is None:
            masks_weight = masked_patch_weights(student_masks_flat)
        if masks_weight.shape != ce.shape:
            raise ValueError(
                f"{ce.shape[0]} masked-patch rows but {masks_weight.shape[0]} weights: rows must be the "
                "True entries of student_masks_flat (pass n_masked_patches to drop padding rows)"
            )
        return (ce * masks_weight.to(ce.dtype)).sum() / student_masks_flat.shape[0]
