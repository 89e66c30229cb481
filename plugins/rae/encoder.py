"""The frozen representation encoders RAE reads its latent from.

Both wrappers take ImageNet-normalised pixels whose sides are multiples of their patch size
and expose the same four things: raw token sequences after chosen blocks, the final norm
*with* its affine (the encoder's own features, for probing), the final norm *without* it
(RAE's latent: "withNorm" keeps the LayerNorm but drops weight and bias), and how many
prefix tokens (CLS + registers) precede the patches.

- :class:`TimmViTEncoder`: a timm ViT, by default DINOv2-B/14 with 4 registers
  (``vit_base_patch14_reg4_dinov2.lvd142m``), the released RAE encoder. It is built at its
  native 37x37 position grid with ``dynamic_img_size``, so the table is resampled at run time
  by ``timm.layers.resample_abs_pos_embed`` (bicubic, antialias, ``size=`` target), the very
  call HF ``Dinov2WithRegistersModel.interpolate_pos_encoding`` makes (transformers 4.56.2,
  RAE's pinned version): 224 px input gives RAE's 16x16 grid, 448 px its 32x32 grid.
- :class:`VTPTrunkEncoder`: a VTP vision trunk (RMSNorm, 2-D RoPE, one CLS), the encoder of
  the ``tiny`` preset, pretrained here with the VTP trainer's self-supervised loss only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tokbench.errors import MissingAssetError
from tokbench.nn.checkpoints import CheckpointFormatError, pick_state_dict, read_checkpoint, strict_load

DEFAULT_TIMM_ENCODER = "vit_base_patch14_reg4_dinov2.lvd142m"
#: file name of timm's hub weights (``timm/<model>.<tag>`` repositories)
TIMM_WEIGHTS_NAME = "model.safetensors"


class FrozenEncoder(nn.Module):
    """The interface both encoders implement (see the module docstring)."""

    patch_size: int
    width: int
    depth: int
    prefix_tokens: int

    def blocks_output(self, pixels: Tensor, indices: Sequence[int]) -> list[Tensor]:  # pragma: no cover - abstract
        """Raw (B, prefix + N, D) token sequences after each block in ``indices`` (0-based, ascending)."""
        raise NotImplementedError

    def final_norm(self, tokens: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def plain_norm(self, tokens: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def latent_tokens(self, pixels: Tensor) -> Tensor:
        """RAE's latent tokens: last block, norm without affine, prefix tokens dropped -> (B, N, D)."""
        tokens = self.blocks_output(pixels, [self.depth - 1])[0]
        return self.plain_norm(tokens)[:, self.prefix_tokens :]


class TimmViTEncoder(FrozenEncoder):
    def __init__(self, vit: nn.Module, name: str):
        super().__init__()
        self.vit = vit
        self.name = name
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.width = int(vit.embed_dim)
        self.depth = len(vit.blocks)
        self.prefix_tokens = int(vit.num_prefix_tokens)

    def blocks_output(self, pixels: Tensor, indices: Sequence[int]) -> list[Tensor]:
        vit = self.vit
        x = vit.patch_embed(pixels)
        x = vit._pos_embed(x)  # resamples the position table to this grid (see the module docstring)
        x = vit.norm_pre(vit.patch_drop(x))
        wanted, outputs = set(indices), []
        for index, block in enumerate(vit.blocks):
            x = block(x)
            if index in wanted:
                outputs.append(x)
            if index >= max(indices):
                break
        return outputs

    def final_norm(self, tokens: Tensor) -> Tensor:
        return self.vit.norm(tokens)

    def plain_norm(self, tokens: Tensor) -> Tensor:
        return F.layer_norm(tokens, (self.width,), eps=self.vit.norm.eps)

    def identity(self) -> dict[str, Any]:
        return {"kind": "timm", "name": self.name}


class VTPTrunkEncoder(FrozenEncoder):
    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.patch_size = int(trunk.patch_size)
        self.width = int(trunk.width)
        self.depth = len(trunk.blocks)
        self.prefix_tokens = 1

    def blocks_output(self, pixels: Tensor, indices: Sequence[int]) -> list[Tensor]:
        return self.trunk.intermediate(pixels, sorted(indices))

    def final_norm(self, tokens: Tensor) -> Tensor:
        return self.trunk.norm(tokens)

    def plain_norm(self, tokens: Tensor) -> Tensor:
        """The trunk's RMSNorm without its learned scale (the RMS analogue of RAE's LN without affine)."""
        x = tokens.float() if tokens.dtype in (torch.float16, torch.bfloat16) else tokens
        return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.trunk.norm.eps)).to(tokens.dtype)

    def identity(self) -> dict[str, Any]:
        return {"kind": "vtp-trunk"}


# ---- timm encoders: building and weights ---------------------------------------------------------
def create_timm_vit(name: str) -> nn.Module:
    """The timm model ``name`` with random weights at its native position grid, any input size accepted."""
    import timm

    try:
        config = timm.models.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - unknown names raise different errors across timm versions
        config = None
    size = int(config.input_size[-1]) if config is not None and getattr(config, "input_size", None) else None
    kwargs: dict[str, Any] = {"dynamic_img_size": True, "num_classes": 0}
    if size is not None:
        kwargs["img_size"] = size
    try:
        vit = timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as error:  # timm: "Unknown model (...)"
        raise ValueError(f"encoder {name!r}: {error}; use a timm ViT name such as {DEFAULT_TIMM_ENCODER}") from None
    if not hasattr(vit, "blocks") or not hasattr(vit, "_pos_embed"):
        raise ValueError(f"encoder {name!r} is not a timm VisionTransformer; RAE needs a ViT encoder")
    return vit


