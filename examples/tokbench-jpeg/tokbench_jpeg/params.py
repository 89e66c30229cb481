"""Suite parameters (torch-free)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class JpegParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    factor: int = Field(4, ge=1, le=32, description="spatial downsampling before compression")
    quality: int = Field(75, ge=1, le=100, description="JPEG quality (libjpeg scale)")
    subsampling: int = Field(0, ge=0, le=2, description="chroma subsampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0")
