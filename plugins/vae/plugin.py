"""Registers the ``vae`` tokenizer family. Imports neither torch nor diffusers."""

from __future__ import annotations

from tokbench.hookspecs import hookimpl

#: the tokbench plugin API this plugin implements
TOKBENCH_PLUGIN_API = 1


@hookimpl
def tokbench_register_tokenizers(register):
    register(
        "vae",
        factory="tokbench_vae.tokenizer:build_vae",
        params="tokbench_vae.params:VAEParams",
        capabilities={"encode", "decode"},
        description=(
            "KL-VAE (diffusers AutoencoderKL): pretrained from a local diffusers directory or a hub id "
            "(e.g. stabilityai/sd-vae-ft-ema), or preset 'tiny' trained from scratch on shapes"
        ),
    )
