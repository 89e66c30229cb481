"""LDM-layout KL-VAE checkpoints (VA-VAE, LightningDiT's ``tokenizer/autoencoder.py``) as
diffusers ``AutoencoderKL`` models.

VA-VAE ships as a PyTorch-Lightning checkpoint: ``state_dict`` holds ``encoder.*``,
``decoder.*``, ``quant_conv.*``, ``post_quant_conv.*`` plus training-only ``loss.*``,
``foundation_model.*`` and ``linear_proj.*`` tensors. The four inference prefixes are kept,
the architecture is read off their shapes, the names are mapped to diffusers'
(:mod:`tokbench.nn.conv_layouts`) and the result is loaded strictly: a key left over or
missing is an error, never silently ignored (the reference loads with ``strict=False``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from tokbench.nn.checkpoints import CheckpointFormatError, pick_state_dict, read_checkpoint, strict_load
from tokbench.nn.conv_layouts import convert, diffusers_block_types
from tokbench.nn.ldm_numerics import use_ldm_numerics

#: prefixes of the tensors an LDM KL autoencoder needs for inference
INFERENCE_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
#: prefixes of training-only tensors in VA-VAE / LDM checkpoints (LPIPS + discriminator,
#: the frozen DINOv2 of the VF loss and its projection)
TRAINING_PREFIXES = ("loss.", "foundation_model.", "linear_proj.")
#: LDM's GroupNorm always has 32 groups
LDM_NORM_GROUPS = 32


@dataclass(frozen=True)
class LDMArchitecture:
    """What an LDM KL autoencoder's weights say about its shape."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int
    encoder_attention_levels: frozenset[int]
    decoder_attention_levels: frozenset[int]
    mid_attention: bool

    @property
    def levels(self) -> int:
        return len(self.ch_mult)

    @property
    def downsample(self) -> int:
        return 2 ** (self.levels - 1)

    def autoencoder_config(self, sample_size: int = 256) -> dict[str, Any]:
        down, up = diffusers_block_types(self.levels, self.encoder_attention_levels, self.decoder_attention_levels)
        return {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": down,
            "up_block_types": up,
            "block_out_channels": [self.ch * m for m in self.ch_mult],
            "layers_per_block": self.num_res_blocks,
            "act_fn": "silu",
            "latent_channels": self.z_channels,
            "norm_num_groups": LDM_NORM_GROUPS,
            "sample_size": sample_size,
            "mid_block_add_attention": self.mid_attention,
            # VA-VAE has no scalar factor: generation uses its per-channel latents_stats.pt
            "scaling_factor": 1.0,
            "force_upcast": False,
        }


def split_training_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(inference tensors, names of the dropped training-only tensors). Anything that is
    neither is a format error: it would otherwise be ignored silently."""
    kept = {k: v for k, v in state.items() if k.startswith(INFERENCE_PREFIXES)}
    dropped = [k for k in state if k.startswith(TRAINING_PREFIXES)]
    unknown = sorted(set(state) - set(kept) - set(dropped))
    if unknown:
        raise CheckpointFormatError(
            f"LDM KL-VAE checkpoint has {len(unknown)} keys outside {', '.join(INFERENCE_PREFIXES + TRAINING_PREFIXES)}: "
            f"{', '.join(unknown[:6])}{' ...' if len(unknown) > 6 else ''} (not a VA-VAE/LDM autoencoder checkpoint?)"
        )
    return kept, dropped


def infer_architecture(state: Mapping[str, torch.Tensor]) -> LDMArchitecture:
    """The architecture of LDM-layout weights (keys already filtered to the inference prefixes)."""
    try:
        ch = int(state["encoder.conv_in.weight"].shape[0])
        levels = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k)))
        blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k)))
        ch_mult = tuple(int(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) // ch for i in range(levels))
        z_channels = int(state["post_quant_conv.weight"].shape[0])
        moments = int(state["quant_conv.weight"].shape[0])
    except (KeyError, ValueError) as error:
        raise CheckpointFormatError(f"not an LDM KL-VAE state dict (missing {error}); expected keys like "
                                    "encoder.conv_in.weight, encoder.down.0.block.0.conv1.weight, quant_conv.weight") from error
    if moments != 2 * z_channels or int(state["encoder.conv_out.weight"].shape[0]) != 2 * z_channels:
        raise CheckpointFormatError(
            f"quant_conv gives {moments} channels and post_quant_conv takes {z_channels}: only KL autoencoders with "
            "embed_dim == z_channels and double_z (mean + logvar) are supported (VA-VAE, LDM KL-f*)"
        )
    encoder_attention = frozenset(i for i in range(levels) if f"encoder.down.{i}.attn.0.q.weight" in state)
    decoder_attention = frozenset(i for i in range(levels) if f"decoder.up.{i}.attn.0.q.weight" in state)
    return LDMArchitecture(ch, ch_mult, blocks, z_channels, encoder_attention, decoder_attention,
                           mid_attention="encoder.mid.attn_1.q.weight" in state)


def load_ldm_autoencoder(path: str | Path, sample_size: int = 256, how_to_get: str = ""):
    """(diffusers ``AutoencoderKL``, info) for an LDM-layout KL-VAE checkpoint file; info
    names the architecture and the training-only tensors that were dropped."""
    from diffusers import AutoencoderKL

    data = read_checkpoint(path, what="KL-VAE checkpoint", how_to_get=how_to_get)
    state = pick_state_dict(data, prefer=("state_dict", "model"), source=str(path))
    kept, dropped = split_training_keys(state)
    arch = infer_architecture(kept)
    model = use_ldm_numerics(AutoencoderKL(**arch.autoencoder_config(sample_size)))
    strict_load(model, convert(kept, "ldm", "diffusers", arch.levels), source=f"KL-VAE checkpoint {str(path)!r}")
    info = {"format": "ldm", "architecture": {"ch": arch.ch, "ch_mult": list(arch.ch_mult), "num_res_blocks": arch.num_res_blocks,
                                              "z_channels": arch.z_channels,
                                              "attention_levels": sorted(arch.encoder_attention_levels)},
            "dropped_training_tensors": len(dropped)}
    return model.eval(), info


def to_ldm_state_dict(model) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL``'s weights in the LDM / VA-VAE key layout (for export
    and for tests that write official-layout files)."""
    levels = len(model.config.block_out_channels)
    return convert({k: v.detach().clone() for k, v in model.state_dict().items()}, "diffusers", "ldm", levels)
