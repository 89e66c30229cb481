"""``VAETokenizer``: a diffusers ``AutoencoderKL`` behind the tokbench contract.

Pixels in [0, 1] at the boundary, [-1, 1] inside. ``encode`` returns RAW
latents (the posterior mode, or a seeded sample): no scaling or shift factor is
applied. ``scaling_factor``/``shift_factor`` from the model config are exposed
for generation, which uses ``(z - shift_factor) * scaling_factor``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from tokbench.api import Capability, LatentSpec
from tokbench.errors import MissingAssetError
from tokbench.hashing import state_dict_fingerprint
from tokbench.nn.checkpoints import read_latent_stats
from tokbench.nn.hub import download_hint, hub_file, hub_offline
from tokbench.tokenizers.diffusers_model import DiffusersModelTokenizer
from tokbench.training.tiny import check_trained_with, write_training_summary
from tokbench_vae.params import VAEParams

#: config keys that never change what encode/decode compute
_CONFIG_KEYS_WITHOUT_EFFECT = {
    "sample_size",
    "scaling_factor",
    "shift_factor",
    "latents_mean",
    "latents_std",
    "force_upcast",
}
#: plain loading (no `accelerate` needed, and no log line asking for it)
_LOAD = {"low_cpu_mem_usage": False}
logger = logging.getLogger("tokbench_vae")


class VAETokenizer(DiffusersModelTokenizer):
    """Wraps an ``AutoencoderKL``; see the module docstring for the conventions."""

    capabilities = frozenset({Capability.ENCODE, Capability.DECODE})

    def __init__(self, model, params: VAEParams | None = None, source: str | None = None):
        self.model = model.eval().requires_grad_(False)
        self.params = params or VAEParams(preset="tiny")
        #: where the weights came from (directory or hub id), for records
        self.source = source
        config = model.config
        self.block_out_channels = tuple(config.block_out_channels)
        self.latent_channels = int(config.latent_channels)
        self.downsample = 2 ** (len(self.block_out_channels) - 1)
        self.scaling_factor = float(config.scaling_factor) if config.get("scaling_factor") is not None else 1.0
        self.shift_factor = float(config.shift_factor) if config.get("shift_factor") is not None else 0.0
        self.native_resolution = int(config.get("sample_size") or 256)
        #: per-channel statistics file (LDM checkpoints such as VA-VAE); None: use the config's factors
        self.latent_stats_path: Path | None = None
        self._latent_stats = None
        self._channels_last_on_gpu()

    # ---- contract ---------------------------------------------------------------
    def latent_spec(self, image_size: int) -> LatentSpec:
        if image_size % self.downsample:
            raise ValueError(f"image size {image_size} is not divisible by this VAE's downsampling factor {self.downsample}")
        side = image_size // self.downsample
        return LatentSpec(channels=self.latent_channels, height=side, width=side, downsample=self.downsample)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = self._prepare(images) * 2 - 1
        with torch.no_grad(), self._autocast():
            posterior = self.model.encode(x).latent_dist
            if self.params.sample_posterior:
                noise = posterior_noise(images, tuple(posterior.mean.shape[1:]), self.params.seed)
                latents = posterior.mean + posterior.std * noise.to(device=posterior.mean.device, dtype=posterior.mean.dtype)
            else:
                latents = posterior.mode()
        return latents.to(self.dtype).contiguous()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = self._prepare(latents)
        with torch.no_grad(), self._autocast():
            images = self.model.decode(z).sample
        return ((images.to(self.dtype) + 1) / 2).clamp(0, 1).contiguous()

    def fingerprint(self) -> str:
        extra: dict[str, Any] = {
            "family": "diffusers.AutoencoderKL",
            "config": {k: v for k, v in dict(self.model.config).items() if not k.startswith("_") and k not in _CONFIG_KEYS_WITHOUT_EFFECT},
            "sample_posterior": self.params.sample_posterior,
            "precision": self.params.precision,
        }
        if self.params.sample_posterior:
            extra["seed"] = self.params.seed
        return state_dict_fingerprint(self.model.state_dict(), extra=extra)

    # ---- helpers ------------------------------------------------------------------
    def latent_normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (mean, std), each (1, C, 1, 1) float32 on the CPU, for generation's
        ``(z - mean) / std``: the ``latents_stats.pt`` when there is one (VA-VAE), else the config's
        ``shift_factor`` and ``1 / scaling_factor`` (SD-VAE: 0 and 1/0.18215)."""
        if self._latent_stats is None:
            if self.latent_stats_path is not None:
                self._latent_stats = read_latent_stats(self.latent_stats_path, self.latent_channels)
            else:
                shape = (1, self.latent_channels, 1, 1)
                self._latent_stats = (torch.full(shape, self.shift_factor), torch.full(shape, 1.0 / self.scaling_factor))
        return self._latent_stats

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "latent_stats": str(self.latent_stats_path) if self.latent_stats_path is not None else None,
            "block_out_channels": list(self.block_out_channels),
            "latent_channels": self.latent_channels,
            "downsample": self.downsample,
            "scaling_factor": self.scaling_factor,
            "shift_factor": self.shift_factor,
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }


