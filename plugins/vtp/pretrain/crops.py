"""``MultiCropConfig``: which views the VTP branches see (importable without torch)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
SIZE_MULTIPLE = 16


class MultiCropConfig(BaseModel):
    """Views for one sample; defaults are DINOv2's recipe adapted to 256² (patch 16).

    ``blur`` holds the blur probabilities of (global crop 1, global crop 2,
    local crops); ``solarize`` applies to global crop 2 only, as in DINOv2.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = 256
    global_size: int = 256
    local_size: int = 96
    n_local: int = Field(8, ge=0)
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    flip: bool = True
    color_jitter: Probability = 0.8
    brightness: float = Field(0.4, ge=0.0)
    contrast: float = Field(0.4, ge=0.0)
    saturation: float = Field(0.2, ge=0.0)
    hue: float = Field(0.1, ge=0.0, le=0.5)
    grayscale: Probability = 0.2
    blur: tuple[Probability, Probability, Probability] = (1.0, 0.1, 0.5)
    solarize: Probability = 0.2

    @field_validator("image_size", "global_size", "local_size")
    @classmethod
    def _multiple_of_patch(cls, value: int, info: ValidationInfo) -> int:
        if value <= 0 or value % SIZE_MULTIPLE:
            lower = max(SIZE_MULTIPLE, value // SIZE_MULTIPLE * SIZE_MULTIPLE)
            raise ValueError(
                f"{info.field_name}={value} must be a positive multiple of the patch size {SIZE_MULTIPLE} "
                f"so crops tile into whole patches; use {lower} or {lower + SIZE_MULTIPLE}"
            )
        return value

    @field_validator("global_scale", "local_scale")
    @classmethod
    def _scale_range(cls, value: tuple[float, float], info: ValidationInfo) -> tuple[float, float]:
        low, high = value
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(
                f"{info.field_name}={value} must satisfy 0 < low <= high <= 1 (fractions of the image area)"
            )
        return value

    @model_validator(mode="after")
    def _local_not_larger(self) -> "MultiCropConfig":
        if self.n_local > 0 and self.local_size > self.global_size:
            raise ValueError(
                f"local_size={self.local_size} exceeds global_size={self.global_size}; local crops are the small views"
            )
        return self
