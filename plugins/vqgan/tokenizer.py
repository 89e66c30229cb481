"""``VQGANTokenizer``: a diffusers ``VQModel`` with this plugin's code lookup behind the tokbench contract.

Pixels in [0, 1] at the boundary, [-1, 1] inside; ``decode`` clamps to [0, 1].
``encode`` returns the quantised code vectors (``latent: codes``; normalised for an
l2 codebook) or the latent before quantisation (``latent: pre_quant``), (B, dim, h, w).
``decode`` always snaps its input to the nearest codes first, as the VQ decoder only ever
saw codes (a no-op on ``encode``'s codes). ``encode_indices`` / ``decode_indices`` give
and take the discrete (B, h, w) code indices.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from tokbench.api import Capability, LatentSpec
from tokbench.errors import MissingAssetError
from tokbench.hashing import state_dict_fingerprint
from tokbench.nn.hub import hub_file
from tokbench.tokenizers.diffusers_model import DiffusersModelTokenizer
from tokbench.training.tiny import TRAINING_SUMMARY, check_trained_with, write_training_summary
from tokbench_vqgan import formats
from tokbench_vqgan.model import VQArchitecture
from tokbench_vqgan.params import VQGANParams
from tokbench_vqgan.presets import HUB_PREFIX, RELEASED

#: where the tiny preset's weights are written inside its store directory (official layouts)
TINY_LLAMAGEN_FILE = "vq_tiny.pt"
TINY_TAMING_FILES = ("ckpts/last.ckpt", "configs/model.yaml")
logger = logging.getLogger("tokbench_vqgan")


class VQGANTokenizer(DiffusersModelTokenizer):
    """Wraps a VQ autoencoder; see the module docstring for the conventions."""

    capabilities = frozenset({Capability.ENCODE, Capability.DECODE, Capability.DISCRETE})

    def __init__(self, model, arch: VQArchitecture, params: VQGANParams | None = None, source: str | None = None,
                 summary: dict[str, Any] | None = None):
        self.model = model.eval().requires_grad_(False)
        self.arch = arch
        self.params = params or VQGANParams(preset="tiny")
        #: where the weights came from, for records
        self.source = source
        #: the training summary of a preset trained here (codebook usage, PSNR), else None
        self.summary = summary
        self.downsample = arch.downsample
        self.native_resolution = arch.sample_size
        self._channels_last_on_gpu()

    @property
    def quantizer(self):
        return self.model.quantize

    # ---- contract ---------------------------------------------------------------
    def latent_spec(self, image_size: int) -> LatentSpec:
        if image_size % self.downsample:
            raise ValueError(f"image size {image_size} is not divisible by this VQ model's downsampling factor {self.downsample}")
        side = image_size // self.downsample
        codes = self.params.latent == "codes"
        return LatentSpec(channels=self.arch.codebook_dim, height=side, width=side, downsample=self.downsample,
                          discrete=codes, codebook_size=self.arch.codebook_size if codes else None)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        h = self._pre_quant(images)
        if self.params.latent == "pre_quant":
            return h.contiguous()
        with torch.no_grad():
            return self.quantizer.lookup(self.quantizer.indices(h)).to(self.dtype).contiguous()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = self._prepare(latents)
        with torch.no_grad():
            return self._decode_codes(self.quantizer.lookup(self.quantizer.indices(z)))

    def encode_indices(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, h, w) long code indices."""
        with torch.no_grad():
            return self.quantizer.indices(self._pre_quant(images))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) code indices -> (B, 3, H, W) images in [0, 1]."""
        if indices.dtype not in (torch.int32, torch.int64) or indices.ndim != 3:
            raise ValueError(f"decode_indices expects (B, h, w) integer indices, got {tuple(indices.shape)} {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.arch.codebook_size):
            raise ValueError(f"code indices must lie in [0, {self.arch.codebook_size}); got {int(indices.min())}..{int(indices.max())}")
        with torch.no_grad():
            return self._decode_codes(self.quantizer.lookup(indices.to(self.device, torch.long)))

    def fingerprint(self) -> str:
        extra = {"family": "tokbench_vqgan.VQModel", "architecture": self.arch.output_config(),
                 "latent": self.params.latent, "precision": self.params.precision}
        return state_dict_fingerprint(self.model.state_dict(), extra=extra)

    # ---- helpers ------------------------------------------------------------------
    def _pre_quant(self, images: torch.Tensor) -> torch.Tensor:
        x = self._prepare(images) * 2 - 1
        with torch.no_grad(), self._autocast():
            h = self.model.encode(x).latents
        return h.to(self.dtype)

    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            images = self.model.decoder(self.model.post_quant_conv(self._prepare(codes)))
        return ((images.to(self.dtype) + 1) / 2).clamp(0, 1).contiguous()

    @torch.no_grad()
    def codebook_usage(self, images: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
        """Fraction of codes used and code perplexity over ``images`` (B, 3, H, W) in [0, 1]."""
        counts = torch.zeros(self.arch.codebook_size, dtype=torch.float64)
        for start in range(0, len(images), batch_size):
            index = self.encode_indices(images[start:start + batch_size]).flatten().cpu()
            counts += torch.bincount(index, minlength=self.arch.codebook_size).double()
        return usage_statistics(counts)

    def describe(self) -> dict[str, Any]:
        described = {
            "source": self.source,
            "format": self.params.checkpoint_format() or ("llamagen" if self.arch.l2_norm else "taming"),
            "codebook_size": self.arch.codebook_size,
            "codebook_dim": self.arch.codebook_dim,
            "l2_normalised_codes": self.arch.l2_norm,
            "latent": self.params.latent,
            "downsample": self.downsample,
            "block_out_channels": list(self.arch.block_out_channels),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }
        if self.summary is not None:
            described.update({k: self.summary[k] for k in ("codebook_usage", "code_perplexity", "holdout_psnr") if k in self.summary})
        return described


def usage_statistics(counts: torch.Tensor) -> dict[str, float]:
    """Used fraction and perplexity (exp entropy) of a histogram of code indices."""
    total = counts.sum()
    probabilities = counts / total.clamp_min(1)
    entropy = -(probabilities[probabilities > 0] * probabilities[probabilities > 0].log()).sum()
    return {"codebook_usage": float((counts > 0).double().mean()), "code_perplexity": float(entropy.exp())}


# ---- loading ---------------------------------------------------------------------------
def resolve_checkpoint(params: VQGANParams) -> Path:
    """The local file ``params`` name: a path, or a hub file from the hub cache (downloaded
    unless offline). MissingAssetError says which file is missing and how to get it."""
    local = params.local_checkpoint()
    if local is not None:
        return local
    ref = params.checkpoint_ref()
    if ref is None or not ref.startswith(HUB_PREFIX):
        raise ValueError("resolve_checkpoint needs a checkpoint (not the tiny preset)")
    hub_id, _, filename = ref[len(HUB_PREFIX):].rpartition("/")
    try:
        return hub_file(hub_id, filename, params.revision)
    except Exception as error:  # noqa: BLE001 - reported with the fix
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise MissingAssetError(
            f"VQ checkpoint {ref!r} is not in the local hub cache and cannot be downloaded here "
            f"({type(error).__name__}: {first_line}); {params.how_to_get()}"
        ) from error


def load_checkpoint(params: VQGANParams):
    """(model, architecture, source) for a checkpoint-backed ``params``, loaded strictly."""
    path = resolve_checkpoint(params)
    config = params.taming_config(path)
    model, arch = formats.load(path, params.checkpoint_format(), config, params.how_to_get())
    released = RELEASED.get(params.preset or "")
    if released is not None and (arch.codebook_size, arch.codebook_dim) != (released.codebook_size, released.codebook_dim):
        raise formats.CheckpointFormatError(
            f"{path} has {arch.codebook_size} codes of dim {arch.codebook_dim}, but `preset: {params.preset}` has "
            f"{released.codebook_size} of dim {released.codebook_dim}; fix the preset or the file"
        )
    return model, arch, str(path)


def export_checkpoint(model, arch: VQArchitecture, directory: Path, step: int = 0) -> Path:
    """Write ``model`` into ``directory`` in an official layout: LlamaGen ``.pt`` for an l2
    codebook, else taming ``ckpts/last.ckpt`` + ``configs/model.yaml``. Returns the checkpoint path."""
    if arch.l2_norm:
        path = directory / TINY_LLAMAGEN_FILE
        formats.save_llamagen(model, arch, path, step)
        return path
    path = directory / TINY_TAMING_FILES[0]
    formats.save_taming(model, arch, path, directory / TINY_TAMING_FILES[1], step)
    return path


def tiny_checkpoint(directory: Path) -> Path | None:
    for name in (TINY_LLAMAGEN_FILE, TINY_TAMING_FILES[0]):
        if (directory / name).is_file():
            return directory / name
    return None


def train_preset(params: VQGANParams, directory: str | os.PathLike, context=None) -> dict[str, Any]:
    """Train ``params.preset`` and export it (official layout) into ``directory``; the
    returned summary goes into the store manifest. With a context, resume checkpoints go to the
    artifact's ``partial/`` work directory (an interrupted run resumes there)."""
    from tokbench.training.loop import Checkpoints
    from tokbench_vqgan.train import shapes_sources, train_tiny

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train_images, holdout = shapes_sources(params.train, context)
    device = context.device if context is not None else "cpu"
    track = context.track if context is not None else None
    checkpoints = Checkpoints.for_artifact(context, preset_key_inputs(params, context), PRESET_KIND)
    model, arch, summary = train_tiny(params.train, train_images, holdout, device=device, track=track, log=logger.info,
                                      checkpoints=checkpoints)
    path = export_checkpoint(model.to("cpu"), arch, directory, params.train.steps)
    return write_training_summary(directory, params.preset, preset_key_inputs(params, context), summary,
                                  checkpoint=path.relative_to(directory).as_posix())


