"""Analytic LightningDiT compute (torch-free): multiply-accumulates of one forward pass.

MACs_fwd = N·C·p²·D                                  patch embedding
         + L·[N·(4D² + 3hD) + 2N²D + k·D²]           qkv + proj, SwiGLU (3hD; GELU MLP: 2hD),
                                                     QKᵀ and AV, per-sample adaLN (k = 6, or 4 without shift)
         + N·D·p²·C + 2D²                            output linear + final adaLN
         + 256·D + D²                                timestep MLP
(label lookup, norms, activations and softmax are not matmuls and are not counted; FLOPs = 2 × MACs,
as ``torch.utils.flop_counter`` counts). Training costs 3 forwards per image and step (forward +
backward), whatever CFG does at sampling time; sampling costs one forward per counted network
evaluation (``sampling_flops_per_image``).
"""

from __future__ import annotations

from typing import Any

FREQUENCY_EMBEDDING = 256


def forward_macs(depth: int, hidden_size: int, patch_size: int, in_channels: int, tokens: int,
                 mlp_hidden: int, use_swiglu: bool = True, wo_shift: bool = False) -> int:
    D, N, C, p, h, L = hidden_size, tokens, in_channels, patch_size, mlp_hidden, depth
    mlp = 3 * h * D if use_swiglu else 2 * h * D
    adaln = (4 if wo_shift else 6) * D * D
    per_block = N * (4 * D * D + mlp) + 2 * N * N * D + adaln
    return N * C * p * p * D + L * per_block + N * D * p * p * C + 2 * D * D + FREQUENCY_EMBEDDING * D + D * D


def config_macs(config: Any) -> int:
    """``forward_macs`` of a ``DiTConfig`` (or anything with the same fields)."""
    return forward_macs(config.depth, config.hidden_size, config.patch_size, config.in_channels, config.tokens,
                        config.mlp_hidden, config.use_swiglu, config.wo_shift)


def forward_flops(config: Any) -> int:
    return 2 * config_macs(config)


def training_flops_per_image(config: Any) -> int:
    """Forward + backward = 3 forwards per training image. This is what the FLOP budget counts;
    not counted: the optimizer update and the EMA (elementwise, O(parameters) per step, not per
    image), activation checkpointing's recomputed forward (an implementation choice), and the
    tokenizer's encoding of the training set (done once, cached, reported separately)."""
    return 3 * forward_flops(config)


def sampling_flops_per_image(config: Any, nfe: float) -> float:
    """FLOPs of sampling one image: ``nfe`` (network evaluations per image, counted while sampling,
    both halves of guidance included) forward passes."""
    return nfe * forward_flops(config)


def steps_for_budget(config: Any, budget_flops: float, batch_size: int) -> int:
    """Optimizer steps that spend ``budget_flops`` of training compute at ``batch_size``: the
    nearest whole step (the achieved FLOPs differ from the budget by at most half a step; record both)."""
    per_step = training_flops_per_image(config) * batch_size
    steps = int(budget_flops / per_step + 0.5)
    if steps < 1:
        raise ValueError(f"a FLOP budget of {budget_flops:.3g} is less than half a step ({per_step:.3g} FLOPs) of this model")
    return steps
