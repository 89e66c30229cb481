"""Registers the ``vtp`` tokenizer family and the ``tokbench vtp`` commands. Imports no torch."""

from __future__ import annotations

from tokbench.hookspecs import hookimpl

#: the tokbench plugin API this plugin implements
TOKBENCH_PLUGIN_API = 1


# ---- tokenizer family ----------------------------------------------------------------------
@hookimpl
def tokbench_register_tokenizers(register):
    """``vtp``: the model and its capabilities are declared here; the factory (and torch) load lazily."""
    register(
        "vtp",
        factory="tokbench_vtp.tokenizer:build_vtp",
        params="tokbench_vtp.params:VTPParams",
        capabilities={"encode", "decode", "image_features", "text"},
        description=(
            "VTP (MiniMax visual tokenizer: CLIP + DINO/iBOT + reconstruction ViT autoencoder, f16d64): "
            "released weights via `pretrained: small|base|large`, a hub id or a local model.safetensors, "
            "or `recipe: tiny` (or a recipe YAML) pretrained here; image features for probing and a CLIP text tower"
        ),
    )


# ---- commands --------------------------------------------------------------------------------
@hookimpl
def tokbench_register_commands(cli):
    """``tokbench vtp pretrain RECIPE`` and ``tokbench vtp inspect CHECKPOINT`` (click only at import)."""
    from tokbench_vtp.cli import vtp

    cli.add_command(vtp)
