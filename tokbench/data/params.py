"""Validated parameters of the built-in datasets (importable without torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

#: adm: guided-diffusion centre crop (rFID / generation); resize-center: shorter side + centre crop;
#: squash: bicubic to a square; squash-bilinear: VTP zero-shot; clip: OpenCLIP eval;
#: center-0.875: DINOv2/MAE eval (resize to size/0.875, centre crop). See tokbench.data.transforms.
CropName = Literal["adm", "resize-center", "squash", "squash-bilinear", "clip", "center-0.875"]


class ShapesParams(BaseModel):
    """Procedural coloured shapes; see ``tokbench.data.shapes``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: Literal["train", "val"] = "val"
    num_images: PositiveInt = 512
    resolution: int = Field(64, ge=8)
    # numpy seed sequences reject negative entropy, so the seed is non-negative.
    seed: int = Field(0, ge=0)
    labels: Literal["shape", "colour"] = Field(
        "shape", description="the class of an image: its shape (12, balanced) or the shape's colour (12, random)"
    )


class ImageFolderParams(BaseModel):
    """An ImageNet-layout folder ``root[/split]/<class>/<image files>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str = Field(min_length=1)
    split: str | None = Field(None, min_length=1)
    resolution: int = Field(256, ge=8)
    crop: CropName = "adm"
    limit: PositiveInt | None = None
    classnames_file: str | None = Field(
        None, min_length=1,
        description="class names in folder order (text, or JSON mapping); 'imagenet' = open_clip's 1000 ImageNet names",
    )
