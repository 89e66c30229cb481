"""The built-in resampling baseline passes the conformance suite."""

from __future__ import annotations

import torch

from tokbench.testing.conformance import TokenizerConformance
from tokbench.tokenizers.resample import ResampleParams, ResampleTokenizer


class TestResampleTokenizer(TokenizerConformance):
    image_size = 32

    def make_tokenizer(self):
        return ResampleTokenizer(ResampleParams(factor=4))


def test_constant_image_round_trips_exactly():
    tokenizer = ResampleTokenizer(ResampleParams(factor=8, mode="bilinear"))
    images = torch.full((2, 3, 32, 32), 0.25)
    assert tokenizer.latent_spec(32).shape == (3, 4, 4)
    torch.testing.assert_close(tokenizer.reconstruct(images), images)


def test_fingerprint_depends_on_params():
    a = ResampleTokenizer(ResampleParams(factor=4)).fingerprint()
    assert a == ResampleTokenizer(ResampleParams(factor=4)).fingerprint()
    assert a != ResampleTokenizer(ResampleParams(factor=8)).fingerprint()