def timm_hub_id(name: str) -> str | None:
    import timm

    try:
        return timm.models.get_pretrained_cfg(name).hf_hub_id or None
    except Exception:  # noqa: BLE001
        return None


def encoder_download_hint(name: str) -> str:
    hub_id = timm_hub_id(name) or "timm/<model>"
    local = f"./weights/{hub_id.split('/')[-1]}"
    return (
        f"download it on a machine with internet: `hf download {hub_id} {TIMM_WEIGHTS_NAME} --local-dir {local}`, "
        f"copy it here and set `encoder_checkpoint: {local}/{TIMM_WEIGHTS_NAME}` (or pre-fill the hub cache); "
        "the Hugging Face facebook/dinov2-with-registers-base model.safetensors is accepted too (converted on load)"
    )


def resolve_timm_weights(name: str, checkpoint: str | None) -> Path:
    """The local weights file: ``checkpoint`` when given, else timm's hub file (cache first, then
    the network unless ``HF_HUB_OFFLINE``). MissingAssetError says how to get it."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise MissingAssetError(f"encoder_checkpoint {str(path)!r} does not exist; " + encoder_download_hint(name))
        return path
    hub_id = timm_hub_id(name)
    if hub_id is None:
        raise MissingAssetError(f"timm has no hub weights for encoder {name!r}; set `encoder_checkpoint: <weights file>`")
    from tokbench.nn.hub import hub_file

    try:
        return hub_file(hub_id, TIMM_WEIGHTS_NAME)
    except Exception as error:  # noqa: BLE001 - reported with the fix
        first = str(error).splitlines()[0] if str(error) else ""
        raise MissingAssetError(
            f"encoder weights {hub_id!r} are not in the local hub cache and cannot be downloaded here "
            f"({type(error).__name__}: {first}); " + encoder_download_hint(name)
        ) from error


def load_timm_encoder(name: str, checkpoint: str | None = None) -> TimmViTEncoder:
    """A frozen :class:`TimmViTEncoder` with weights from ``checkpoint`` or timm's hub file.

    Accepted layouts: timm's own, DINOv2's original release (converted by timm's filter) and
    HF ``Dinov2WithRegistersModel`` (converted by :func:`hf_dinov2_to_timm`)."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    path = resolve_timm_weights(name, checkpoint)
    vit = create_timm_vit(name)
    state = pick_state_dict(read_checkpoint(path, what="encoder weights", how_to_get=encoder_download_hint(name)),
                            prefer=("model", "state_dict", "teacher"), source=str(path))
    if is_hf_dinov2(state):
        state = hf_dinov2_to_timm(state)
    else:
        state = checkpoint_filter_fn(state, vit)
    strict_load(vit, state, source=f"encoder weights {path}")
    return TimmViTEncoder(vit.eval().requires_grad_(False), name)


# ---- HF Dinov2WithRegistersModel -> timm --------------------------------------------------------
_HF_BLOCK = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_HF_BLOCK_NAMES = {
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "attention.output.dense.weight": "attn.proj.weight", "attention.output.dense.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias",
    "layer_scale2.lambda1": "ls2.gamma",
}


def is_hf_dinov2(state: Mapping[str, Tensor]) -> bool:
    return "embeddings.patch_embeddings.projection.weight" in state


def hf_dinov2_to_timm(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """HF ``Dinov2WithRegistersModel`` (``facebook/dinov2-with-registers-*``) weights in timm's layout.

    q/k/v are concatenated into ``qkv``; the CLS row of the position table is folded into
    ``cls_token`` (timm's ``no_embed_class`` models add positions to patches only, and HF never
    interpolates that row, so the sum is the same); the mask token (iBOT only) is dropped.
    Every HF tensor must be used: a leftover key is a CheckpointFormatError."""
    state = dict(state)
    out: dict[str, Tensor] = {}
    try:
        position = state.pop("embeddings.position_embeddings")
        out["cls_token"] = state.pop("embeddings.cls_token") + position[:, :1]
        out["pos_embed"] = position[:, 1:]
        out["reg_token"] = state.pop("embeddings.register_tokens")
        out["patch_embed.proj.weight"] = state.pop("embeddings.patch_embeddings.projection.weight")
        out["patch_embed.proj.bias"] = state.pop("embeddings.patch_embeddings.projection.bias")
        out["norm.weight"] = state.pop("layernorm.weight")
        out["norm.bias"] = state.pop("layernorm.bias")
    except KeyError as error:
        raise CheckpointFormatError(f"HF DINOv2-with-registers weights lack {error.args[0]!r}") from None
    state.pop("embeddings.mask_token", None)
    blocks = sorted({int(m.group(1)) for key in state if (m := _HF_BLOCK.match(key))})
    for i in blocks:
        prefix = f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            parts = [state.pop(f"{prefix}attention.attention.{name}.{kind}", None) for name in ("query", "key", "value")]
            if any(part is None for part in parts):
                raise CheckpointFormatError(f"HF DINOv2 block {i} lacks one of its query/key/value {kind}s")
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
        for hf_name, timm_name in _HF_BLOCK_NAMES.items():
            if f"{prefix}{hf_name}" in state:
                out[f"blocks.{i}.{timm_name}"] = state.pop(f"{prefix}{hf_name}")
    if state:
        leftover = sorted(state)
        raise CheckpointFormatError(
            f"HF DINOv2 weights have {len(leftover)} tensors with no timm counterpart: {', '.join(leftover[:6])}"
        )
    return out
