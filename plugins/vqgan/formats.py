"""Reading and writing the two official checkpoint layouts of this family.

- **taming** (CompVis/taming-transformers): a PyTorch-Lightning ``last.ckpt`` with the
  weights under ``state_dict`` in the ``ldm`` key layout (``encoder.down.{i}.block.{j}``,
  ``quantize.embedding.weight``, ``quant_conv``, ``post_quant_conv``) plus ``loss.*`` (the
  discriminator and LPIPS used for training, dropped here), and ``configs/model.yaml``.
  Quantiser: squared-L2 lookup, legacy beta placement.
- **llamagen** (FoundationVision/LlamaGen ``vq_train.py``): a ``.pt`` dict with ``model``
  (+ ``ema``), ``optimizer``, ``discriminator``, ..., ``steps`` and ``args`` (an
  ``argparse.Namespace``), weights in the ``llamagen`` key layout
  (``encoder.conv_blocks.{k}.res.{j}``). Quantiser: l2-normalised (``codebook_l2_norm``),
  beta on the commitment term.

Both are renamed to diffusers' layout with :func:`tokbench.nn.conv_layouts.convert` and loaded
strictly into the model from :func:`tokbench_vqgan.model.build_model`; sizes come from the
tensor shapes (checked against ``model.yaml`` when there is one). Writers produce the same
layouts, so a model trained here loads back through the same path.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from tokbench.nn.checkpoints import CheckpointFormatError, pick_state_dict, read_checkpoint, strict_load
from tokbench.nn.conv_layouts import convert
from tokbench_vqgan.model import VQArchitecture, build_model, count_levels, infer_architecture

#: LlamaGen keeps a rolling window of the last 65536 code indices as a buffer, only to print
#: codebook usage during training; it is state, not a weight, and inference never reads it.
LLAMAGEN_USAGE_BUFFER = "quantize.codebook_used"
#: the taming training loss (discriminator, LPIPS) saved inside the autoencoder checkpoint
TAMING_LOSS_PREFIX = "loss."
#: tokbench's addition to model.yaml ddconfig / LlamaGen args: GroupNorm groups when not 32
NORM_GROUPS_KEY = "norm_num_groups"


def detect_format(data: Any, source: str) -> str:
    """``taming`` or ``llamagen`` from the key layout of a loaded checkpoint."""
    for prefer in (("state_dict",), ("ema", "model")):
        try:
            keys = pick_state_dict(data, prefer, source)
        except CheckpointFormatError:
            continue
        if any(k.startswith("encoder.down.") for k in keys):
            return "taming"
        if any(k.startswith("encoder.conv_blocks.") for k in keys):
            return "llamagen"
    raise CheckpointFormatError(
        f"{source}: neither a taming checkpoint (state_dict with encoder.down.*) nor a LlamaGen one "
        "(model/ema with encoder.conv_blocks.*); set `format` if it is one of them"
    )


def _strict_load(model, state: Mapping[str, torch.Tensor], layout: str, levels: int, source: str) -> None:
    """``strict_load`` whose error names the keys as the file spells them (``layout``), not diffusers'."""
    try:
        strict_load(model, state, source)
    except CheckpointFormatError as error:
        message = str(error)
        names = sorted(set(model.state_dict()) | set(state), key=len, reverse=True)
        for name in names:
            spelled = next(iter(convert({name: torch.zeros(1)}, "diffusers", layout, levels)))
            message = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.])", spelled, message)
        raise CheckpointFormatError(message) from None


# ---- taming ------------------------------------------------------------------------------
def read_taming_config(path: Path) -> dict[str, Any]:
    """``model.params`` of a taming ``model.yaml`` (n_embed, embed_dim, ddconfig)."""
    import yaml

    data = yaml.safe_load(path.read_text())
    try:
        params = data["model"]["params"]
        params["ddconfig"], params["n_embed"], params["embed_dim"]
    except (KeyError, TypeError) as error:
        raise CheckpointFormatError(
            f"{path}: not a taming model.yaml (needs model.params.n_embed, embed_dim and ddconfig; missing {error})"
        ) from error
    return params


