"""Reading and writing the official VTP inference checkpoint (one ``model.safetensors``).

Sizes are inferred from the tensor shapes (the hub ``config.json`` is not needed),
loading is strict (every missing or unexpected key is reported by name), and the
bf16 RoPE ``periods`` buffers are kept exactly as stored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Mapping

import torch

from tokbench.errors import MissingAssetError
from tokbench.nn.checkpoints import CheckpointFormatError
from tokbench.nn.checkpoints import strict_load as core_strict_load
from tokbench.nn.hub import download_hint, hub_file
from tokbench_vtp.model.config import HEAD_DIM, VTPArchitecture
from tokbench_vtp.model.text import causal_mask
from tokbench_vtp.model.vtp import VTPModel

WEIGHTS_NAME = "model.safetensors"
#: components a caller may skip loading (the trunk is always needed)
COMPONENT_PREFIXES = {
    "decoder": ("pixel_decoder.",),
    "text": ("visual_proj.", "token_embedding.", "positional_embedding", "text_transformer.", "ln_final.",
             "text_projection", "logit_scale"),
}


def resolve_checkpoint(source: str, revision: str | None = None) -> Path:
    """``model.safetensors`` for a file, a directory holding one, a preset alias
    (``small``/``base``/``large``) or a hub id; MissingAssetError says how to get it.
    Which of these ``source`` is follows ``VTPParams`` (one rule for validation and loading)."""
    from tokbench_vtp.params import VTPParams

    params = VTPParams(pretrained=str(source), revision=revision)
    local = params.local_checkpoint()  # raises MissingAssetError for a missing path
    if local is not None:
        return local
    hub_id = params.hub_id()
    try:
        return hub_file(hub_id, WEIGHTS_NAME, revision)
    except Exception as error:  # noqa: BLE001 - reported with the fix
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise MissingAssetError(
            f"VTP checkpoint {hub_id!r} is not in the local hub cache and cannot be downloaded here "
            f"({type(error).__name__}: {first_line}). " + download_hint(hub_id, revision)
        ) from error


def read_shapes(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype) from the safetensors header, without reading tensors."""
    from safetensors import safe_open

    shapes = {}
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            sliced = handle.get_slice(key)
            shapes[key] = (tuple(sliced.get_shape()), sliced.get_dtype())
    return shapes


