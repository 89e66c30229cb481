"""Validated parameters of the ``vae`` tokenizer (importable without torch or diffusers).

Exactly one source of weights::

    params: {pretrained: stabilityai/sd-vae-ft-ema}          # hub id (needs the hub cache or internet)
    params: {pretrained: /data/vae/sd-vae-ft-ema}            # local diffusers directory
    params: {checkpoint: va-vae-f16d32}                      # VA-VAE release (LDM layout, hub cache or internet)
    params: {checkpoint: /data/vavae.pt, latent_stats: /data/latents_stats.pt}   # local LDM-layout file
    params: {preset: tiny}                                   # trained from scratch on shapes
    params: {preset: tiny, train: {steps: 1000}}             # ... with other training settings
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from tokbench.errors import MissingAssetError
from tokbench.nn.hub import download_hint, looks_like_hub_id  # noqa: F401 - re-exported
from tokbench.training.tiny_params import TinyConvTrainParams
from tokbench_vae import presets

#: File names diffusers reads the weights of a model directory from.
_WEIGHT_PREFIX = "diffusion_pytorch_model"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")


class TinyTrainParams(TinyConvTrainParams):
    """How the ``tiny`` preset is trained, and its model size knobs (the schedule, image pool,
    crops and checks: :class:`~tokbench.training.tiny_params.TinyConvTrainParams`).

    Loss (images in [-1, 1]): ``mean|x - x_hat| + mse_weight * mean (x - x_hat)^2
    + kl_weight * KL + lpips_weight * LPIPS``, the KL averaged over latent elements.
    Most steps see random ``crop_size`` crops (4x cheaper at 32 of 64 px); the last
    ``full_resolution_steps`` see whole images. The defaults train in about two
    minutes on two CPU cores (see the plugin README for measured PSNR).
    """

    lr: PositiveFloat = 2e-3
    weight_decay: NonNegativeFloat = 0.0
    kl_weight: NonNegativeFloat = 1e-4
    #: initial posterior log-variance (bias of the logvar half of quant_conv); None keeps diffusers' init
    initial_logvar: float | None = Field(-6.0, ge=-30, le=20)
    # ---- model size knobs ----
    block_out_channels: tuple[PositiveInt, ...] = Field(presets.TINY_BLOCK_OUT_CHANNELS, min_length=1, max_length=6)
    layers_per_block: PositiveInt = presets.TINY_LAYERS_PER_BLOCK
    latent_channels: PositiveInt = presets.TINY_LATENT_CHANNELS
    norm_num_groups: PositiveInt = presets.TINY_NORM_NUM_GROUPS
    mid_block_attention: bool = presets.TINY_MID_BLOCK_ATTENTION


class VAEParams(BaseModel):
    """A diffusers ``AutoencoderKL``: ``pretrained`` weights or a ``preset`` trained here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: local diffusers AutoencoderKL directory, or a hub id such as ``stabilityai/sd-vae-ft-ema``
    pretrained: str | None = Field(None, min_length=1)
    subfolder: str | None = Field(None, min_length=1)
    revision: str | None = Field(None, min_length=1)
    #: an LDM-layout KL-VAE checkpoint (VA-VAE's Lightning ``.pt``): a release name (see
    #: ``presets.RELEASES``) or a local file
    checkpoint: str | None = Field(None, min_length=1)
    #: per-channel latent statistics (``latents_stats.pt``: ``mean`` and ``std``, (1, C, 1, 1));
    #: a release brings its own. Used by generation with ``latent_normalization: tokenizer``.
    latent_stats: str | None = Field(None, min_length=1)
    #: image size the checkpoint was trained at (``checkpoint`` only; VA-VAE: 256)
    resolution: int = Field(256, ge=8)
    #: train from scratch with this plugin (weights cached in the store)
    preset: Literal["tiny"] | None = None
    #: encode to a posterior sample (seeded by ``seed``) instead of its mode
    sample_posterior: bool = False
    seed: NonNegativeInt = 0
    #: bf16 autocast applies on CUDA only; CPU always runs fp32
    precision: Literal["fp32", "bf16"] = "fp32"
    train: TinyTrainParams = TinyTrainParams()

    @model_validator(mode="after")
    def _check_source(self) -> "VAEParams":
        sources = [f"{name}: {getattr(self, name)}" for name in ("pretrained", "checkpoint", "preset") if getattr(self, name) is not None]
        if not sources:
            raise ValueError(
                "set one weight source: `pretrained: <local diffusers dir or hub id, e.g. stabilityai/sd-vae-ft-ema>`, "
                f"`checkpoint: <LDM-layout file or release: {', '.join(presets.RELEASES)}>` "
                f"or `preset: tiny` (trained from scratch); presets: {', '.join(presets.PRESETS)}"
            )
        if len(sources) > 1:
            raise ValueError(
                f"{' and '.join(f'`{s}`' for s in sources)} are {'both' if len(sources) == 2 else 'all'} set; keep exactly one (pretrained: a diffusers "
                "AutoencoderKL; checkpoint: an LDM-layout file such as VA-VAE's; preset: trained here)"
            )
        if self.pretrained is None:
            extra = [name for name in ("subfolder", "revision") if getattr(self, name) is not None]
            if extra:
                raise ValueError(f"{' and '.join(extra)} only apply to `pretrained`; remove them")
        if self.checkpoint is None:
            if self.latent_stats is not None:
                raise ValueError("`latent_stats` only applies to `checkpoint` (LDM-layout VAEs such as VA-VAE); remove it")
            if self.resolution != 256:
                raise ValueError("`resolution` only applies to `checkpoint`; diffusers configs and presets carry their own")
        # Compared with the defaults (not "was it given") so a dumped model validates again.
        if self.preset is None and self.train != TinyTrainParams():
            raise ValueError("`train` only applies to `preset: tiny`; remove it when loading existing weights")
        if self.checkpoint is not None:
            self.checkpoint_file()  # a missing local path fails at validation, naming the fix
        return self

    def release(self) -> dict[str, str] | None:
        """The ``presets.RELEASES`` entry named by ``checkpoint``, or None for a local file."""
        return presets.RELEASES.get(self.checkpoint) if self.checkpoint is not None else None

    def checkpoint_file(self) -> Path | None:
        """The local file named by ``checkpoint`` (None for a release name, fetched through the hub).
        MissingAssetError for a path that does not exist."""
        if self.checkpoint is None or self.release() is not None:
            return None
        path = Path(self.checkpoint).expanduser()
        if not path.is_file():
            raise MissingAssetError(
                f"KL-VAE checkpoint {str(path)!r} does not exist. `checkpoint` takes an LDM-layout file (e.g. VA-VAE's "
                "vavae-imagenet256-f16d32-dinov2.pt: `huggingface-cli download hustvl/vavae-imagenet256-f16d32-dinov2 "
                f"--local-dir <dir>`) or a release name: {', '.join(presets.RELEASES)}"
            )
        return path

    def latent_stats_file(self) -> Path | None:
        """The local ``latent_stats`` file (None when unset or when the release brings it)."""
        if self.latent_stats is None:
            return None
        path = Path(self.latent_stats).expanduser()
        if not path.is_file():
            raise MissingAssetError(
                f"latent_stats file {str(path)!r} does not exist; VA-VAE's is latents_stats.pt in the hub repo "
                "hustvl/vavae-imagenet256-f16d32-dinov2 (a dict with `mean` and `std`, each (1, 32, 1, 1))"
            )
        return path

    # ---- planning hooks (no torch) -------------------------------------------
    def needs_preparation(self) -> bool:
        """Presets must be trained (a prepare unit) before anything is evaluated."""
        return self.preset is not None

    def local_dir(self) -> Path | None:
        """The local model directory named by ``pretrained`` (with ``subfolder``), or
        None for a hub id. Raises MissingAssetError for a path that does not exist."""
        if self.pretrained is None:
            return None
        root = Path(self.pretrained).expanduser()
        if root.exists():
            return root / self.subfolder if self.subfolder else root
        if looks_like_hub_id(self.pretrained):
            return None
        raise MissingAssetError(
            f"pretrained VAE directory {str(root)!r} does not exist (and is not a hub id like owner/name). "
            "Point `pretrained` at a diffusers AutoencoderKL directory (config.json + diffusion_pytorch_model.safetensors), "
            "e.g. one made with `huggingface-cli download stabilityai/sd-vae-ft-ema --local-dir <dir>`."
        )

    def identity_files(self) -> list[str]:
        """Local files whose content identifies the weights: config.json and the weight
        files of a local ``pretrained`` directory; [] for hub ids and presets."""
        if self.checkpoint is not None:
            files = [self.checkpoint_file(), self.latent_stats_file()]
            return [str(f.resolve()) for f in files if f is not None]
        directory = self.local_dir()
        if directory is None:
            return []
        config = directory / "config.json"
        weights = sorted(
            p for p in directory.glob(f"{_WEIGHT_PREFIX}*") if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)
        )
        if not directory.is_dir() or not config.is_file() or not weights:
            found = sorted(p.name for p in directory.iterdir())[:10] if directory.is_dir() else []
            hint = ""
            if (directory / "vae" / "config.json").is_file():
                hint = " This looks like a pipeline directory: add `subfolder: vae`."
            raise MissingAssetError(
                f"{str(directory)!r} is not a diffusers AutoencoderKL directory: expected config.json and "
                f"{_WEIGHT_PREFIX}.safetensors, found {found or 'nothing'}.{hint} Save one with "
                "`AutoencoderKL.save_pretrained(dir)` or download one with `huggingface-cli download <id> --local-dir <dir>`."
            )
        return [str(config.resolve())] + [str(p.resolve()) for p in weights]