#: bump when the training recipe changes in a way the params do not show
TRAINING_FORMAT = 2
#: the store kind of a trained preset
PRESET_KIND = "tokenizer-checkpoint"


def preset_key_inputs(params: VQGANParams, context=None) -> dict[str, Any]:
    """What determines a preset's trained weights: recipe version, train params and data."""
    from tokbench.training.tiny import preset_key_inputs as key_inputs

    return key_inputs("tokbench_vqgan", TRAINING_FORMAT, params.preset, params.train, context)


def _load_trained(directory: Path, params: VQGANParams) -> VQGANTokenizer:
    path = tiny_checkpoint(directory)
    if path is None:
        raise MissingAssetError(f"{str(directory)!r} holds no trained tiny VQ model ({TINY_LLAMAGEN_FILE} or {TINY_TAMING_FILES[0]})")
    fmt = "llamagen" if path.name == TINY_LLAMAGEN_FILE else "taming"
    config = directory / TINY_TAMING_FILES[1] if fmt == "taming" else None
    model, arch = formats.load(path, fmt, config)
    summary_path = directory / TRAINING_SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    return VQGANTokenizer(model, arch, params, source=str(path), summary=summary)


def build_vqgan(params: VQGANParams | dict, context=None, directory: str | os.PathLike | None = None) -> VQGANTokenizer:
    """The tokenizer for ``params``.

    A checkpoint is loaded strictly. ``preset: tiny``: the weights come from the store
    (trained once by ``train_preset``); without a context they are trained into
    ``directory`` (reused when it already holds a model trained with these settings) or
    a temporary directory.
    """
    if not isinstance(params, VQGANParams):
        params = VQGANParams.model_validate(params)
    if params.preset != "tiny":
        model, arch, source = load_checkpoint(params)
        return VQGANTokenizer(model, arch, params, source=source).placed(context)
    if context is not None:
        weights = context.cached(
            key_inputs=preset_key_inputs(params, context),
            kind=PRESET_KIND,
            producer=lambda target: train_preset(params, target, context),
            label=f"vqgan {params.preset}",
        )
        return _load_trained(Path(weights), params).placed(context)
    if directory is not None:
        weights = Path(directory)
        if tiny_checkpoint(weights) is None:
            train_preset(params, weights)
        else:
            check_trained_with(weights, preset_key_inputs(params))
        return _load_trained(weights, params).placed(context)
    with tempfile.TemporaryDirectory(prefix="tokbench-vqgan-") as tmp:
        train_preset(params, tmp)
        return _load_trained(Path(tmp), params).placed(context)