def _block_count(keys: Iterable[str], prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    indices = {int(m.group(1)) for key in keys if (m := pattern.match(key))}
    if indices and indices != set(range(len(indices))):
        raise CheckpointFormatError(f"{prefix}* block indices are not contiguous: {sorted(indices)}")
    return len(indices)


#: official ``VTPConfig`` fields that shapes cannot reveal -> our architecture fields
_CONFIG_FIELDS = {
    "vision_num_heads": "vision_heads",
    "decoder_num_heads": "decoder_heads",
    "text_num_heads": "text_heads",
    "vision_clip_feat": "clip_feature",
}
CONFIG_NAME = "config.json"


def config_overrides(weights: Path) -> dict:
    """Head counts etc. from an HF-style ``config.json`` beside the weights (absent: {})."""
    import json

    config_path = weights.parent / CONFIG_NAME
    if not config_path.is_file():
        return {}
    config = json.loads(config_path.read_text())
    return {ours: config[theirs] for theirs, ours in _CONFIG_FIELDS.items() if theirs in config}


def infer_architecture(shapes: Mapping[str, tuple], overrides: Mapping | None = None) -> VTPArchitecture:
    """The architecture a state dict (key -> shape or (shape, dtype)) was saved from.

    Head counts are not visible in shapes: vision/decoder heads follow from the RoPE
    table (head dim = 4 x periods), text heads assume head dim 64 (true of the released
    checkpoints) unless ``overrides`` (e.g. from ``config.json``) say otherwise.
    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise CheckpointFormatError(f"not a VTP checkpoint: key {key!r} is missing")
        value = shapes[key]
        return tuple(value[0]) if value and isinstance(value[0], (tuple, list)) else tuple(value)

    keys = list(shapes)
    if "logit_bias" in shapes:
        raise CheckpointFormatError(
            "the checkpoint has `logit_bias` (SigLIP-style CLIP head); the released VTP checkpoints and this plugin "
            "use the softmax CLIP head without it"
        )
    for part in ("trunk", "pixel_decoder"):
        if any(k.startswith(f"{part}.") and (".ls1." in k or ".ls2." in k) for k in keys):
            raise CheckpointFormatError(f"{part} has LayerScale (ls1/ls2) parameters, which VTP checkpoints do not have")
        if any(k.startswith(f"{part}.storage_tokens") for k in keys):
            raise CheckpointFormatError("register (storage) tokens are not part of the VTP architecture")
    width, _, patch, _ = shape("trunk.patch_embed.proj.weight")
    bottleneck = shape("trunk.feature_bottleneck.weight")[0]
    fields: dict = {
        "patch_size": patch,
        "vision_width": width,
        "vision_depth": _block_count(keys, "trunk.blocks."),
        "vision_qk_norm": "trunk.blocks.0.attn.q_norm.weight" in shapes,
        "bottleneck": bottleneck,
        "with_decoder": "pixel_decoder.proj_in.weight" in shapes,
        "with_text": "token_embedding.weight" in shapes,
    }
    # RoPE has head_dim / 4 periods (two axes, sin/cos halves): the head count follows.
    fields["vision_heads"] = width // (4 * shape("trunk.rope_embed.periods")[0])
    hidden = shape("trunk.blocks.0.mlp.w1.weight")[0]
    if fields["with_decoder"]:
        decoder_width = shape("pixel_decoder.proj_in.weight")[0]
        decoder_head_dim = 4 * shape("pixel_decoder.rope_embed.periods")[0]
        fields.update(
            decoder_width=decoder_width,
            decoder_depth=_block_count(keys, "pixel_decoder.blocks."),
            decoder_heads=decoder_width // decoder_head_dim,
            decoder_qk_norm="pixel_decoder.blocks.0.attn.q_norm.weight" in shapes,
        )
    if fields["with_text"]:
        vocab, text_width = shape("token_embedding.weight")
        fields.update(
            text_width=text_width,
            text_vocab_size=vocab,
            text_context_length=shape("positional_embedding")[0],
            text_depth=_block_count(keys, "text_transformer.resblocks."),
            text_heads=max(text_width // HEAD_DIM, 1),
            clip_dim=shape("text_projection")[1],
        )
    implied_by_tensors = {"vision_heads", "decoder_heads"}  # from the RoPE tables; text heads are a guess
    for name, value in (overrides or {}).items():
        if name in implied_by_tensors and name in fields and fields[name] != value:
            raise CheckpointFormatError(
                f"{CONFIG_NAME} says {name}={value} but the tensors imply {fields[name]}; fix or remove {CONFIG_NAME}"
            )
        fields[name] = value
    arch = VTPArchitecture(**fields)
    if arch.vision_hidden != hidden:
        raise CheckpointFormatError(
            f"trunk SwiGLU hidden width is {hidden}, but a {width}-wide VTP has {arch.vision_hidden}: not a VTP checkpoint"
        )
    return arch


def _skipped_prefixes(components: Iterable[str]) -> tuple[str, ...]:
    wanted = set(components)
    return tuple(prefix for name, prefixes in COMPONENT_PREFIXES.items() if name not in wanted for prefix in prefixes)


def load_state_dict(path: str | Path, components: Iterable[str] = ("decoder", "text")) -> dict[str, torch.Tensor]:
    """Tensors of the trunk plus the requested components, dtypes as stored."""
    from safetensors.torch import load_file

    skip = _skipped_prefixes(components)
    return {k: v for k, v in load_file(str(path)).items() if not k.startswith(skip)} if skip else load_file(str(path))


def strict_load(model: VTPModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load every tensor; any missing/unexpected key or shape mismatch is an error naming them.
    The RoPE ``periods`` keep the checkpoint's dtype (bf16)."""
    core_strict_load(model, state_dict, source="checkpoint (VTP architecture)")
    for name, buffer in model.named_buffers():
        if name.endswith("rope_embed.periods"):
            buffer.data = state_dict[name].detach().clone()


def load_official(
    source: str | Path, revision: str | None = None, components: Iterable[str] = ("decoder", "text")
) -> VTPModel:
    """A VTPModel (fp32, eval) from an official-format checkpoint: file, directory, preset alias or hub id."""
    path = resolve_checkpoint(str(source), revision)
    components = tuple(components)
    shapes = read_shapes(path)
    skip = _skipped_prefixes(components)
    kept = {k: v for k, v in shapes.items() if not k.startswith(skip)} if skip else shapes
    arch = infer_architecture(kept, config_overrides(path))
    with torch.device("meta"):
        model = VTPModel(arch)
    model = model.to_empty(device="cpu")
    state = load_state_dict(path, components)
    state = {k: (v if k.endswith("rope_embed.periods") else v.float()) for k, v in state.items()}
    strict_load(model, state)
    if arch.with_text:
        model.attn_mask = causal_mask(arch.text_context_length)  # non-persistent: to_empty left it garbage
    return model.eval()


def save_official(model: VTPModel, path: str | Path) -> Path:
    """Write ``model`` as an official inference checkpoint (fp32 tensors, bf16 periods)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path.mkdir(parents=True, exist_ok=True)
        path = path / WEIGHTS_NAME
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    state = {k: (v.to(torch.bfloat16) if k.endswith("rope_embed.periods") else v.float()) for k, v in state.items()}
    save_file(state, str(path), metadata={"format": "pt", "producer": "tokbench_vtp"})
    arch = model.arch
    config = {theirs: getattr(arch, ours) for theirs, ours in _CONFIG_FIELDS.items()}
    config.update(model_type="vtp", image_size=256, vision_patch_size=arch.patch_size, vision_embed_dim=arch.vision_width,
                  vision_depth=arch.vision_depth, vision_feature_bottleneck=arch.bottleneck,
                  decoder_embed_dim=arch.decoder_width, decoder_depth=arch.decoder_depth,
                  text_embed_dim=arch.text_width, text_depth=arch.text_depth, train_clip=arch.with_text,
                  train_reconstruction=arch.with_decoder, tokbench_architecture=arch.model_dump(mode="json"))
    import json

    (path.parent / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
    return path
