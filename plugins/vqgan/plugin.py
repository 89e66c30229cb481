"""Registers the ``vqgan`` tokenizer family. Imports neither torch nor diffusers."""

from __future__ import annotations

from tokbench.hookspecs import hookimpl

#: the tokbench plugin API this plugin implements
TOKBENCH_PLUGIN_API = 1


@hookimpl
def tokbench_register_tokenizers(register):
    register(
        "vqgan",
        factory="tokbench_vqgan.tokenizer:build_vqgan",
        params="tokbench_vqgan.params:VQGANParams",
        capabilities={"encode", "decode", "discrete"},
        description=(
            "VQ tokenizers through diffusers VQModel: taming VQGAN Lightning .ckpt (f16-1024, f16-16384), "
            "LlamaGen VQ-16 .pt (l2-normalised codes), or preset 'tiny' trained from scratch on shapes"
        ),
    )