def _check_taming_config(arch: VQArchitecture, config: Mapping[str, Any], source: str) -> VQArchitecture:
    dd = config["ddconfig"]
    resolution = int(dd.get("resolution", 256))
    levels = len(dd["ch_mult"])
    expected = {
        "codebook_size": int(config["n_embed"]),
        "codebook_dim": int(config["embed_dim"]),
        "block_out_channels": tuple(int(dd["ch"]) * int(m) for m in dd["ch_mult"]),
        "layers_per_block": int(dd["num_res_blocks"]),
        "latent_channels": int(dd["z_channels"]),
        "attention_levels": tuple(i for i in range(levels) if resolution // 2**i in set(dd.get("attn_resolutions", []))),
    }
    if dd.get("double_z", False):
        raise CheckpointFormatError(f"{source}: ddconfig.double_z is true (a KL autoencoder); VQGAN has double_z: false")
    if int(dd["ch"]) * int(dd["ch_mult"][0]) != int(dd["ch"]):
        raise CheckpointFormatError(f"{source}: ch_mult[0] = {dd['ch_mult'][0]} (conv_in then feeds a resize); only ch_mult[0] = 1 is supported")
    wrong = [f"{k}: model.yaml {v} vs weights {getattr(arch, k)}" for k, v in expected.items() if getattr(arch, k) != v]
    if wrong:
        raise CheckpointFormatError(f"{source}: model.yaml does not describe the weights ({'; '.join(wrong)})")
    return dataclasses.replace(arch, sample_size=resolution)


def load_taming(path: Path, config_path: Path | None = None, how_to_get: str = "", data: Any = None):
    """(model, architecture) from a taming Lightning checkpoint (+ optional model.yaml);
    ``data``: the file's content when already read."""
    source = str(path)
    if data is None:
        data = read_checkpoint(path, "taming VQGAN checkpoint", how_to_get)
    state = pick_state_dict(data, ("state_dict",), source)
    state = {k: v for k, v in state.items() if not k.startswith(TAMING_LOSS_PREFIX)}
    config = read_taming_config(config_path) if config_path is not None else None
    groups = int(config["ddconfig"].get(NORM_GROUPS_KEY, 32)) if config else 32
    levels = count_levels(state, "ldm")
    state = convert(state, "ldm", "diffusers", levels)
    arch = infer_architecture(state, source, norm_num_groups=groups, l2_norm=False, beta=0.25, legacy_beta=True)
    if config is not None:
        arch = _check_taming_config(arch, config, f"{source} + {config_path}")
    model = build_model(arch)
    _strict_load(model, state, "ldm", levels, f"taming checkpoint {source}")
    return model.eval(), arch


def taming_config(arch: VQArchitecture) -> dict[str, Any]:
    """model.yaml content for ``arch``, as the taming releases write it (loss: DummyLoss)."""
    if arch.l2_norm or not arch.mid_attention:
        raise ValueError(
            "the taming layout has no l2-normalised codebook and always has mid-block attention; "
            "save this model in the LlamaGen layout instead"
        )
    ch = arch.block_out_channels[0]
    if any(c % ch for c in arch.block_out_channels):
        raise ValueError(f"block_out_channels {arch.block_out_channels} are not multiples of the first (taming's ch)")
    ddconfig = {
        "double_z": False, "z_channels": arch.latent_channels, "resolution": arch.sample_size, "in_channels": 3,
        "out_ch": 3, "ch": ch, "ch_mult": [c // ch for c in arch.block_out_channels],
        "num_res_blocks": arch.layers_per_block,
        "attn_resolutions": [arch.sample_size // 2**i for i in arch.attention_levels], "dropout": 0.0,
    }
    if arch.norm_num_groups != 32:
        ddconfig[NORM_GROUPS_KEY] = arch.norm_num_groups
    return {"model": {"target": "taming.models.vqgan.VQModel", "params": {
        "embed_dim": arch.codebook_dim, "n_embed": arch.codebook_size, "ddconfig": ddconfig,
        "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"}}}}


def save_taming(model, arch: VQArchitecture, checkpoint: Path, config: Path | None = None, step: int = 0) -> None:
    """Write ``model`` as a taming ``last.ckpt`` (``state_dict`` in the ldm layout) and model.yaml."""
    import yaml

    content = taming_config(arch)  # raises for what the layout cannot express
    state = convert({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, "diffusers", "ldm", arch.levels)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "global_step": step, "state_dict": state}, checkpoint)
    if config is not None:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(content, sort_keys=False))


