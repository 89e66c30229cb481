"""A tokenizer's own cost: FlopCounterMode's encode/decode FLOPs per image at the run's resolution."""

from __future__ import annotations

import pytest
import torch

from tokbench.api import LatentSpec, Tokenizer
from tokbench.context import BuildContext
from tokbench.store import Store
from tokbench.tokenizers.cost import measure_cost
from tokbench.tokenizers.resample import ResampleParams, build_resample


class PatchConv(Tokenizer):
    """A 4x4 patch convolution to 8 channels and its transpose back."""

    def __init__(self):
        self.encoder = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.decoder = torch.nn.ConvTranspose2d(8, 3, 4, stride=4)

    def latent_spec(self, image_size):
        return LatentSpec(channels=8, height=image_size // 4, width=image_size // 4)

    def encode(self, images):
        return self.encoder(images)

    def decode(self, latents):
        return self.decoder(latents).clamp(0, 1)

    def fingerprint(self):
        return "patch-conv"

    def modules(self):
        return [self.encoder, self.decoder]


@pytest.mark.parametrize("resolution", [32, 64])
def test_flops_per_image_are_the_convolutions_at_the_run_resolution(resolution):
    cost = measure_cost(PatchConv(), resolution, batch_size=3)
    positions = (resolution // 4) ** 2
    assert cost.encode_flops_per_image == 2 * positions * 8 * 3 * 16  # 2 x multiply-accumulates
    assert cost.decode_flops_per_image == 2 * positions * 8 * 3 * 16
    assert cost.encode_seconds_per_image > 0 and cost.decode_seconds_per_image > 0
    record = cost.to_dict()
    assert record["resolution"] == resolution and record["device"] == "cpu" and "interpolation" in record["counter"]


def test_a_tokenizer_without_weights_costs_zero_flops_stated(tmp_path):
    tokenizer = build_resample(ResampleParams(factor=4), BuildContext(store=Store(tmp_path), progress=False))
    cost = measure_cost(tokenizer, 32)
    assert cost.encode_flops_per_image == 0 and cost.decode_flops_per_image == 0
    assert cost.decode_seconds_per_image > 0
