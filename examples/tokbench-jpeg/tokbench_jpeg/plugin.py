"""Entry point module: registers the `jpeg` tokenizer."""

from tokbench.hookspecs import hookimpl

TOKBENCH_PLUGIN_API = 1


@hookimpl
def tokbench_register_tokenizers(register):
    register(
        "jpeg",
        factory="tokbench_jpeg.tokenizer:build",
        params="tokbench_jpeg.params:JpegParams",
        capabilities={"encode", "decode"},
        description="area downsample + JPEG (Pillow/libjpeg) + bicubic upsample: a classical-codec baseline",
    )
