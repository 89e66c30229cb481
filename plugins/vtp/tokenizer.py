"""``VTPTokenizer``: a :class:`~tokbench_vtp.model.vtp.VTPModel` behind the tokbench contract.

Pixels are [0, 1] at the boundary and ImageNet-normalised inside, exactly like the
official methods. ``encode`` returns the RAW bottleneck latent (B, C, H/p, W/p): no
per-channel standardisation; :meth:`VTPTokenizer.latent_normalization` gives the
official statistics for generation, which uses ``(z - mean) / std``.

Resolution: any image whose sides are multiples of the patch size works (the 2-D
RoPE adapts to the grid), but the released models were trained at 256 x 256, so
tasks should resize to :attr:`native_resolution` (256 for the released sizes; the
recipe's ``crops.image_size`` for models pretrained here).

Precision follows the official evaluation scripts: with ``precision: bf16`` the
encoder (and the text tower) runs under bf16 autocast on CUDA, the pixel decoder
always in fp32; on the CPU everything runs in the model's dtype.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from tokbench.api import Capability, CapabilityError, LatentSpec, Tokenizer
from tokbench.errors import did_you_mean
from tokbench.hashing import file_identity, state_dict_fingerprint
from tokbench.nn.checkpoints import read_latent_stats
from tokbench.nn.layers import imagenet_denormalize, imagenet_normalize
from tokbench_vtp.checkpoint import CONFIG_NAME, load_official, resolve_checkpoint
from tokbench_vtp.model.vtp import VTPModel
from tokbench_vtp.params import LATENT_STATS_HINT, VTPParams

#: resolution the released checkpoints were trained at
RELEASED_RESOLUTION = 256
#: intermediate blocks exposed by name (``block-1`` .. ``block-4``: the DINOv2 probing set)
PROBE_BLOCKS = 4
_BLOCK_NAME = re.compile(r"^block-(\d+)\.(cls|patch_mean)$")


class VTPTokenizer(Tokenizer):
    """Wraps a ``VTPModel``; see the module docstring for the conventions.

    Feature names of :meth:`image_features` (D = trunk width, C = latent channels):

    - ``cls``: final-normed CLS token (D)
    - ``patch_mean``: mean of the final-normed patch tokens (D)
    - ``latent_mean``: mean of the bottleneck latent tokens (C) -- the "bottleneck" probing protocol
    - ``clip``: L2-normalised CLIP image embedding (needs the text tower)
    - ``block-k.cls`` / ``block-k.patch_mean`` (k = 1..4): the same after the k-th last block,
      normed with the final norm like ``get_intermediate_layers_feature(norm=True)``
      (``block-1.*`` equal ``cls``/``patch_mean``)
    """

    def __init__(
        self,
        model: VTPModel,
        params: VTPParams | None = None,
        source: str | None = None,
        native_resolution: int = RELEASED_RESOLUTION,
    ):
        self.model = model.eval().requires_grad_(False)
        self.params = params
        self.arch = model.arch
        #: where the weights came from (file, hub id or recipe), for records
        self.source = source
        self.native_resolution = int(native_resolution)
        self.precision = params.precision if params is not None else "fp32"
        self.compile = params.compile if params is not None else False
        capabilities = {Capability.ENCODE, Capability.IMAGE_FEATURES}
        if model.pixel_decoder is not None:
            capabilities.add(Capability.DECODE)
        if model.arch.with_text:
            capabilities.add(Capability.TEXT)
        self.capabilities = frozenset(capabilities)  # per instance: depends on the loaded components
        self._compiled: dict[str, Callable[..., Any]] = {}
        self._latent_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    # ---- contract ---------------------------------------------------------------------
    def latent_spec(self, image_size: int) -> LatentSpec:
        side = self.arch.latent_side(image_size)  # ValueError for sizes that are not a multiple of the patch
        return LatentSpec(channels=self.arch.bottleneck, height=side, width=side, downsample=self.arch.patch_size)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] (B, 3, H, W) -> raw latents (B, C, H/p, W/p), as ``get_reconstruction_latents``."""
        x = imagenet_normalize(self._prepare(images))
        with torch.no_grad(), self._autocast():
            latents = self._trunk("latents")(x)
        return latents.to(self.dtype).contiguous()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> [0, 1] images: pixel decoder (fp32, never autocast), inverse ImageNet normalisation, clamp."""
        if self.model.pixel_decoder is None:
            raise CapabilityError("this VTP tokenizer was loaded without its pixel decoder (add 'decoder' to `components`)")
        z = self._prepare(latents)
        with torch.no_grad():
            images = self.model.get_latents_decoded_images(z)
        return imagenet_denormalize(images).clamp(0, 1).contiguous()

    def fingerprint(self) -> str:
        extra: dict[str, Any] = {
            "family": "tokbench_vtp.VTPModel",
            "architecture": self.arch.model_dump(mode="json"),
            "precision": self.precision,
        }
        stats = self.params.latent_stats_path() if self.params is not None else None
        if stats is not None:  # generation standardises with them
            extra["latent_stats"] = file_identity(stats)
        return state_dict_fingerprint(self.model.state_dict(), extra=extra)

    def modules(self) -> Sequence[torch.nn.Module]:
        return [self.model]

    def to(self, device=None, dtype=None) -> "VTPTokenizer":
        """Move/cast the model; the RoPE ``periods`` stay bf16 as in the checkpoint (a float
        cast would change the fingerprint, never the outputs: RoPE always computes in bf16)."""
        super().to(device=device, dtype=dtype)
        if dtype is not None:
            for name, buffer in self.model.named_buffers():
                if name.endswith("rope_embed.periods"):
                    buffer.data = buffer.data.to(torch.bfloat16)
        return self

    # ---- features ---------------------------------------------------------------------
    def feature_names(self) -> list[str]:
        """Every name :meth:`image_features` accepts for this model."""
        names = ["cls", "patch_mean", "latent_mean"] + (["clip"] if self.arch.with_text else [])
        for k in range(1, min(PROBE_BLOCKS, self.arch.vision_depth) + 1):
            names += [f"block-{k}.cls", f"block-{k}.patch_mean"]
        return names

    def default_features(self) -> list[str]:
        return ["cls", "patch_mean", "latent_mean"] + (["clip"] if self.arch.with_text else [])

    def image_features(self, images: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Named (B, dim) features (see the class docstring); only what ``layers`` asks for
        is computed, in one trunk pass that stops after the deepest block needed.
        ``layers=None``: ``cls``, ``patch_mean``, ``latent_mean`` (+ ``clip`` with a text tower)."""
        wanted = list(dict.fromkeys(self.default_features() if layers is None else layers))
        if not wanted:
            raise ValueError(f"image_features needs at least one layer name; available: {', '.join(self.feature_names())}")
        depth = self.arch.vision_depth
        blocks: dict[str, int] = {}  # name -> block index
        for name in wanted:
            match = _BLOCK_NAME.match(name)
            if match:
                k = int(match.group(1))
                if not 1 <= k <= min(PROBE_BLOCKS, depth):
                    raise ValueError(
                        f"feature {name!r}: block-k is defined for k = 1..{min(PROBE_BLOCKS, depth)} "
                        f"(this trunk has {depth} blocks)"
                    )
                blocks[name] = depth - k
            elif name in ("cls", "patch_mean", "latent_mean", "clip"):
                if name == "clip" and not self.arch.with_text:
                    raise CapabilityError("feature 'clip' needs the text tower / CLIP heads (add 'text' to `components`)")
                blocks[name] = depth - 1
            else:
                suggestion = did_you_mean(name, self.feature_names())
                raise ValueError(
                    f"unknown VTP feature {name!r}; available: {', '.join(self.feature_names())}"
                    + (f" (did you mean {suggestion!r}?)" if suggestion else "")
                )
        x = imagenet_normalize(self._prepare(images))
        indices = sorted(set(blocks.values()))
        features: dict[str, torch.Tensor] = {}
        with torch.no_grad(), self._autocast():
            raw = self._trunk("intermediate")(x, indices)
            normed = {index: self.model.trunk.norm(tokens) for index, tokens in zip(indices, raw)}
            for name in wanted:
                tokens = normed[blocks[name]]
                cls, patches = tokens[:, 0], tokens[:, 1:]
                if name.endswith("cls"):
                    value = cls
                elif name.endswith("patch_mean"):
                    value = patches.mean(dim=1)
                elif name == "latent_mean":
                    value = self.model.trunk.feature_bottleneck(patches).mean(dim=1)
                else:  # clip: the official CLIP head on the final-normed CLS / pooled tokens
                    pooled = cls if self.arch.clip_feature == "cls" else patches.mean(dim=1)
                    value = self.model.visual_proj(pooled)
                features[name] = value
        out = {name: value.to(self.dtype).contiguous() for name, value in features.items()}
        if "clip" in out:
            out["clip"] = F.normalize(out["clip"], dim=-1)
        return out

    # ---- text -------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, context_length) OpenAI CLIP BPE ids (on the CPU; ``text_features`` moves them)."""
        self._require_text()
        from tokbench_vtp.text_tokenizer import tokenize

        return tokenize(texts, context_length=self.arch.text_context_length)

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, clip_dim) L2-normalised text embeddings, as ``get_clip_text_feature``."""
        self._require_text()
        tokens = tokens.to(device=self.device, dtype=torch.long)
        with torch.no_grad(), self._autocast():
            features = self.model.get_clip_text_feature(tokens, normalize=False)
        return F.normalize(features.to(self.dtype), dim=-1).contiguous()

    @property
    def logit_scale(self) -> float:
        """The learned CLIP logit multiplier ``exp(logit_scale)`` (the official zero-shot script uses 100 instead)."""
        self._require_text()
        return float(self.model.logit_scale.detach().float().exp())

    # ---- generation ---------------------------------------------------------------------
    def latent_normalization(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-channel (mean, std), each (1, C, 1, 1) float32 on the CPU, from ``latent_stats``;
        None when unset. Generation standardises latents as ``(z - mean) / std``."""
        if self.params is None or self.params.latent_stats is None:
            return None
        if self._latent_stats is None:
            self._latent_stats = read_latent_stats(self.params.latent_stats_path(), self.arch.bottleneck, LATENT_STATS_HINT)
        return self._latent_stats

    def describe(self) -> dict[str, Any]:
        def count(module: torch.nn.Module | None) -> int:
            return sum(p.numel() for p in module.parameters()) if module is not None else 0

        total = count(self.model)
        trunk, decoder = count(self.model.trunk), count(self.model.pixel_decoder)
        return {
            "source": self.source,
            "architecture": self.arch.model_dump(mode="json"),
            "native_resolution": self.native_resolution,
            "precision": self.precision,
            "capabilities": sorted(c.value for c in self.capabilities),
            "parameters": {"trunk": trunk, "pixel_decoder": decoder, "text_and_clip": total - trunk - decoder, "total": total},
        }

    # ---- helpers ------------------------------------------------------------------------
    def _require_text(self) -> None:
        if not self.arch.with_text:
            raise CapabilityError("this VTP tokenizer was loaded without its text tower (add 'text' to `components`)")

    def _prepare(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device=self.device, dtype=self.dtype)

    def _autocast(self):
        if self.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _trunk(self, method: str) -> Callable[..., Any]:
        """A trunk method, through ``torch.compile`` (built on first use) when ``compile`` is set."""
        function = getattr(self.model.trunk, method)
        if not self.compile:
            return function
        if method not in self._compiled:
            self._compiled[method] = torch.compile(function)
        return self._compiled[method]