# ---- LlamaGen ----------------------------------------------------------------------------
def _args_dict(args: Any) -> dict[str, Any]:
    """The fields of a saved ``args`` (a Namespace stand-in from read_checkpoint, or a dict)."""
    if args is None:
        return {}
    if isinstance(args, Mapping):
        return dict(args)
    state = getattr(args, "state", None)
    if isinstance(state, Mapping):
        return dict(state)
    return dict(vars(args)) if hasattr(args, "__dict__") else {}


def load_llamagen(path: Path, how_to_get: str = "", data: Any = None):
    """(model, architecture) from a LlamaGen VQ ``.pt`` (ema, else model, else state_dict)."""
    source = str(path)
    if data is None:
        data = read_checkpoint(path, "LlamaGen VQ checkpoint", how_to_get)
    state = pick_state_dict(data, ("ema", "model", "state_dict"), source)
    state = {k: v for k, v in state.items() if k != LLAMAGEN_USAGE_BUFFER}
    args = _args_dict(data.get("args") if isinstance(data, Mapping) else None)
    levels = count_levels(state, "llamagen")
    state = convert(state, "llamagen", "diffusers", levels)
    arch = infer_architecture(
        state, source,
        norm_num_groups=int(args.get(NORM_GROUPS_KEY, 32)),
        l2_norm=bool(args.get("codebook_l2_norm", True)),
        beta=float(args.get("commit_loss_beta", 0.25)),
        legacy_beta=False,
        sample_size=int(args.get("image_size", 256)),
    )
    model = build_model(arch)
    _strict_load(model, state, "llamagen", levels, f"LlamaGen checkpoint {source}")
    return model.eval(), arch


def save_llamagen(model, arch: VQArchitecture, path: Path, step: int = 0) -> None:
    """Write ``model`` as LlamaGen's ``vq_train.py`` does: ``{"model", "steps", "args"}``, llamagen layout."""
    state = convert({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, "diffusers", "llamagen", arch.levels)
    state[LLAMAGEN_USAGE_BUFFER] = torch.zeros(65536)
    args = argparse.Namespace(
        vq_model="tokbench-tiny", codebook_size=arch.codebook_size, codebook_embed_dim=arch.codebook_dim,
        codebook_l2_norm=arch.l2_norm, commit_loss_beta=arch.beta, entropy_loss_ratio=0.0,
        image_size=arch.sample_size, **{NORM_GROUPS_KEY: arch.norm_num_groups},
    )
    if arch.legacy_beta:
        raise ValueError("the LlamaGen layout implies beta on the commitment term; this model uses taming's legacy placement")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "steps": step, "args": args}, path)


def load(path: Path, fmt: str | None, config_path: Path | None = None, how_to_get: str = ""):
    """Load ``path`` in format ``fmt`` (None: detected from the keys)."""
    data = read_checkpoint(path, "VQ checkpoint", how_to_get)
    fmt = fmt or detect_format(data, str(path))
    if fmt == "taming":
        return load_taming(path, config_path, how_to_get, data)
    if fmt == "llamagen":
        return load_llamagen(path, how_to_get, data)
    raise ValueError(f"unknown checkpoint format {fmt!r}; use taming or llamagen")
