"""Official LightningDiT checkpoints: the architecture from the tensor shapes, strict loading.

Accepts what hustvl/LightningDiT writes and releases: a training checkpoint ``{"model", "ema",
"opt", "config"}`` (the EMA weights are used, as for sampling) or a raw state dict, as ``.pt``
or ``.safetensors``. Every size follows from the shapes: width and input channels from the
patch embedding, depth from the block indices, head dimension from the RoPE tables, latent side
from ``pos_embed``, classes from the label table, and the block options (SwiGLU, RMSNorm,
QK-norm, no-shift adaLN) from which keys exist.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from tokbench.errors import MissingAssetError, TokbenchError
from tokbench.generation.model import SIZES, DiTConfig, LightningDiT
from tokbench.nn.checkpoints import strict_load as core_strict_load


def read_state_dict(path: str | Path, prefer: str = "ema") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MissingAssetError(
            f"LightningDiT checkpoint {path} does not exist; train one with tokbench's generation task, or download "
            "a released one (e.g. hustvl/LightningDiT's lightningdit-xl-imagenet256-800ep.pt) and give its path"
        )
    from tokbench.nn.checkpoints import PICKLE_FORMAT, _unreadable

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: no code from the file runs
    except Exception as error:  # noqa: BLE001 - named, with the format expected
        expected = "a safetensors file" if path.suffix == ".safetensors" else PICKLE_FORMAT
        raise _unreadable(path, "LightningDiT checkpoint", expected, error) from error
    if isinstance(data, dict) and ("model" in data or "ema" in data):
        key = prefer if prefer in data else ("model" if "model" in data else "ema")
        return data[key]
    if isinstance(data, dict):
        return data
    raise TokbenchError(f"{path} holds a {type(data).__name__}, not a LightningDiT state dict")


def infer_config(state: dict[str, torch.Tensor], num_heads: int | None = None) -> DiTConfig:
    try:
        width, channels, patch, _ = state["x_embedder.proj.weight"].shape
        tokens = state["pos_embed"].shape[1]
        table = state["y_embedder.embedding_table.weight"].shape[0]
    except KeyError as missing:
        raise TokbenchError(f"not a LightningDiT state dict: no {missing.args[0]!r}") from None
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    use_rope = "feat_rope.freqs_cos" in state
    if use_rope:
        heads = width // state["feat_rope.freqs_cos"].shape[1]
    elif num_heads is not None:
        heads = num_heads
    else:
        known = [h for (_, w, h) in SIZES.values() if w == width]
        if not known:
            raise TokbenchError(f"cannot tell the head count of a {width}-wide model without RoPE tables; pass num_heads")
        heads = known[0]
    swiglu = "blocks.0.mlp.w12.weight" in state
    hidden = state["blocks.0.mlp.w12.weight"].shape[0] // 2 if swiglu else state["blocks.0.mlp.fc1.weight"].shape[0]
    mlp_ratio = 4.0
    expected = int(2 / 3 * int(width * mlp_ratio)) if swiglu else int(width * mlp_ratio)
    if hidden != expected:
        mlp_ratio = (hidden * 1.5 if swiglu else hidden) / width
    grid = math.isqrt(tokens)
    config = DiTConfig(
        depth=depth, hidden_size=width, num_heads=heads, patch_size=patch, in_channels=channels,
        input_size=grid * patch, num_classes=table - 1, class_dropout_prob=0.1, mlp_ratio=mlp_ratio,
        use_qknorm="blocks.0.attn.q_norm.weight" in state, use_swiglu=swiglu, use_rope=use_rope,
        use_rmsnorm="blocks.0.norm1.weight" in state,
        wo_shift=state["blocks.0.adaLN_modulation.1.weight"].shape[0] == 4 * width,
    )
    if config.mlp_hidden != hidden:
        raise TokbenchError(f"MLP hidden size {hidden} does not follow from width {width}; unsupported variant")
    return config


def strict_load(model: LightningDiT, state: dict[str, torch.Tensor]) -> None:
    """Load with every key and shape checked; problems are listed by name."""
    core_strict_load(model, state, source="LightningDiT checkpoint (official layout)")


def load_lightningdit(source: str | Path | dict[str, Any], num_heads: int | None = None) -> LightningDiT:
    state = read_state_dict(source) if not isinstance(source, dict) else source
    model = LightningDiT(infer_config(state, num_heads))
    strict_load(model, state)
    return model.eval()
