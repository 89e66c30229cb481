"""Validated parameters of the ``rae`` tokenizer (importable without torch).

Exactly one source of decoder weights::

    params: {pretrained: dinov2-b}                  # released DINOv2-B + ViT-XL (hub cache or internet)
    params: {decoder: ./weights/rae/model.pt, stats: ./weights/rae/stat.pt,
             encoder_checkpoint: ./weights/dinov2-reg4/model.safetensors}   # the same files, offline
    params: {preset: tiny}                          # SSL-pretrained tiny encoder + decoder, trained here
    params: {preset: tiny, train: {steps: 1000}, encoder_recipe_overrides: {steps: 600}}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError, model_validator

from tokbench.errors import MissingAssetError
from tokbench_rae.sizes import DECODER_SIZES

if TYPE_CHECKING:  # pragma: no cover
    from tokbench_vtp.api import PretrainRecipe

#: the Hugging Face repository holding the released decoders and statistics
HUB_REPO = "nyu-visionx/RAE-collections"
DEFAULT_ENCODER = "vit_base_patch14_reg4_dinov2.lvd142m"
#: the VTP recipe (DINO/iBOT only) that pretrains the tiny preset's encoder
TINY_ENCODER_RECIPE = Path(__file__).resolve().parent / "presets" / "tiny-encoder.yaml"
NEEDS_VTP = ("`preset: tiny` pretrains its encoder with the vtp plugin (package tokbench_vtp), which is not "
             "installed: install it (`pip install tokbench` ships the in-repo plugins together), or load "
             "weights with `pretrained:` or `decoder:` instead")
SSL_ONLY = ("encoder_recipe_overrides: the RAE encoder is pretrained with the self-supervised loss only; "
            "keep loss.clip: 0, loss.rec: 0 and loss.ssl > 0")


@dataclass(frozen=True)
class Released:
    """One released RAE: the timm name of its encoder and the decoder/statistics files in HUB_REPO."""

    encoder: str
    decoder: str
    stats: str
    resolution: int


RELEASED: dict[str, Released] = {
    "dinov2-b": Released(DEFAULT_ENCODER, "models/decoders/dinov2/wReg_base/ViTXL_n08/model.pt",
                         "models/stats/dinov2/wReg_base/imagenet1k/stat.pt", 256),
    "dinov2-b-512": Released(DEFAULT_ENCODER, "models/decoders/dinov2/wReg_base/ViTXL_n08_i512/model.pt",
                             "models/stats/dinov2/wReg_base/imagenet1k_512/stat.pt", 512),
}


class DecoderTrainParams(BaseModel):
    """How this plugin trains a decoder on a frozen encoder (the ``tiny`` preset's defaults).

    Loss (RAE stage 1): ``L1(x̂, x) + lpips_weight·LPIPS + gan_weight·λ·(−mean D(x̂))`` on [0, 1]
    pixels, λ = ‖∇L_rec‖/‖∇L_G‖ at ``decoder_pred.weight`` (≤ 1e4), the generator term from
    ``gan_start``, hinge discriminator updates from ``disc_start`` on DiffAugment'ed (colour,
    translation) real and 8-bit-quantised fake images. Encoder tokens get noise z + σ·ε,
    σ ~ U(0, ``noise_tau``) per sample. AdamW, linear warm-up then cosine to ``lr·min_lr_ratio``,
    EMA weights exported. RAE's ImageNet run: lr 2e-4, batch 512, 16 epochs, LPIPS 1.0, GAN 0.75
    from epoch 8 (D from 6), EMA 0.9978, τ 0.8, a frozen DINO-S/8 discriminator.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: PositiveInt = 900
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 1e-3
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    #: clamped to the run when longer
    warmup_steps: NonNegativeInt = 30
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: NonNegativeFloat = 0.0
    #: noise augmentation of the encoder tokens; 0 switches it off
    noise_tau: NonNegativeFloat = 0.8
    #: LPIPS needs torchvision's VGG16 weights locally; > 0 without them is a MissingAssetError
    lpips_weight: NonNegativeFloat = 0.0
    gan_weight: NonNegativeFloat = 0.75
    #: first step with the generator GAN term / with discriminator updates
    gan_start: NonNegativeInt = 600
    disc_start: NonNegativeInt = 450
    disc_lr: PositiveFloat = 2e-4
    disc_channels: PositiveInt = 32
    disc_layers: PositiveInt = 2
    max_gan_weight: PositiveFloat = 1e4
    ema_decay: float = Field(0.99, ge=0, lt=1)
    decoder_size: Literal[tuple(DECODER_SIZES)] = "tiny"  # type: ignore[valid-type]
    #: decoder patch size: output side = latent grid x patch (RAE: 16)
    patch_size: PositiveInt = 8
    resolution: int = Field(64, ge=8)
    #: training images (shapes, split 'train'), each encoded once (no pixel augmentation)
    num_images: PositiveInt = 2048
    #: held-out images (shapes, split 'val', seed + 1) for the summary's PSNR
    holdout_images: PositiveInt = 64
    #: training images the per-element latent statistics (stat.pt) are computed over
    stats_images: PositiveInt = 2048
    seed: NonNegativeInt = 0

    @model_validator(mode="after")
    def _check(self) -> "DecoderTrainParams":
        if self.resolution % self.patch_size:
            raise ValueError(f"resolution {self.resolution} is not a multiple of patch_size {self.patch_size}")
        if self.gan_weight > 0 and self.disc_start > self.gan_start:
            raise ValueError(
                f"disc_start ({self.disc_start}) is after gan_start ({self.gan_start}): the generator would train "
                "against an untrained discriminator; start the discriminator first (RAE: epoch 6 vs 8)"
            )
        return self

    @property
    def grid(self) -> int:
        return self.resolution // self.patch_size

    def cache_inputs(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class RAEParams(BaseModel):
    """An RAE tokenizer: released weights, local files, or the ``tiny`` preset trained here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: a released RAE from nyu-visionx/RAE-collections: its encoder, decoder and stat.pt
    pretrained: Literal[tuple(RELEASED)] | None = None  # type: ignore[valid-type]
    #: hub revision of nyu-visionx/RAE-collections (``pretrained`` only)
    revision: str | None = Field(None, min_length=1)
    #: a local decoder ``model.pt`` (raw GeneralDecoder state dict, the released layout)
    decoder: str | None = Field(None, min_length=1)
    #: a local ``stat.pt`` ({'mean', 'var'}, per element) overriding / adding latent statistics
    stats: str | None = Field(None, min_length=1)
    #: timm name of the frozen encoder (``pretrained`` / ``decoder``)
    encoder: str = Field(DEFAULT_ENCODER, min_length=1)
    #: local encoder weights (timm, DINOv2-original or HF Dinov2WithRegisters layout) instead of timm's hub file
    encoder_checkpoint: str | None = Field(None, min_length=1)
    #: train a decoder here on a frozen encoder pretrained here
    preset: Literal["tiny"] | None = None
    train: DecoderTrainParams = DecoderTrainParams()
    #: nested settings merged into the tiny encoder's VTP recipe (presets/tiny-encoder.yaml)
    encoder_recipe_overrides: dict[str, Any] = {}
    #: bf16 autocast of encoder and decoder on CUDA only; CPU always runs the model's dtype
    precision: Literal["fp32", "bf16"] = "fp32"

    @model_validator(mode="after")
    def _check_source(self) -> "RAEParams":
        sources = [name for name in ("pretrained", "decoder", "preset") if getattr(self, name) is not None]
        if not sources:
            raise ValueError(
                f"set one weight source: `pretrained: <{' | '.join(RELEASED)}>` (released, from {HUB_REPO}), "
                "`decoder: <local model.pt>` (with `stats:` and `encoder_checkpoint:` for offline use), "
                "or `preset: tiny` (trained here)"
            )
        if len(sources) > 1:
            raise ValueError(f"{' and '.join(f'`{s}`' for s in sources)} are both set; keep exactly one weight source")
        if self.preset is not None:
            extra = [name for name in ("revision", "stats", "encoder_checkpoint") if getattr(self, name) is not None]
            if self.encoder != DEFAULT_ENCODER:
                extra.append("encoder")
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} only apply to released/local weights; `preset: tiny` trains its own encoder "
                    "(change it with `encoder_recipe_overrides`)"
                )
            self.encoder_recipe()  # a bad override fails at suite validation
        else:
            if self.train != DecoderTrainParams():
                raise ValueError("`train` only applies to `preset: tiny`; remove it when loading weights")
            if self.encoder_recipe_overrides:
                raise ValueError("`encoder_recipe_overrides` only apply to `preset: tiny`")
        if self.revision is not None and self.pretrained is None:
            raise ValueError("`revision` only applies to a hub `pretrained`; remove it for local files")
        if self.pretrained is not None and self.encoder != RELEASED[self.pretrained].encoder:
            raise ValueError(
                f"`pretrained: {self.pretrained}` was trained on {RELEASED[self.pretrained].encoder}; drop `encoder` "
                "(use `decoder:` with your own model.pt for another encoder)"
            )
        return self

    # ---- sources (no torch) ------------------------------------------------------------------------
    def encoder_recipe(self) -> "PretrainRecipe | None":
        """The tiny encoder's VTP recipe (overrides merged), or None without a preset. A bad override
        raises ValueError naming ``encoder_recipe_overrides.<field>``."""
        if self.preset is None:
            return None
        load_recipe = vtp_api().load_recipe
        loss = self.encoder_recipe_overrides.get("loss")
        if isinstance(loss, dict) and any(loss.get(name, 0) for name in ("clip", "rec")) or (
            isinstance(loss, dict) and loss.get("ssl", 1) <= 0
        ):
            raise ValueError(SSL_ONLY)
        try:
            recipe = load_recipe(TINY_ENCODER_RECIPE, dict(self.encoder_recipe_overrides))
        except ValidationError as error:
            lines = [".".join(["encoder_recipe_overrides", *(str(p) for p in e.get("loc", ()))]) + f": {e.get('msg')}"
                     for e in error.errors()]
            raise ValueError("invalid tiny encoder recipe:\n  " + "\n  ".join(lines)) from None
        if recipe.loss.clip > 0 or recipe.loss.rec > 0 or recipe.loss.ssl <= 0:
            raise ValueError(SSL_ONLY)
        if recipe.crops.image_size != self.train.resolution:
            raise ValueError(
                f"the encoder recipe's crops.image_size ({recipe.crops.image_size}) differs from train.resolution "
                f"({self.train.resolution}); set both to the same size"
            )
        return recipe

    def local_files(self) -> dict[str, Path]:
        """The local files named by ``decoder``, ``stats`` and ``encoder_checkpoint`` (MissingAssetError if absent)."""
        files: dict[str, Path] = {}
        for name in ("decoder", "stats", "encoder_checkpoint"):
            value = getattr(self, name)
            if value is None:
                continue
            path = Path(value).expanduser()
            if not path.is_file():
                raise MissingAssetError(f"{name} file {str(path)!r} does not exist; {missing_file_hint(name)}")
            files[name] = path
        return files

    @property
    def native_resolution(self) -> int | None:
        if self.pretrained is not None:
            return RELEASED[self.pretrained].resolution
        if self.preset is not None:
            return self.train.resolution
        return None

    # ---- planning hooks (no torch) --------------------------------------------------------------------
    def needs_preparation(self) -> bool:
        """The tiny preset is trained (encoder, then decoder) before anything is evaluated."""
        return self.preset is not None

    def identity_files(self) -> list[str]:
        """Local files whose content identifies the outputs (hub files are identified by repo + path + revision)."""
        return [str(path.resolve()) for path in self.local_files().values()]


def missing_file_hint(name: str) -> str:
    released = RELEASED["dinov2-b"]
    if name == "decoder":
        return f"download it with `hf download {HUB_REPO} {released.decoder} --local-dir ./weights/rae`"
    if name == "stats":
        return f"download it with `hf download {HUB_REPO} {released.stats} --local-dir ./weights/rae`"
    return (
        "download timm's weights with `hf download timm/vit_base_patch14_reg4_dinov2.lvd142m model.safetensors "
        "--local-dir ./weights/dinov2-reg4` (or use facebook/dinov2-with-registers-base's model.safetensors)"
    )


def vtp_api():
    """``tokbench_vtp.api``: the vtp plugin's public interface, through which the ``tiny`` preset
    pretrains and loads its encoder (the only use RAE makes of VTP). A ValueError saying so when the
    vtp plugin is not installed; RAE's released and local weights work without it."""
    try:
        from tokbench_vtp import api
    except ModuleNotFoundError as error:
        if error.name != "tokbench_vtp":
            raise
        raise ValueError(NEEDS_VTP) from None
    return api