def _config_image_size(weights: Path) -> int:
    """``image_size`` from the ``config.json`` beside the weights (the released configs say 256)."""
    config = weights.parent / CONFIG_NAME
    if config.is_file():
        try:
            value = json.loads(config.read_text()).get("image_size")
        except (json.JSONDecodeError, AttributeError):
            value = None
        if isinstance(value, int) and value > 0:
            return value
    return RELEASED_RESOLUTION


def build_vtp(params: VTPParams | dict, context=None) -> VTPTokenizer:
    """The tokenizer for ``params`` (the registered factory).

    ``pretrained``: the official checkpoint is loaded (strictly; skipped components are not
    read). ``recipe``: the weights come from ``tokbench_vtp.pretrain.run.trained_checkpoint``,
    which pretrains once and caches the result in the store through ``context``.
    The model is moved to ``context.device`` when a context is given.
    """
    if not isinstance(params, VTPParams):
        params = VTPParams.model_validate(params)
    if params.pretrained is not None:
        params.local_checkpoint()  # MissingAssetError with the how-to for a bad local path
        weights = resolve_checkpoint(params.pretrained, params.revision)
        model = load_official(weights, components=params.components)
        tokenizer = VTPTokenizer(model, params, source=params.pretrained, native_resolution=_config_image_size(weights))
    else:
        if context is None:
            raise ValueError(
                f"`recipe: {params.recipe}` needs a build context: the pretrained weights are made once and kept in "
                "the store. Build it through a suite (`tokbench run`), or pass "
                "`context=tokbench.runtime.context.BuildContext(store=...)`; for weights you already have use `pretrained`."
            )
        from tokbench_vtp.pretrain.run import trained_checkpoint

        recipe = params.recipe_config()
        directory = Path(trained_checkpoint(recipe, context))
        model = load_official(directory, components=params.components)
        tokenizer = VTPTokenizer(
            model, params, source=f"recipe:{params.recipe}", native_resolution=recipe.crops.image_size
        )
        tokenizer.training_flops = recipe.training_flops()["total"] * recipe.steps  # stage 1 (the encoder)
    if params.latent_stats is not None:
        tokenizer.latent_normalization()  # fail now, not in the middle of a generation run
    if context is not None:
        tokenizer.to(context.device)
    return tokenizer.eval()
