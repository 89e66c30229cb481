"""Validated parameters of the ``vqgan`` tokenizer (importable without torch or diffusers).

One source of weights::

    params: {preset: f16-16384, checkpoint: /data/vqgan_imagenet_f16_16384/ckpts/last.ckpt}   # taming release
    params: {format: taming, checkpoint: /data/my_vqgan/last.ckpt, config: /data/my_vqgan/model.yaml}
    params: {preset: llamagen-vq16}                               # hf:FoundationVision/LlamaGen/vq_ds16_c2i.pt
    params: {format: llamagen, checkpoint: /data/llamagen/vq_ds16_c2i.pt}
    params: {preset: tiny}                                        # trained from scratch on shapes
    params: {preset: tiny, train: {steps: 3000, codebook_size: 4096}}
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from tokbench.errors import MissingAssetError
from tokbench.training.tiny_params import TinyConvTrainParams
from tokbench_vqgan import presets
from tokbench_vqgan.presets import HUB_PREFIX, RELEASED

#: the official taming layout: <run>/ckpts/last.ckpt beside <run>/configs/model.yaml
TAMING_CONFIG_CANDIDATES = ("../configs/model.yaml", "model.yaml")


class TinyTrainParams(TinyConvTrainParams):
    """How the ``tiny`` preset is trained, and its model size knobs (the schedule, image pool,
    crops and checks: :class:`~tokbench.training.tiny_params.TinyConvTrainParams`).

    Loss (images in [-1, 1]): ``mean|x - x_hat| + mse_weight * mean (x - x_hat)^2
    + codebook_weight * VQ loss + lpips_weight * LPIPS + GAN``. The VQ loss puts ``beta`` on
    the commitment term (VQ-VAE, LlamaGen) unless ``legacy_beta`` (taming: on the codebook
    term). The GAN term (PatchGAN, hinge) starts at ``gan_start`` with taming's adaptive
    weight times ``gan_weight``; 0 switches it off. The defaults train in about two minutes
    on two CPU cores (measured figures in the plugin README).
    """

    group_normed: ClassVar[tuple[str, ...]] = ("block_out_channels", "latent_channels")

    lr: PositiveFloat = 1e-3
    #: the codebook's learning rate is ``lr * codebook_lr_scale``
    codebook_lr_scale: PositiveFloat = 1.0
    codebook_weight: NonNegativeFloat = 1.0
    beta: NonNegativeFloat = 0.25
    #: taming's beta placement (codebook term x beta, commitment x 1) instead of VQ-VAE's
    legacy_beta: bool = False
    #: PatchGAN (hinge) weight, multiplied by taming's adaptive weight; 0 = no discriminator
    gan_weight: NonNegativeFloat = 0.0
    gan_start: NonNegativeInt = 0
    disc_layers: PositiveInt = 2
    #: start the codebook from encoder outputs of the first batch (every code starts in use)
    init_codebook_from_data: bool = True
    #: every ``restart_window`` steps, the codes that no training token chose in that window are
    #: re-initialised from encoder outputs of the current batch (dead-code restart)
    restart_dead_codes: bool = True
    restart_window: PositiveInt = 20
    # ---- model size knobs ----
    block_out_channels: tuple[PositiveInt, ...] = Field(presets.TINY_BLOCK_OUT_CHANNELS, min_length=1, max_length=6)
    layers_per_block: PositiveInt = presets.TINY_LAYERS_PER_BLOCK
    latent_channels: PositiveInt = presets.TINY_LATENT_CHANNELS
    norm_num_groups: PositiveInt = presets.TINY_NORM_NUM_GROUPS
    #: attention at the lowest resolution and in the mid block (as taming and LlamaGen; about 2x slower on CPU; the taming layout needs it)
    attention: bool = False
    codebook_size: int = Field(presets.TINY_CODEBOOK_SIZE, ge=2, le=65536)
    codebook_dim: PositiveInt = presets.TINY_CODEBOOK_DIM
    #: LlamaGen's cosine lookup: l2-normalised latents and codebook
    l2_norm: bool = True


class VQGANParams(BaseModel):
    """A VQ tokenizer: a released/local ``checkpoint`` (``format`` taming or llamagen) or ``preset: tiny``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["tiny", "f16-1024", "f16-16384", "llamagen-vq16"] | None = None
    #: layout of ``checkpoint``; implied by a released preset, else detected from the keys when omitted
    format: Literal["taming", "llamagen"] | None = None
    #: a local .ckpt/.pt/.pth/.safetensors file, or a hub file ``hf:<owner>/<name>/<file>``
    checkpoint: str | None = Field(None, min_length=1)
    #: taming ``model.yaml``; default: ``../configs/model.yaml`` or ``model.yaml`` beside the checkpoint, if present
    config: str | None = Field(None, min_length=1)
    revision: str | None = Field(None, min_length=1)
    #: what ``encode`` returns: the quantised code vectors, or the latent before quantisation
    latent: Literal["codes", "pre_quant"] = "codes"
    #: bf16 autocast applies on CUDA only (the code lookup always runs in fp32); CPU runs fp32
    precision: Literal["fp32", "bf16"] = "fp32"
    train: TinyTrainParams = TinyTrainParams()

    @model_validator(mode="after")
    def _check_source(self) -> "VQGANParams":
        if self.preset is None and self.checkpoint is None:
            raise ValueError(
                "set one weight source: `checkpoint: <taming last.ckpt or LlamaGen .pt>` (with `format: taming` or "
                f"`format: llamagen`) or `preset:` one of {', '.join(presets.PRESETS)}"
            )
        if self.preset == "tiny":
            given = [name for name in ("checkpoint", "format", "config", "revision") if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f"`preset: tiny` trains new weights; remove {', '.join(f'`{g}`' for g in given)} "
                    "(or drop the preset to load a checkpoint)"
                )
        elif self.train != TinyTrainParams():  # compared with the defaults so a dumped model validates again
            raise ValueError("`train` only applies to `preset: tiny`; remove it when loading a checkpoint")
        released = RELEASED.get(self.preset or "")
        if released is not None:
            if self.format is not None and self.format != released.format:
                raise ValueError(
                    f"`preset: {self.preset}` is a {released.format} checkpoint but `format: {self.format}` is set; "
                    f"remove `format` or set it to {released.format}"
                )
            if self.checkpoint is None and not released.location.startswith(HUB_PREFIX):
                raise ValueError(
                    f"`preset: {self.preset}` ({released.description}) is not on the Hugging Face hub; set "
                    f"`checkpoint:` to its last.ckpt: {released.how_to_get()}"
                )
        if self.config is not None and self.checkpoint_format() == "llamagen":
            raise ValueError("`config` (a taming model.yaml) only applies to `format: taming`; LlamaGen .pt files carry their args")
        if self.revision is not None and not (self.checkpoint_ref() or "").startswith(HUB_PREFIX):
            raise ValueError(f"`revision` only applies to a hub checkpoint ({HUB_PREFIX}<owner>/<name>/<file>)")
        ref = self.checkpoint_ref()
        if ref is not None and ref.startswith(HUB_PREFIX) and ref[len(HUB_PREFIX):].count("/") < 2:
            raise ValueError(f"hub checkpoint {ref!r} must read {HUB_PREFIX}<owner>/<name>/<file>, e.g. {RELEASED['llamagen-vq16'].location}")
        return self

    # ---- resolution (no torch) -------------------------------------------------
    def checkpoint_format(self) -> str | None:
        """``taming`` / ``llamagen`` when known before reading the file (None: detect from the keys)."""
        if self.format is not None:
            return self.format
        released = RELEASED.get(self.preset or "")
        return released.format if released is not None else None

    def checkpoint_ref(self) -> str | None:
        """The checkpoint to load: ``checkpoint``, or the hub file of a released preset."""
        if self.checkpoint is not None:
            return self.checkpoint
        released = RELEASED.get(self.preset or "")
        return released.location if released is not None else None

    def how_to_get(self) -> str:
        released = RELEASED.get(self.preset or "")
        if released is not None:
            return released.how_to_get()
        return (
            "point `checkpoint` at a taming Lightning last.ckpt (official releases: "
            + RELEASED["f16-16384"].location + ", " + RELEASED["f16-1024"].location + ") or a LlamaGen .pt ("
            + RELEASED["llamagen-vq16"].location + ")"
        )

    def local_checkpoint(self) -> Path | None:
        """The local checkpoint file, None for a hub file or the tiny preset; MissingAssetError
        naming the path and how to get it when it does not exist."""
        ref = self.checkpoint_ref()
        if ref is None or ref.startswith(HUB_PREFIX):
            return None
        path = Path(ref).expanduser()
        if not path.is_file():
            raise MissingAssetError(f"VQ checkpoint {str(path)!r} does not exist; {self.how_to_get()}")
        return path

    def taming_config(self, checkpoint: Path | None) -> Path | None:
        """The taming ``model.yaml`` to read: ``config`` (must exist) or the official layout's, if present."""
        if self.config is not None:
            path = Path(self.config).expanduser()
            if not path.is_file():
                raise MissingAssetError(
                    f"taming config {str(path)!r} does not exist; it is configs/model.yaml of the checkpoint's download "
                    "(or remove `config`: sizes are then inferred from the weights)"
                )
            return path
        if checkpoint is None or self.checkpoint_format() == "llamagen":
            return None
        for candidate in TAMING_CONFIG_CANDIDATES:
            path = (checkpoint.parent / candidate).resolve()
            if path.is_file():
                return path
        return None

    # ---- planning hooks (no torch) -------------------------------------------
    def needs_preparation(self) -> bool:
        """The tiny preset must be trained (a prepare unit) before anything is evaluated."""
        return self.preset == "tiny"

    def identity_files(self) -> list[str]:
        """Local files whose content identifies the weights: the checkpoint and its model.yaml."""
        checkpoint = self.local_checkpoint()
        if checkpoint is None:
            return []
        config = self.taming_config(checkpoint)
        return [str(checkpoint.resolve())] + ([str(config.resolve())] if config is not None else [])
