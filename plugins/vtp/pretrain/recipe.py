"""``PretrainRecipe``: everything that determines a VTP pretraining run, validated.

Importable without torch (suites validate recipes; the store keys trained weights
by :meth:`PretrainRecipe.cache_inputs`). Values the paper does not state default to
DINOv2 / OpenCLIP practice (see ``docs/vtp-pretraining.md`` for the table).
Recipes are YAML files: the presets ship in ``tokbench_vtp/presets/`` and are
loaded by name (``tiny``, ``small``, ``base``, ``large``) or by path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from tokbench_vtp.model.config import VTPArchitecture, preset
from tokbench_vtp.pretrain.crops import MultiCropConfig

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
#: bump when the training code changes what a recipe produces
TRAINING_FORMAT = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Image–caption pairs: the offline ``shapes`` set, WebDataset tar shards, or a CSV/JSONL manifest."""

    kind: Literal["shapes", "tar", "manifest"] = "shapes"
    #: tar shard paths/globs/brace ranges (kind: tar)
    shards: list[str] = []
    #: CSV or JSONL with image path + caption columns (kind: manifest)
    manifest: str | None = None
    #: shapes: number of training images, their resolution and the generator seed
    num_images: PositiveInt = 4096
    resolution: PositiveInt = 256
    shapes_seed: NonNegativeInt = 0
    #: shapes: describe each image by one of four partial captions (see ShapesCaptionSource)
    caption_variants: bool = True
    num_workers: NonNegativeInt = 0

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.kind == "tar" and not self.shards:
            raise ValueError("data.kind 'tar' needs `shards: [path/to/shard-{000000..000099}.tar, ...]`")
        if self.kind == "manifest" and not self.manifest:
            raise ValueError("data.kind 'manifest' needs `manifest: path/to/pairs.csv` (or .jsonl)")
        return self


class BatchConfig(_Strict):
    """Global batch sizes. VTP: every sample feeds CLIP; random subsets feed SSL and reconstruction.

    With ``accumulation`` > 1 each micro-batch is contrasted on its own: the CLIP loss then
    sees ``clip / accumulation`` pairs at a time (more ranks, not accumulation, give a larger
    contrastive batch)."""

    clip: PositiveInt = 16384
    ssl: NonNegativeInt = 4096
    rec: NonNegativeInt = 2048
    #: micro-batches per optimizer step (the global batches above are split evenly)
    accumulation: PositiveInt = 1

    @model_validator(mode="after")
    def _check(self) -> "BatchConfig":
        for name in ("ssl", "rec"):
            if getattr(self, name) > self.clip:
                raise ValueError(f"batch.{name} ({getattr(self, name)}) is a subset of the CLIP batch and cannot exceed batch.clip ({self.clip})")
        for name in ("clip", "ssl", "rec"):
            if getattr(self, name) % self.accumulation:
                raise ValueError(f"batch.{name} ({getattr(self, name)}) must be divisible by batch.accumulation ({self.accumulation})")
        return self


class LossConfig(_Strict):
    """L = rec·(l1·L1 + perceptual·LPIPS) + ssl·(dino·DINO + ibot·iBOT + koleo·KoLeo) + clip·CLIP."""

    rec: NonNegativeFloat = 0.1
    ssl: NonNegativeFloat = 1.0
    clip: NonNegativeFloat = 1.0
    l1: NonNegativeFloat = 1.0
    #: LPIPS-VGG; needs torchvision's vgg16 weights file locally (see tokbench.metrics.perceptual)
    perceptual: NonNegativeFloat = 1.0
    dino: NonNegativeFloat = 1.0
    ibot: NonNegativeFloat = 1.0
    koleo: NonNegativeFloat = 0.1
    centering: Literal["softmax", "sinkhorn"] = "softmax"
    student_temp: PositiveFloat = 0.1
    teacher_temp: PositiveFloat = 0.07
    warmup_teacher_temp: PositiveFloat = 0.04
    #: steps over which the teacher temperature rises from warmup_teacher_temp to teacher_temp;
    #: None: the first 30 % of stage 1 (DINOv2: 30 of 100 epochs)
    teacher_temp_warmup_steps: NonNegativeInt | None = None
    clip_gather_with_grad: bool = True
    #: each rank scores its own rows against all gathered columns: the same gradient as the full
    #: B x B logits at 1/world of the memory (the logged CLIP loss is then this rank's share)
    clip_local_loss: bool = True
    logit_scale_max: PositiveFloat = math.log(100)


