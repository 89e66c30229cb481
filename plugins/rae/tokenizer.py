"""``RAETokenizer``: a frozen representation encoder + RAE ``GeneralDecoder`` behind the tokbench contract.

Pixels are [0, 1] at the boundary. ``encode`` returns the RAW latent: the encoder's last-block
tokens through its final norm without affine, CLS and registers dropped, as (B, C, h, w); no
``stat.pt`` normalisation. :meth:`RAETokenizer.latent_normalization` gives the per-element
(mean, std) for generation, which standardises ``(z - mean) / std``.

Resolution: the latent grid is ``image side / decoder patch`` (16 for 256 px); the encoder sees
the image resized to ``grid x encoder patch`` (224 px for DINOv2/14), and the decoder outputs
``grid x decoder patch`` pixels, i.e. the input size. ``encode`` works at any multiple of the
decoder patch (the encoder's position table is resampled), ``decode`` only at the grid the
decoder was built for (its native resolution).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from tokbench.api import Capability, LatentSpec, Tokenizer
from tokbench.errors import MissingAssetError, did_you_mean
from tokbench.hashing import state_dict_fingerprint
from tokbench_rae.decoder import GeneralDecoder, read_decoder_file
from tokbench_rae.encoder import FrozenEncoder, load_timm_encoder
from tokbench_rae.latent_stats import read_stats
from tokbench_rae.params import HUB_REPO, RELEASED, RAEParams
from tokbench_rae.pipeline import decode_pixels, encode_tokens, encoder_pixels, tokens_to_grid

#: intermediate blocks exposed by name (``block-1`` .. ``block-4``: the DINOv2 probing set)
PROBE_BLOCKS = 4
_BLOCK_NAME = re.compile(r"^block-(\d+)\.(cls|patch_mean)$")


class RAETokenizer(Tokenizer):
    """See the module docstring. Feature names of :meth:`image_features` (D = encoder width):

    - ``cls`` / ``patch_mean``: CLS token / mean patch token (registers excluded) after the
      encoder's final norm *with* its affine: the encoder's own features (DINOv2 protocol)
    - ``block-k.cls`` / ``block-k.patch_mean`` (k = 1..4): the same after the k-th last block
      (``get_intermediate_layers(norm=True)``; ``block-1.*`` equal ``cls``/``patch_mean``)
    - ``latent_mean``: mean of the RAE latent tokens (norm without affine) -- what a generator sees
    """

    capabilities = frozenset({Capability.ENCODE, Capability.DECODE, Capability.IMAGE_FEATURES})

    def __init__(
        self,
        encoder: FrozenEncoder,
        decoder: GeneralDecoder,
        params: RAEParams | None = None,
        stats: tuple[Tensor, Tensor] | None = None,
        source: str | None = None,
    ):
        if encoder.width != decoder.config.latent_dim:
            raise ValueError(
                f"the decoder reads {decoder.config.latent_dim}-wide tokens but the encoder gives {encoder.width}; "
                "use the encoder the decoder was trained on"
            )
        self.encoder = encoder.eval().requires_grad_(False)
        self.decoder = decoder.eval().requires_grad_(False)
        self.params = params
        self.precision = params.precision if params is not None else "fp32"
        self.source = source
        self.native_resolution = decoder.config.image_size
        if stats is not None:
            expected = (1, encoder.width, decoder.config.grid, decoder.config.grid)
            if any(tuple(t.shape) != expected for t in stats):
                raise ValueError(f"latent statistics must be {expected}, got {[tuple(t.shape) for t in stats]}")
        self._stats = stats

    # ---- contract --------------------------------------------------------------------------------
    def latent_spec(self, image_size: int) -> LatentSpec:
        patch = self.decoder.config.patch_size
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the decoder patch size {patch}")
        side = image_size // patch
        return LatentSpec(channels=self.encoder.width, height=side, width=side, downsample=patch)

    def encode(self, images: Tensor) -> Tensor:
        """[0, 1] (B, 3, H, W) -> raw latents (B, C, H/p, W/p) (p = decoder patch)."""
        grid = self._grid(images)
        with torch.no_grad(), self._autocast():
            tokens = encode_tokens(self.encoder, images.to(device=self.device, dtype=self.dtype), grid)
        return tokens_to_grid(tokens.to(self.dtype), grid).contiguous()

    def decode(self, latents: Tensor) -> Tensor:
        """Raw latents -> [0, 1] images (ImageNet de-normalised, clamped)."""
        grid = self.decoder.config.grid
        if tuple(latents.shape[-2:]) != (grid, grid):
            raise ValueError(
                f"this decoder decodes {grid}x{grid} latents ({self.native_resolution} px images), got "
                f"{tuple(latents.shape[-2:])}; resize images to {self.native_resolution} px before encoding"
            )
        with torch.no_grad(), self._autocast():
            images = decode_pixels(self.decoder, latents.to(device=self.device, dtype=self.dtype))
        return images.to(self.dtype).clamp(0, 1).contiguous()

    def fingerprint(self) -> str:
        state = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        state.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
        if self._stats is not None:  # generation standardises with them
            state.update({"stats.mean": self._stats[0], "stats.std": self._stats[1]})
        extra = {
            "family": "tokbench_rae",
            "encoder": self.encoder.identity(),
            "decoder": vars(self.decoder.config),
            "precision": self.precision,
        }
        return state_dict_fingerprint(state, extra=extra)

    def modules(self) -> Sequence[torch.nn.Module]:
        return [self.encoder, self.decoder]

    def to(self, device=None, dtype=None) -> "RAETokenizer":
        """Move/cast; a VTP trunk's RoPE ``periods`` stay bf16 as stored (RoPE computes in bf16)."""
        super().to(device=device, dtype=dtype)
        if dtype is not None:
            for name, buffer in self.encoder.named_buffers():
                if name.endswith("rope_embed.periods"):
                    buffer.data = buffer.data.to(torch.bfloat16)
        return self

    # ---- generation ------------------------------------------------------------------------------
    def latent_normalization(self) -> tuple[Tensor, Tensor] | None:
        """Per-element (mean, std), each (1, C, h, w) float32 on the CPU, std = sqrt(var + 1e-5),
        from ``stat.pt``; None without statistics."""
        return self._stats

    # ---- features --------------------------------------------------------------------------------
    def feature_names(self) -> list[str]:
        names = ["cls", "patch_mean", "latent_mean"]
        for k in range(1, min(PROBE_BLOCKS, self.encoder.depth) + 1):
            names += [f"block-{k}.cls", f"block-{k}.patch_mean"]
        return names

    def image_features(self, images: Tensor, layers: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Named (B, D) features in one encoder pass that stops at the deepest block needed."""
        wanted = list(dict.fromkeys(["cls", "patch_mean", "latent_mean"] if layers is None else layers))
        if not wanted:
            raise ValueError(f"image_features needs at least one name; available: {', '.join(self.feature_names())}")
        depth = self.encoder.depth
        blocks: dict[str, int] = {}
        for name in wanted:
            match = _BLOCK_NAME.match(name)
            if match and 1 <= int(match.group(1)) <= min(PROBE_BLOCKS, depth):
                blocks[name] = depth - int(match.group(1))
            elif name in ("cls", "patch_mean", "latent_mean"):
                blocks[name] = depth - 1
            else:
                suggestion = did_you_mean(name, self.feature_names())
                raise ValueError(
                    f"unknown RAE feature {name!r}; available: {', '.join(self.feature_names())}"
                    + (f" (did you mean {suggestion!r}?)" if suggestion else "")
                )
        indices = sorted(set(blocks.values()))
        prefix = self.encoder.prefix_tokens
        x = encoder_pixels(images.to(device=self.device, dtype=self.dtype), self._grid(images), self.encoder.patch_size)
        out: dict[str, Tensor] = {}
        with torch.no_grad(), self._autocast():
            raw = dict(zip(indices, self.encoder.blocks_output(x, indices)))
            for name in wanted:
                tokens = raw[blocks[name]]
                if name == "latent_mean":
                    value = self.encoder.plain_norm(tokens)[:, prefix:].mean(dim=1)
                else:
                    normed = self.encoder.final_norm(tokens)
                    value = normed[:, 0] if name.endswith("cls") else normed[:, prefix:].mean(dim=1)
                out[name] = value.to(self.dtype).contiguous()
        return out

    def describe(self) -> dict[str, Any]:
        def count(module: torch.nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        return {
            "source": self.source,
            "encoder": self.encoder.identity(),
            "decoder": vars(self.decoder.config),
            "native_resolution": self.native_resolution,
            "precision": self.precision,
            "latent_normalization": "per-element stat.pt" if self._stats is not None else None,
            "parameters": {"encoder": count(self.encoder), "decoder": count(self.decoder)},
        }

    # ---- helpers ---------------------------------------------------------------------------------
    def _grid(self, images: Tensor) -> int:
        height, width = images.shape[-2:]
        if height != width:
            raise ValueError(f"RAE encodes square images; got {height}x{width}")
        return self.latent_spec(int(height)).height

    def _autocast(self):
        if self.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


# ---- building ------------------------------------------------------------------------------------
def released_file(path_in_repo: str, revision: str | None, setting: str) -> Path:
    """A file of nyu-visionx/RAE-collections from the hub cache (or the network unless offline)."""
    from tokbench.nn.hub import hub_file

    try:
        return hub_file(HUB_REPO, path_in_repo, revision)
    except Exception as error:  # noqa: BLE001 - reported with the fix
        first = str(error).splitlines()[0] if str(error) else ""
        raise MissingAssetError(
            f"{HUB_REPO}:{path_in_repo} is not in the local hub cache and cannot be downloaded here "
            f"({type(error).__name__}: {first}). On a machine with internet run `hf download {HUB_REPO} {path_in_repo} "
            f"--local-dir ./weights/rae`, copy it here and set `{setting}: ./weights/rae/{path_in_repo}` "
            "(with `pretrained` removed; set `decoder`, `stats` and `encoder_checkpoint` to local files)"
        ) from error


def build_rae(params: RAEParams | dict, context=None) -> RAETokenizer:
    """The tokenizer for ``params`` (the registered factory); moved to ``context.device`` when given."""
    if not isinstance(params, RAEParams):
        params = RAEParams.model_validate(params)
    local = params.local_files()  # MissingAssetError for a named file that is not there
    training_flops = None
    if params.preset is not None:
        if context is None:
            raise ValueError(
                "`preset: tiny` needs a build context: its weights are trained once and kept in the store. Build it "
                "through a suite (`tokbench run`), or pass `context=tokbench.runtime.context.BuildContext(store=...)`"
            )
        from tokbench_rae.train import load_vtp_encoder, tiny_artifacts

        encoder_dir, decoder_dir, training_flops = tiny_artifacts(params, context)
        encoder: FrozenEncoder = load_vtp_encoder(encoder_dir)
        decoder_file, stats_file, source = decoder_dir / "model.pt", decoder_dir / "stat.pt", "preset:tiny"
    else:
        released = RELEASED.get(params.pretrained) if params.pretrained is not None else None
        if released is not None:
            decoder_file = released_file(released.decoder, params.revision, "decoder")
            stats_file = local.get("stats") or released_file(released.stats, params.revision, "stats")
            source = f"{HUB_REPO}:{released.decoder}"
        else:
            decoder_file, stats_file, source = local["decoder"], local.get("stats"), str(local["decoder"])
        encoder = load_timm_encoder(params.encoder, params.encoder_checkpoint)
    decoder = read_decoder_file(decoder_file)
    stats = None
    if stats_file is not None:
        stats = read_stats(stats_file, (encoder.width, decoder.config.grid, decoder.config.grid))
    tokenizer = RAETokenizer(encoder, decoder, params, stats=stats, source=source)
    tokenizer.training_flops = training_flops
    if context is not None:
        tokenizer.to(context.device)
    return tokenizer.eval()

