"""The VQ autoencoder: diffusers ``VQModel`` with :class:`CodebookQuantizer`, built from an
architecture description that is either given (tiny preset) or read off a state dict."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import torch

from tokbench.nn.checkpoints import CheckpointFormatError
from tokbench.nn.conv_layouts import diffusers_block_types
from tokbench.nn.ldm_numerics import use_ldm_numerics
from tokbench_vqgan.quantizer import CodebookQuantizer


@dataclass(frozen=True)
class VQArchitecture:
    """Everything that shapes the model: the conv skeleton and the quantiser."""

    block_out_channels: tuple[int, ...]
    layers_per_block: int
    latent_channels: int
    codebook_size: int
    codebook_dim: int
    attention_levels: tuple[int, ...] = ()
    mid_attention: bool = True
    #: not visible in the weights: 32 in taming and LlamaGen
    norm_num_groups: int = 32
    l2_norm: bool = False
    beta: float = 0.25
    legacy_beta: bool = True
    sample_size: int = field(default=256, compare=False)

    @property
    def levels(self) -> int:
        return len(self.block_out_channels)

    @property
    def downsample(self) -> int:
        return 2 ** (self.levels - 1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["block_out_channels"] = list(self.block_out_channels)
        data["attention_levels"] = list(self.attention_levels)
        return data

    def output_config(self) -> dict[str, Any]:
        """What changes encode/decode outputs (``sample_size`` and ``beta`` do not)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("sample_size", "beta", "legacy_beta")}


def build_model(arch: VQArchitecture):
    """A diffusers ``VQModel`` for ``arch`` (random weights) with the code lookup replaced."""
    from diffusers import VQModel

    bad = [c for c in (*arch.block_out_channels, arch.latent_channels) if c % arch.norm_num_groups]
    if bad:
        raise CheckpointFormatError(f"channel counts {bad} are not divisible by norm_num_groups={arch.norm_num_groups}")
    down, up = diffusers_block_types(arch.levels, set(arch.attention_levels))
    model = VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(arch.block_out_channels),
        layers_per_block=arch.layers_per_block,
        act_fn="silu",
        latent_channels=arch.latent_channels,
        sample_size=arch.sample_size,
        num_vq_embeddings=arch.codebook_size,
        norm_num_groups=arch.norm_num_groups,
        vq_embed_dim=arch.codebook_dim,
        scaling_factor=1.0,
        mid_block_add_attention=arch.mid_attention,
    )
    model.quantize = CodebookQuantizer(
        arch.codebook_size, arch.codebook_dim, beta=arch.beta, legacy=arch.legacy_beta, l2_norm=arch.l2_norm
    )
    # the reference's op order: fp32 outputs bit-identical to taming / LlamaGen (see tokbench.nn.ldm_numerics)
    return use_ldm_numerics(model)


def _indices(keys, pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for key in keys if (m := regex.match(key))})


def infer_architecture(state: Mapping[str, torch.Tensor], source: str, **quantizer: Any) -> VQArchitecture:
    """The architecture of a state dict in diffusers layout (sizes from the tensor shapes).
    ``quantizer`` passes what the weights cannot show (``norm_num_groups``, ``l2_norm``, ...)."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointFormatError(f"{source}: key {key!r} is missing; not a VQGAN/VQ-VAE state dict of this family")
        return tuple(state[key].shape)

    levels = _indices(state, r"^encoder\.down_blocks\.(\d+)\.")
    if not levels or levels != list(range(len(levels))):
        raise CheckpointFormatError(f"{source}: encoder levels {levels} are missing or not contiguous")
    channels = tuple(shape(f"encoder.down_blocks.{i}.resnets.0.conv2.weight")[0] for i in levels)
    layers = _indices(state, r"^encoder\.down_blocks\.0\.resnets\.(\d+)\.")
    attention = tuple(i for i in levels if any(k.startswith(f"encoder.down_blocks.{i}.attentions.") for k in state))
    codebook_size, codebook_dim = shape("quantize.embedding.weight")
    return VQArchitecture(
        block_out_channels=channels,
        layers_per_block=len(layers),
        latent_channels=shape("encoder.conv_out.weight")[0],
        codebook_size=codebook_size,
        codebook_dim=codebook_dim,
        attention_levels=attention,
        mid_attention=any(k.startswith("encoder.mid_block.attentions.") for k in state),
        **quantizer,
    )


def count_levels(state: Mapping[str, Any], layout: str) -> int:
    """Number of resolution levels of an ``ldm`` or ``llamagen`` encoder state dict."""
    pattern = {"ldm": r"^encoder\.down\.(\d+)\.", "llamagen": r"^encoder\.conv_blocks\.(\d+)\."}[layout]
    return len(_indices(state, pattern))
