"""tokbench's own features, registered through the same hooks as any plugin."""

from __future__ import annotations

from tokbench.hookspecs import hookimpl


@hookimpl
def tokbench_register_tokenizers(register):
    register(
        "resample",
        factory="tokbench.tokenizers.resample:build_resample",
        params="tokbench.tokenizers.resample:ResampleParams",
        capabilities={"encode", "decode"},
        description="non-learned baseline: area-downsample by a factor, interpolate back",
    )


@hookimpl
def tokbench_register_datasets(register):
    register(
        "shapes",
        dataset="tokbench.data.shapes:ShapesDataset",
        params="tokbench.data.params:ShapesParams",
        description="procedurally generated coloured shapes with labels and captions (offline)",
    )
    register(
        "imagefolder",
        dataset="tokbench.data.imagefolder:ImageFolderDataset",
        params="tokbench.data.params:ImageFolderParams",
        description="ImageNet-layout folder of class subfolders",
    )


@hookimpl
def tokbench_register_tasks(register):
    register(
        "reconstruction",
        task="tokbench.tasks.reconstruction:ReconstructionTask",
        params="tokbench.tasks.reconstruction_params:ReconstructionParams",
        requires={"encode", "decode"},
        description="rFID (real Inception), PSNR, SSIM, LPIPS of reconstructions",
    )
    register(
        "generation",
        task="tokbench.tasks.generation:GenerationTask",
        params="tokbench.tasks.generation_params:GenerationParams",
        requires={"encode", "decode"},
        train_dataset="required",
        description="equal-FLOPs LightningDiT on the tokenizer's latents: train, sample, gFID / precision / recall",
    )
    register(
        "zero_shot",
        task="tokbench.tasks.zero_shot:ZeroShotTask",
        params="tokbench.tasks.understanding_params:ZeroShotParams",
        requires={"image_features", "text"},
        description="zero-shot top-1/top-5 from the text tower (protocols vtp, openclip)",
    )
    register(
        "linear_probe",
        task="tokbench.tasks.linear_probe:LinearProbeTask",
        params="tokbench.tasks.understanding_params:LinearProbeParams",
        train_dataset="required",
        description="linear probes on cached frozen features, whole head grid in one pass "
        "(protocols bottleneck, dinov2, mae)",
    )


@hookimpl
def tokbench_register_exporters(register):
    exporters = {
        "markdown": ("text", "leaderboard tables as GitHub Markdown (best bold, second italic)"),
        "latex": ("text", "leaderboard tables as LaTeX (booktabs, escaped; best bold, second underlined)"),
        "csv": ("data", "every result x metric at full precision with provenance (long format)"),
        "json": ("data", "the tables and every result at full precision with provenance"),
        "html": ("html", "a self-contained static HTML leaderboard (sortable, provenance, plots)"),
    }
    for name, (module, description) in exporters.items():
        register(name, exporter=f"tokbench.report.exporters.{module}:export_{name}", description=description)