class HeadConfig(_Strict):
    """The DINO/iBOT head shared by CLS and patch tokens."""

    prototypes: PositiveInt = 65536
    hidden: PositiveInt = 2048
    bottleneck: PositiveInt = 256
    layers: PositiveInt = 3
    #: steps during which the prototypes (last layer) get no updates (DINOv2: one epoch)
    freeze_last_layer_steps: NonNegativeInt = 0


class OptimConfig(_Strict):
    """AdamW with per-step cosine schedules (lr, weight decay, teacher momentum)."""

    lr: PositiveFloat = 5e-4
    min_lr: NonNegativeFloat = 1e-6
    warmup_steps: NonNegativeInt = 0
    weight_decay: NonNegativeFloat = 0.04
    weight_decay_end: NonNegativeFloat = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: PositiveFloat = 1e-6
    #: max global gradient norm; 0 disables clipping
    clip_grad: NonNegativeFloat = 3.0
    teacher_momentum: float = Field(0.992, ge=0, le=1)
    teacher_momentum_end: float = Field(1.0, ge=0, le=1)


class DropConfig(_Strict):
    """Per-branch sample-drop (stochastic depth) rates of the student encoder."""

    clip: float = Field(0.0, ge=0, lt=1)
    ssl: float = Field(0.0, ge=0, lt=1)
    rec: float = Field(0.0, ge=0, lt=1)


class MaskConfig(_Strict):
    """iBOT block masking of the student's global crops."""

    probability: float = Field(0.5, ge=0, le=1)
    ratio: tuple[float, float] = (0.1, 0.5)


class Stage2Config(_Strict):
    """Decoder GAN fine-tune: trunk (incl. bottleneck) frozen, pixel decoder trained
    with L1 + LPIPS + an adaptive-weight hinge GAN loss."""

    steps: NonNegativeInt = 0
    batch: PositiveInt = 256
    lr: PositiveFloat = 1e-4
    discriminator_lr: PositiveFloat = 1e-4
    discriminator: Literal["patchgan", "dino"] = "patchgan"
    #: generator steps before the GAN loss switches on
    gan_start: NonNegativeInt = 0
    gan_weight: NonNegativeFloat = 0.5
    adaptive_weight: bool = True
    l1: NonNegativeFloat = 1.0
    perceptual: NonNegativeFloat = 1.0
    betas: tuple[float, float] = (0.5, 0.9)


