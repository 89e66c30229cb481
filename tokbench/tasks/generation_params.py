"""Parameters of the equal-FLOPs generation task (torch-free: validated in suites)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from tokbench.errors import MissingAssetError, TokbenchError

GenerationMetric = Literal["gfid", "kid", "precision", "recall", "inception_score"]


class LadderStop(BaseModel):
    """Successive halving over a ladder (docs/ladders.md): stop a tokenizer's generator at a rung
    when its gFID there is worse than the leader's with at least ``probability``."""

    model_config = ConfigDict(extra="forbid")

    probability: float = Field(0.95, gt=0.5, lt=1, description="stop when P(worse than the leader) is at least this")
    metric: Literal["gfid"] = "gfid"


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # ---- the generator and its compute ------------------------------------------------------
    model: Literal["micro", "tiny", "B", "L", "XL", "1p0B", "1p6B"] = Field("XL", description="LightningDiT size")
    target_tokens: PositiveInt = Field(
        256, description="patch size per tokenizer so that every latent gives exactly this many tokens (f16 at 256 px: p = 1)"
    )
    token_match: Literal["exact", "nearest"] = Field(
        "exact", description="exact: a tokenizer whose latent grid cannot give target_tokens fails before training; "
        "nearest: the nearest count (recorded in details.tokens, footnoted in tables)"
    )
    training_flops: PositiveFloat | None = Field(
        None, description="the budget every tokenizer's generator spends (steps = budget / (3 x forward FLOPs x batch))"
    )
    steps: PositiveInt | None = Field(None, description="fixed optimizer steps instead of a FLOP budget")
    ladder: list[float] = Field(
        default_factory=list,
        description="budget ladder (docs/ladders.md): fractions of training_flops, sorted, in (0, 1); the EMA weights at "
        "each rung's step are sampled and scored inside the one training run, each rung its own stored record",
    )
    ladder_stop: LadderStop | None = Field(
        None, description="successive halving: stop a generator at a rung where it is worse than the leader "
        "with at least this probability (needs a ladder)",
    )
    batch_size: PositiveInt = 1024
    lr: PositiveFloat = 2e-4
    ema_decay: float = Field(0.9999, ge=0, lt=1)
    class_dropout: float = Field(0.1, ge=0, lt=1)
    cosine_loss: bool = True
    grad_clip: PositiveFloat | None = None
    seed: int = Field(0, ge=0)
    precision: Literal["fp32", "bf16"] = Field("bf16", description="autocast of training and sampling on GPU (CPU runs fp32)")
    # ---- execution (speed and memory only: not part of any result key) -------------------------
    compile: bool = Field(False, description="torch.compile the DiT for training and sampling (compiling takes minutes)")
    activation_checkpointing: bool = Field(
        False, description="recompute each DiT block in the backward pass: much less memory, about a third more compute"
    )
    fused_optimizer: bool = Field(True, description="fused single-kernel AdamW on GPU")
    latent_normalization: Literal["per-channel", "tokenizer", "none"] = Field(
        "per-channel",
        description="per-channel: mean/std of the training latents (LightningDiT); tokenizer: the plugin's own "
        "statistics; none: raw latents",
    )

    # ---- noise shift (logit units toward noise; 'auto' = RAE's rule from the latent size) ----------
    train_shift: float | Literal["auto"] = "auto"
    train_sigma: NonNegativeFloat = Field(1.0, description="logit-normal sigma of training times (0: uniform)")
    sample_shift: float | Literal["auto"] = "auto"

    # ---- sampling ------------------------------------------------------------------------------------
    sampler: Literal["euler", "heun", "adaptive"] = "euler"
    sample_steps: PositiveInt = Field(249, description="ODE steps (LightningDiT: 250 grid points = 249 Euler steps)")
    cfg_scale: float = Field(1.0, ge=1.0)
    cfg_interval_start: float = Field(0.0, ge=0, le=1, description="no guidance for t below this (high noise)")
    cfg_channels: Literal["all", "legacy3"] = Field(
        "all", description="legacy3 guides only the first 3 channels, as the released LightningDiT/VTP code (reproduction only)"
    )
    num_samples: PositiveInt = Field(50_000, description="generated images scored (FID depends on N)")
    labels: Literal["balanced", "uniform"] = Field("balanced", description="balanced: equal count per class, shuffled")
    sample_batch_size: PositiveInt = 64

    # ---- evaluation ----------------------------------------------------------------------------------
    metrics: list[GenerationMetric] = Field(default_factory=lambda: ["gfid", "kid", "precision", "recall", "inception_score"])
    num_reference: PositiveInt | None = Field(None, description="reference images from the evaluation dataset (default: all)")
    extract_batch_size: PositiveInt = 64
    shard_size: PositiveInt = Field(1024, description="images per committed shard of latents / features")
    fid_weights: str | None = None
    reference_batch: str | None = Field(
        None,
        description="an ADM evaluator reference batch (.npz, e.g. VIRTUAL_imagenet256_labeled.npz): gFID against its "
        "`mu`/`sigma`, precision/recall against its `arr_0` images; default: the evaluation dataset's images",
    )

    @model_validator(mode="after")
    def _check(self) -> "GenerationParams":
        if (self.training_flops is None) == (self.steps is None):
            raise ValueError("give exactly one of training_flops (equal-compute comparisons) or steps")
        if self.ladder:
            if self.training_flops is None:
                raise ValueError("ladder: rungs are fractions of training_flops; set training_flops (not steps)")
            if any(not 0 < f < 1 for f in self.ladder) or list(self.ladder) != sorted(set(self.ladder)):
                raise ValueError(f"ladder must be distinct fractions of training_flops in (0, 1), sorted ascending "
                                 f"(e.g. [0.05, 0.1, 0.25, 0.5]), got {self.ladder}")
        if self.ladder_stop is not None and not self.ladder:
            raise ValueError("ladder_stop needs a ladder: the decision to stop is made at its rungs")
        if self.reference_batch is not None and not Path(self.reference_batch).expanduser().is_file():
            raise MissingAssetError(
                f"reference_batch {self.reference_batch!r} does not exist; ADM's ImageNet-256 reference is "
                "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/VIRTUAL_imagenet256_labeled.npz "
                "(download it on a machine with internet and give its local path)"
            )
        return self


def patch_for_tokens(tokenizer: str, channels: int, side: int, target_tokens: int,
                     match: Literal["exact", "nearest"] = "exact") -> int:
    """The patch size (a divisor of the latent ``side``) giving ``target_tokens`` tokens. ``exact``:
    raise, naming the possible counts, when none does; ``nearest``: the nearest count (ties: the
    smaller patch, i.e. more tokens)."""
    patches = [p for p in range(1, side + 1) if side % p == 0]
    best = min(patches, key=lambda p: (abs((side // p) ** 2 - target_tokens), p))
    if match == "exact" and (side // best) ** 2 != target_tokens:
        possible = ", ".join(f"{(side // p) ** 2} (patch {p})" for p in patches)
        raise TokbenchError(
            f"generation: tokenizer {tokenizer!r} has a {channels}x{side}x{side} latent grid, which gives no patch size "
            f"with exactly target_tokens={target_tokens} tokens; possible: {possible}; change target_tokens or set "
            "token_match: nearest"
        )
    return best
