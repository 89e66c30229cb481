"""Architectures of the presets this plugin trains from scratch (no torch here).

``tiny`` is a small f4 KL-VAE sized for the offline quickstart: it trains on
64x64 ``shapes`` images on two CPU cores in about two minutes. Its knobs live in
``TinyTrainParams`` so a suite can change them (and the cache key follows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tokbench_vae.params import TinyTrainParams

PRESETS = ("tiny",)

#: Released LDM-layout KL-VAE checkpoints, usable as ``checkpoint: <name>``: hub repo, weight
#: file and per-channel latent statistics (fetched through the hub cache, or downloaded online).
RELEASES: dict[str, dict[str, str]] = {
    "va-vae-f16d32": {
        "repo": "hustvl/vavae-imagenet256-f16d32-dinov2",
        "file": "vavae-imagenet256-f16d32-dinov2.pt",
        "latent_stats": "latents_stats.pt",
    },
}

#: Default architecture of the tiny preset (also the defaults of TinyTrainParams).
TINY_BLOCK_OUT_CHANNELS: tuple[int, ...] = (16, 32, 64)
TINY_LAYERS_PER_BLOCK = 1
TINY_LATENT_CHANNELS = 4
TINY_NORM_NUM_GROUPS = 4
TINY_MID_BLOCK_ATTENTION = False


def autoencoder_config(train: "TinyTrainParams") -> dict[str, Any]:
    """Keyword arguments of ``diffusers.AutoencoderKL`` for the tiny preset."""
    levels = len(train.block_out_channels)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": list(train.block_out_channels),
        "layers_per_block": train.layers_per_block,
        "act_fn": "silu",
        "latent_channels": train.latent_channels,
        "norm_num_groups": train.norm_num_groups,
        "sample_size": train.resolution,
        "mid_block_add_attention": train.mid_block_attention,
        # Replaced by the measured latent statistics after training.
        "scaling_factor": 1.0,
        "force_upcast": False,
    }