class PretrainRecipe(_Strict):
    name: str = "custom"
    #: a preset name (tiny, small, base, large) or the full architecture
    architecture: str | VTPArchitecture = "tiny"
    steps: PositiveInt = 1000
    seed: NonNegativeInt = 0
    data: DataConfig = DataConfig()
    batch: BatchConfig = BatchConfig()
    crops: MultiCropConfig = MultiCropConfig()
    loss: LossConfig = LossConfig()
    head: HeadConfig = HeadConfig()
    optim: OptimConfig = OptimConfig()
    drop: DropConfig = DropConfig()
    masking: MaskConfig = MaskConfig()
    stage2: Stage2Config = Stage2Config()
    #: bf16 autocast on CUDA (CPU always runs fp32)
    precision: Literal["bf16", "fp32"] = "bf16"
    #: torch.compile the student (execution detail: not part of the cache key)
    compile: bool = False
    #: recompute each trunk block in the backward pass: far less activation memory for L-size
    #: batches, about a third more compute (execution detail: not part of the cache key)
    activation_checkpointing: bool = False
    #: fused (single-kernel) AdamW on CUDA (execution detail: not part of the cache key)
    fused_optimizer: bool = True
    #: save a resumable checkpoint every N steps (0: only at the end); not part of the cache key
    checkpoint_every: NonNegativeInt = 500
    log_every: PositiveInt = 10

    @model_validator(mode="after")
    def _check(self) -> "PretrainRecipe":
        arch = self.arch
        for name in ("image_size", "global_size") + (("local_size",) if self.crops.n_local else ()):
            size = getattr(self.crops, name)
            if size % arch.patch_size:
                raise ValueError(f"crops.{name} {size} is not a multiple of the patch size {arch.patch_size}")
        if self.loss.clip > 0 and not arch.with_text:
            raise ValueError("loss.clip > 0 needs an architecture with a text tower (with_text: true)")
        if (self.loss.rec > 0 or self.stage2.steps) and not arch.with_decoder:
            raise ValueError("reconstruction (loss.rec > 0 or stage2) needs an architecture with a pixel decoder")
        return self

    @property
    def arch(self) -> VTPArchitecture:
        return preset(self.architecture) if isinstance(self.architecture, str) else self.architecture

    def per_rank_batches(self, world_size: int) -> dict[str, int]:
        """Per-rank micro-batch sizes; every branch that is switched on must get samples on every rank."""
        split = world_size * self.batch.accumulation
        sizes = {}
        for name, weight in (("clip", self.loss.clip), ("ssl", self.loss.ssl), ("rec", self.loss.rec)):
            size = getattr(self.batch, name)
            if size % split:
                raise ValueError(
                    f"batch.{name} {size} must be divisible by world size x batch.accumulation = {split}; "
                    f"use {max(size // split, 1) * split} or {(size // split + 1) * split}"
                )
            if (weight > 0 or name == "clip") and size == 0:
                raise ValueError(f"batch.{name} is 0 but loss.{name} is {weight}; set loss.{name}: 0 to switch the branch off")
            sizes[name] = size // split
        return sizes

    @property
    def total_steps(self) -> int:
        return self.steps + self.stage2.steps

    def cache_inputs(self) -> dict[str, Any]:
        """What determines the trained weights (execution details excluded)."""
        payload = self.model_dump(mode="json", exclude={"compile", "activation_checkpointing", "fused_optimizer",
                                                             "checkpoint_every", "log_every", "name"})
        payload["architecture"] = self.arch.model_dump(mode="json")
        payload["data"].pop("num_workers", None)
        return {"family": "tokbench_vtp", "format": TRAINING_FORMAT, "recipe": payload}

    def training_flops(self) -> dict[str, float]:
        """Approximate training FLOPs per optimizer step, per branch (3 x forward for fwd+bwd;
        the teacher only runs forward). Forward FLOPs of a transformer over T tokens ≈ 2·params·T."""
        arch, crops, batch = self.arch, self.crops, self.batch
        counts = arch.parameter_count()
        p = arch.patch_size
        trunk_block = float(counts["trunk"])
        # embeddings are lookups, not matmuls
        text_matmul_params = counts["text_and_clip"] - (arch.text_vocab_size + arch.text_context_length) * arch.text_width

        def tokens(size: int, cls: bool = True) -> int:
            return (size // p) ** 2 + (1 if cls else 0)

        clip_tokens = tokens(crops.image_size)
        ssl_tokens = 2 * tokens(crops.global_size) + crops.n_local * tokens(crops.local_size)
        flops = {
            "clip_student": 3 * 2 * trunk_block * clip_tokens * batch.clip if self.loss.clip else 0.0,
            "text": 3 * 2 * text_matmul_params * arch.text_context_length * batch.clip if self.loss.clip else 0.0,
            "ssl_student": 3 * 2 * trunk_block * ssl_tokens * batch.ssl if self.loss.ssl else 0.0,
            "ssl_teacher": 2 * trunk_block * 2 * tokens(crops.global_size) * batch.ssl if self.loss.ssl else 0.0,
            "rec_student": 3 * 2 * trunk_block * clip_tokens * batch.rec if self.loss.rec else 0.0,
            "rec_decoder": 3 * 2 * counts["pixel_decoder"] * tokens(crops.image_size, cls=False) * batch.rec if self.loss.rec else 0.0,
        }
        flops["total"] = sum(flops.values())
        return flops


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_recipe(source: str | Path | dict, overrides: dict | None = None) -> PretrainRecipe:
    """A recipe from a preset name, a YAML path or a dict, with nested ``overrides`` merged in."""
    import yaml

    if isinstance(source, dict):
        data = dict(source)
    else:
        path = Path(source)
        if not path.suffix and (PRESET_DIR / f"{source}.yaml").is_file():
            path = PRESET_DIR / f"{source}.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"VTP recipe {str(source)!r} is neither a preset ({', '.join(preset_names())}) nor an existing YAML file"
            )
        data = yaml.safe_load(path.read_text()) or {}
    return PretrainRecipe.model_validate(_merge(data, overrides or {}))


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
