"""The settings every conv-autoencoder plugin's ``tiny`` preset trains with (torch-free, so suites
validate without torch): the schedule, the image pool, the crops and the checks that tie them to
the architecture. A plugin subclasses :class:`TinyConvTrainParams`, adds its loss weights and
model knobs, and gives ``lr`` and the architecture fields their defaults.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator


def downsample_factor(block_out_channels: tuple[int, ...] | list[int]) -> int:
    """Spatial downsampling of the conv autoencoder skeleton (diffusers, LDM, taming): one halving per
    level but the last."""
    return 2 ** (len(block_out_channels) - 1)


class TinyConvTrainParams(BaseModel):
    """Shared by the plugins' ``TinyTrainParams``: ``steps`` with ``warmup_steps`` of linear warm-up
    then cosine decay; ``num_images`` training images (shapes, split 'train') cycled through with
    random flips; random ``crop_size`` crops for all but the last ``full_resolution_steps`` steps;
    the final PSNR on ``holdout_images`` held-out images (shapes, split 'val', seed + 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: fields that feed GroupNorm layers and so must be divisible by ``norm_num_groups``
    group_normed: ClassVar[tuple[str, ...]] = ("block_out_channels",)

    steps: PositiveInt = 1500
    batch_size: PositiveInt = 16
    lr: PositiveFloat
    warmup_steps: NonNegativeInt = 30
    mse_weight: NonNegativeFloat = 1.0
    #: LPIPS needs torchvision's VGG16 weights ($TOKBENCH_LPIPS_VGG or the torch-hub cache); > 0 without them is an error
    lpips_weight: NonNegativeFloat = 0.0
    resolution: int = Field(64, ge=8)
    #: random crop size for all but the last ``full_resolution_steps`` steps; None: whole images throughout
    crop_size: PositiveInt | None = 32
    full_resolution_steps: NonNegativeInt = 120
    num_images: PositiveInt = 4096
    holdout_images: PositiveInt = 64
    seed: NonNegativeInt = 0
    #: start every residual block as the identity (trains much faster in few steps)
    zero_init_residuals: bool = True
    #: torch.compile the model for training (opt-in; compiling takes a while; not part of the cache key)
    compile: bool = False
    block_out_channels: tuple[PositiveInt, ...] = Field(min_length=1, max_length=6)
    norm_num_groups: PositiveInt

    @model_validator(mode="after")
    def _check_architecture(self) -> "TinyConvTrainParams":
        channels = [c for name in self.group_normed for c in _as_tuple(getattr(self, name))]
        bad = [c for c in channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(
                f"{' and '.join(self.group_normed)} must be divisible by norm_num_groups={self.norm_num_groups}; "
                f"{bad} are not (change norm_num_groups or the channel counts)"
            )
        factor = self.downsample
        for name in ("resolution", "crop_size"):
            value = getattr(self, name)
            if value is not None and value % factor:
                raise ValueError(
                    f"{name} {value} is not divisible by the downsampling factor {factor} of "
                    f"{len(self.block_out_channels)} levels; use a multiple of {factor}"
                )
        if self.crop_size is not None and self.crop_size > self.resolution:
            raise ValueError(f"crop_size {self.crop_size} is larger than resolution {self.resolution}; lower it or set null")
        return self

    @property
    def downsample(self) -> int:
        return downsample_factor(self.block_out_channels)

    def cache_inputs(self) -> dict:
        """What determines the trained weights (``compile`` is an execution detail)."""
        return self.model_dump(mode="json", exclude={"compile"})


def _as_tuple(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,)
