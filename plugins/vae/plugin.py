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
            "KL-VAE (diffusers AutoencoderKL): SD-VAE & co. from a diffusers directory or hub id, VA-VAE and other "
            "LDM-layout checkpoints (checkpoint: va-vae-f16d32 or a file), or preset 'tiny' trained from scratch on shapes"
        ),
    )