def posterior_noise(images: torch.Tensor, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal noise for posterior samples, one draw per image, seeded by
    ``seed`` and the image's 8-bit content: an image gets the same sample in any
    batch, on any device and in any dtype. Returned on the CPU, float32."""
    quantised = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().contiguous()
    draws = []
    for image in quantised:
        digest = hashlib.blake2b(image.numpy().tobytes(), digest_size=8, key=str(seed).encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
        draws.append(torch.randn(shape, generator=generator, dtype=torch.float32))
    return torch.stack(draws)


# ---- loading --------------------------------------------------------------------------
def load_autoencoder(params: VAEParams):
    """``AutoencoderKL`` for ``params.pretrained`` (local directory or hub id), or
    MissingAssetError saying which path/id is missing and how to get it."""
    from diffusers import AutoencoderKL

    name = params.pretrained
    if name is None:
        raise ValueError("load_autoencoder needs `pretrained` params")
    local = params.local_dir()  # raises MissingAssetError for a missing path
    if local is not None:
        root = Path(name).expanduser()
        if not (local / "config.json").is_file():
            params.identity_files()  # raises the MissingAssetError that lists what is there
        try:
            with _quiet_hub():
                return AutoencoderKL.from_pretrained(str(root), subfolder=params.subfolder, local_files_only=True, **_LOAD)
        except (OSError, ValueError, EnvironmentError) as error:
            raise MissingAssetError(
                f"could not load a diffusers AutoencoderKL from {str(local)!r}: {error}. The directory needs config.json "
                "and diffusion_pytorch_model.safetensors (as written by `save_pretrained`)."
            ) from error
    # A hub id: use the local hub cache first, the network only if allowed.
    kwargs = {"subfolder": params.subfolder, "revision": params.revision}
    try:
        with _quiet_hub():
            return AutoencoderKL.from_pretrained(name, local_files_only=True, **kwargs, **_LOAD)
    except Exception as cached_error:  # noqa: BLE001 - not cached; maybe downloadable
        if not hub_offline():
            try:
                with _quiet_hub():
                    return AutoencoderKL.from_pretrained(name, **kwargs, **_LOAD)
            except Exception as error:  # noqa: BLE001 - reported with the fix
                cached_error = error
        where = f"{name}" + (f" (subfolder {params.subfolder})" if params.subfolder else "")
        raise MissingAssetError(
            f"pretrained VAE {where!r} is neither a local directory nor fetchable from the Hugging Face hub here "
            f"({type(cached_error).__name__}: {str(cached_error).splitlines()[0] if str(cached_error) else ''}). "
            + download_hint(name, params.revision)
            + (f", with `subfolder: {params.subfolder}`" if params.subfolder else "")
        ) from cached_error


@contextlib.contextmanager
def _quiet_hub():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
        yield


def train_preset(params: VAEParams, directory: str | os.PathLike, context=None) -> dict[str, Any]:
    """Train ``params.preset`` and save it (diffusers layout) into ``directory``; the
    returned summary goes into the store manifest. With a context, resume checkpoints go to the
    artifact's ``partial/`` work directory (an interrupted run resumes there)."""
    from tokbench.training.loop import Checkpoints
    from tokbench_vae.train import shapes_sources, train_tiny

    train = params.train
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train_images, holdout = shapes_sources(train, context)
    device = context.device if context is not None else "cpu"
    track = context.track if context is not None else None
    checkpoints = Checkpoints.for_artifact(context, preset_key_inputs(params, context), PRESET_KIND)
    model, summary = train_tiny(train, train_images, holdout, device=device, track=track, log=logger.info,
                                checkpoints=checkpoints)
    model.to("cpu").save_pretrained(str(directory), safe_serialization=True)
    return write_training_summary(directory, params.preset, preset_key_inputs(params, context), summary)


#: bump when the training recipe changes in a way the params do not show
TRAINING_FORMAT = 1
#: the store kind of a trained preset
PRESET_KIND = "tokenizer-checkpoint"


def preset_key_inputs(params: VAEParams, context=None) -> dict[str, Any]:
    """What determines a preset's trained weights: recipe version, train params and data."""
    from tokbench.training.tiny import preset_key_inputs as key_inputs

    return key_inputs("tokbench_vae", TRAINING_FORMAT, params.preset, params.train, context)


def build_vae(params: VAEParams | dict, context=None, directory: str | os.PathLike | None = None) -> VAETokenizer:
    """The tokenizer for ``params``.

    ``pretrained``: loaded with ``AutoencoderKL.from_pretrained``. ``preset``: the
    weights come from the store (trained once by ``train_preset``); without a
    context they are trained into ``directory`` (reused when it already holds a
    model) or a temporary directory.
    """
    from diffusers import AutoencoderKL

    if not isinstance(params, VAEParams):
        params = VAEParams.model_validate(params)
    if params.pretrained is not None:
        model, source = load_autoencoder(params), params.pretrained
    elif params.checkpoint is not None:
        from tokbench_vae.ldm import load_ldm_autoencoder

        path = resolve_checkpoint(params)
        model, _ = load_ldm_autoencoder(path, sample_size=params.resolution)
        tokenizer = VAETokenizer(model, params, source=str(path))
        tokenizer.latent_stats_path = resolve_latent_stats(params)
        return tokenizer.placed(context)
    else:
        if context is not None:
            weights = context.cached(
                key_inputs=preset_key_inputs(params, context),
                kind=PRESET_KIND,
                producer=lambda target: train_preset(params, target, context),
                label=f"vae {params.preset}",
            )
        elif directory is not None:
            weights = Path(directory)
            if not (weights / "config.json").is_file():
                train_preset(params, weights)
            else:
                check_trained_with(weights, preset_key_inputs(params))
        else:
            with tempfile.TemporaryDirectory(prefix="tokbench-vae-") as tmp:
                train_preset(params, tmp)
                model = AutoencoderKL.from_pretrained(tmp, local_files_only=True, **_LOAD)
            return VAETokenizer(model, params, source=f"preset:{params.preset}").placed(context)
        model, source = AutoencoderKL.from_pretrained(str(weights), local_files_only=True, **_LOAD), str(weights)
    return VAETokenizer(model, params, source=source).placed(context)


def _release_file(params: VAEParams, filename: str) -> Path:
    release = params.release()
    try:
        return hub_file(release["repo"], filename)
    except Exception as error:  # noqa: BLE001 - reported with the fix
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise MissingAssetError(
            f"{params.checkpoint}: {release['repo']}/{filename} is not in the local hub cache and cannot be downloaded "
            f"here ({type(error).__name__}: {first_line}). Download it on a machine with internet: "
            f"`huggingface-cli download {release['repo']} --local-dir <dir>`, then set `checkpoint: <dir>/{release['file']}` "
            f"and `latent_stats: <dir>/{release['latent_stats']}`"
        ) from error


def resolve_checkpoint(params: VAEParams) -> Path:
    """The checkpoint file: the local path, or the release's file from the hub cache / network."""
    local = params.checkpoint_file()
    return local if local is not None else _release_file(params, params.release()["file"])


def resolve_latent_stats(params: VAEParams) -> Path | None:
    """The ``latents_stats.pt`` to use: the given file, else the release's, else None."""
    local = params.latent_stats_file()
    if local is not None or params.release() is None:
        return local
    return _release_file(params, params.release()["latent_stats"])
