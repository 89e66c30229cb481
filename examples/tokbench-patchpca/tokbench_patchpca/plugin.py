"""Entry point module: registers the `patchpca` tokenizer (torch-free)."""

from tokbench.hookspecs import hookimpl

TOKBENCH_PLUGIN_API = 1


@hookimpl
def tokbench_register_tokenizers(register):
    register(
        "patchpca",
        factory="tokbench_patchpca.tokenizer:build",
        params="tokbench_patchpca.params:PatchPCAParams",
        capabilities={"encode", "decode"},
        description="PCA of p x p RGB patches, fitted on a suite dataset: the k leading components per patch",
    )
