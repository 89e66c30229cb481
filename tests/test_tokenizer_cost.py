"""A tokenizer's own cost: FlopCounterMode's encode/decode FLOPs per image at the run's resolution."""

from __future__ import annotations

import pytest
import torch

from tokbench.api import LatentSpec, Tokenizer
from tokbench.runtime.context import BuildContext
from tokbench.storage.store import Store
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


def test_reconstruction_records_the_tokenizers_cost(tmp_path):
    from tokbench.data.shapes import ShapesDataset
    from tokbench.tasks.base import TaskContext
    from tokbench.tasks.reconstruction import ReconstructionTask
    from tokbench.tasks.reconstruction_params import ReconstructionParams

    build = BuildContext(store=Store(tmp_path), progress=False)
    tokenizer = build_resample(ResampleParams(factor=2), build)
    context = TaskContext(build=build, tokenizer=tokenizer, tokenizer_name="f2", tokenizer_fingerprint=tokenizer.fingerprint(),
                          dataset=ShapesDataset(num_images=8, resolution=16), dataset_name="val", unit_key="k")
    output = ReconstructionTask(ReconstructionParams(metrics=["psnr"], batch_size=8)).run(context)
    assert output.metrics["encode_gflops"] == 0 and output.metrics["decode_gflops"] == 0  # interpolation counts 0
    cost = output.details["tokenizer_cost"]
    assert cost["resolution"] == 16 and cost["decode_seconds_per_image"] > 0 and "interpolation" in cost["counter"]
