"""Registers the ``rae`` tokenizer family. Imports no torch."""

from __future__ import annotations

from tokbench.hookspecs import hookimpl

#: the tokbench plugin API this plugin implements
TOKBENCH_PLUGIN_API = 1


@hookimpl
def tokbench_register_tokenizers(register):
    register(
        "rae",
        factory="tokbench_rae.tokenizer:build_rae",
        params="tokbench_rae.params:RAEParams",
        capabilities={"encode", "decode", "image_features"},
        description=(
            "RAE (representation autoencoder): frozen DINOv2-B-reg4 encoder (timm) + MAE-style ViT decoder, "
            "per-element stat.pt; released weights via `pretrained: dinov2-b` (nyu-visionx/RAE-collections) "
            "or local files, or `preset: tiny` (SSL-pretrained tiny ViT + decoder trained here)"
        ),
    )
