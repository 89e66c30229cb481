"""Parameters of the zero-shot and linear-probe tasks (torch-free: validated in suites).

Each protocol is a named, versioned recipe; a field left unset takes the protocol's value,
so a suite states only what it changes, and every result records the resolved recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from tokbench.data.params import CropName

Precision = Literal["fp32", "bf16"]

# ---- zero-shot ---------------------------------------------------------------------------

#: protocol -> (crop, what it reproduces)
ZERO_SHOT_PROTOCOLS: dict[str, tuple[str, str]] = {
    "vtp": ("squash-bilinear", "VTP tools/test_zero_shot_hf.py: Resize((R, R)) squash, x100 cosine logits"),
    "openclip": ("clip", "OpenCLIP eval: Resize(R, bicubic) on the shorter side + CenterCrop(R), x100 cosine logits"),
}


class ZeroShotParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: Literal["vtp", "openclip"] = Field(
        "vtp",
        description="vtp: squash to R (bilinear), as the VTP paper; openclip: shorter side to R (bicubic) + "
        "centre crop, as OpenCLIP's benchmark. Normalisation is the tokenizer's own; logits are 100 x cosine.",
    )
    resolution: PositiveInt | None = Field(None, description="R (default: the tokenizer's native resolution, 256 for VTP)")
    templates: Literal["dataset", "openai", "simple"] | list[str] = Field(
        "dataset",
        description="prompt templates: the dataset's own (ImageNet folders: OpenAI's 80), a named set, "
        "or a list of strings with one '{}' for the class name",
    )
    num_images: PositiveInt | None = Field(None, description="first N images of the dataset (default: all)")
    batch_size: PositiveInt = 64
    shard_size: PositiveInt = Field(1024, description="images per committed feature shard (resume granularity)")
    precision: Precision = Field("fp32", description="autocast dtype of feature extraction")
    classes_per_batch: PositiveInt = Field(10, description="classes whose prompts are embedded together")

    @property
    def crop(self) -> str:
        return ZERO_SHOT_PROTOCOLS[self.protocol][0]


# ---- linear probing ------------------------------------------------------------------------

ProbeVariant = Literal["latent", "cls", "cls+avg", "cls4", "cls4+avg"]


@dataclass(frozen=True)
class ProbeRecipe:
    """A linear-probe protocol with every default filled in."""

    protocol: str
    variants: tuple[str, ...]
    learning_rates: tuple[float, ...]
    optimizer: str
    batchnorm: bool
    batch_size: int
    iterations: int | None
    epochs: float | None
    warmup_epochs: float
    weight_decay: float
    crop: str  # "dataset" = the dataset as configured
    latent_pool: int

    def feature_names(self) -> tuple[str, ...]:
        """The ``image_features`` names every variant together needs (or the latent)."""
        return tuple(dict.fromkeys(name for variant in self.variants for name in self.variant_features(variant)))

    @staticmethod
    def variant_features(variant: str) -> tuple[str, ...]:
        """cls / cls4: CLS of the last 1 / 4 blocks; +avg: and the last block's mean patch token."""
        if variant == "latent":
            return ("latent",)
        blocks = 4 if variant.startswith("cls4") else 1
        names = tuple(f"block-{k}.cls" for k in range(1, blocks + 1))
        return names + (("block-1.patch_mean",) if variant.endswith("+avg") else ())


#: DINOv2's 13 base learning rates (dinov2/eval/linear.py), scaled by batch/256
DINOV2_LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)

#: DINOv2 dinov2/eval/linear.py; MAE main_linprobe.py; the bottleneck protocol = DINOv2's
#: optimiser on the pooled latent the generator sees (VTP's scaling plots).
PROBE_DEFAULTS: dict[str, dict] = {
    "bottleneck": dict(variants=("latent",), learning_rates=DINOV2_LEARNING_RATES, optimizer="sgd", batchnorm=False,
                       batch_size=1024, iterations=12500, epochs=None, warmup_epochs=0.0, crop="dataset"),
    "dinov2": dict(variants=("cls", "cls+avg", "cls4", "cls4+avg"), learning_rates=DINOV2_LEARNING_RATES, optimizer="sgd",
                   batchnorm=False, batch_size=1024, iterations=12500, epochs=None, warmup_epochs=0.0,
                   crop="center-0.875"),
    "mae": dict(variants=("cls",), learning_rates=(0.1,), optimizer="lars", batchnorm=True, batch_size=16384,
                iterations=None, epochs=90.0, warmup_epochs=10.0, crop="center-0.875"),
}


class LinearProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: Literal["bottleneck", "dinov2", "mae"] = Field(
        "bottleneck",
        description="bottleneck: the encoder's latent (what a generator sees), average-pooled; dinov2: CLS of the "
        "last 1 or 4 blocks (+ mean patch token), 13 learning rates, SGD + cosine; mae: CLS -> BatchNorm "
        "(no affine) -> linear, LARS. Unset fields below take the protocol's values.",
    )
    variants: list[ProbeVariant] | None = Field(
        None, description="feature variants (heads per variant x learning rate); bottleneck: latent; "
        "dinov2: cls, cls+avg, cls4, cls4+avg; mae: cls"
    )
    latent_pool: PositiveInt = Field(1, description="bottleneck: average-pool the latent to an N x N grid (1 = global mean)")
    learning_rates: list[PositiveFloat] | None = Field(None, description="base rates, scaled by batch/256")
    optimizer: Literal["sgd", "lars"] | None = None
    batchnorm: bool | None = Field(None, description="BatchNorm1d(affine=False) before the heads (mae)")
    batch_size: PositiveInt | None = Field(None, description="probe batch (capped at the training-set size)")
    iterations: PositiveInt | None = Field(None, description="probe steps (dinov2/bottleneck: 12500 = 10 x 1250)")
    epochs: PositiveFloat | None = Field(None, description="probe length in epochs instead of iterations (mae: 90)")
    warmup_epochs: float | None = Field(None, ge=0, description="linear lr warm-up (mae: 10)")
    weight_decay: float = Field(0.0, ge=0)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="probe seeds (init + batch order)")
    minival_per_class: PositiveInt = Field(
        10, description="training images per class held out to choose the head (reported on the validation set)"
    )
    crop: Literal["dataset"] | CropName | None = Field(
        None, description="preprocessing of both splits: 'dataset' = as configured; dinov2/mae: center-0.875"
    )
    resolution: PositiveInt | None = Field(None, description="with a crop: image size (default: the tokenizer's native)")
    augmentation: Literal["none", "hflip"] = Field("none", description="cached training views: none, or + horizontal flip")
    num_train_images: PositiveInt | None = None
    num_val_images: PositiveInt | None = None
    precision: Precision = Field("fp32", description="autocast dtype of feature extraction (heads train in fp32)")
    extract_batch_size: PositiveInt = 64
    shard_size: PositiveInt = Field(1024, description="images per committed feature shard (resume granularity)")

    @model_validator(mode="after")
    def _check(self) -> "LinearProbeParams":
        if self.iterations is not None and self.epochs is not None:
            raise ValueError("give either iterations or epochs, not both")
        variants = self.variants or PROBE_DEFAULTS[self.protocol]["variants"]
        if self.protocol == "bottleneck" and set(variants) != {"latent"}:
            raise ValueError("protocol 'bottleneck' probes the latent only: variants must be [latent]")
        if self.protocol != "bottleneck" and "latent" in variants:
            raise ValueError(f"protocol {self.protocol!r} probes image features; 'latent' belongs to protocol 'bottleneck'")
        crop = self.crop or PROBE_DEFAULTS[self.protocol]["crop"]
        if crop == "dataset" and self.resolution is not None:
            raise ValueError("resolution needs a crop: with crop 'dataset' the images are used as the dataset gives them")
        return self

    def required_capabilities(self) -> set[str]:
        return {"encode"} if self.protocol == "bottleneck" else {"image_features"}

    def recipe(self) -> ProbeRecipe:
        defaults = PROBE_DEFAULTS[self.protocol]
        iterations, epochs = self.iterations, self.epochs
        if iterations is None and epochs is None:
            iterations, epochs = defaults["iterations"], defaults["epochs"]
        return ProbeRecipe(
            protocol=self.protocol,
            variants=tuple(self.variants or defaults["variants"]),
            learning_rates=tuple(self.learning_rates or defaults["learning_rates"]),
            optimizer=self.optimizer or defaults["optimizer"],
            batchnorm=defaults["batchnorm"] if self.batchnorm is None else self.batchnorm,
            batch_size=self.batch_size or defaults["batch_size"],
            iterations=iterations,
            epochs=epochs,
            warmup_epochs=defaults["warmup_epochs"] if self.warmup_epochs is None else self.warmup_epochs,
            weight_decay=self.weight_decay,
            crop=self.crop or defaults["crop"],
            latent_pool=self.latent_pool,
        )
