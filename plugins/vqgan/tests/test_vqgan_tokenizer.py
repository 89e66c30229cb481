"""VQGANTokenizer: the conformance suite, indices, latent choice, fingerprints."""

from __future__ import annotations

import pytest
import torch

from tokbench.api import Capability
from tokbench.testing.conformance import TokenizerConformance
from tokbench_vqgan.params import VQGANParams
from tokbench_vqgan.tokenizer import VQGANTokenizer
from vqgan_test_helpers import SMALL_LLAMAGEN, SMALL_TAMING, one_torch_thread, random_model, smooth_images  # noqa: F401


def taming_tokenizer(**params) -> VQGANTokenizer:
    return VQGANTokenizer(random_model(SMALL_TAMING, seed=0), SMALL_TAMING, VQGANParams(checkpoint="x.ckpt", **params))


def llamagen_tokenizer(**params) -> VQGANTokenizer:
    return VQGANTokenizer(random_model(SMALL_LLAMAGEN, seed=0), SMALL_LLAMAGEN, VQGANParams(checkpoint="x.pt", **params))


class TestTamingCodesConformance(TokenizerConformance):
    image_size = 32

    def make_tokenizer(self):
        return taming_tokenizer()

    def make_other_tokenizer(self):
        return taming_tokenizer(latent="pre_quant")


class TestLlamaGenPreQuantConformance(TokenizerConformance):
    image_size = 32

    def make_tokenizer(self):
        return llamagen_tokenizer(latent="pre_quant")


def test_indices_round_trip():
    tokenizer = llamagen_tokenizer()
    images = smooth_images(3, 32)
    indices = tokenizer.encode_indices(images)
    assert indices.shape == (3, 8, 8) and indices.dtype == torch.long
    codes = tokenizer.encode(images)
    assert torch.equal(codes, tokenizer.quantizer.lookup(indices))
    assert torch.equal(tokenizer.decode_indices(indices), tokenizer.decode(codes))
    # decode snaps to the codebook: re-encoding the codes' own indices changes nothing
    assert torch.equal(tokenizer.quantizer.indices(codes), indices)
    with pytest.raises(ValueError, match=r"must lie in \[0, 128\)"):
        tokenizer.decode_indices(torch.full((1, 8, 8), 128))
    with pytest.raises(ValueError, match="integer indices"):
        tokenizer.decode_indices(torch.zeros(1, 8, 8))


def test_encode_matches_the_model_path():
    tokenizer = taming_tokenizer()
    model = tokenizer.model
    images = smooth_images(2, 32)
    with torch.no_grad():
        h = model.encode(images * 2 - 1).latents
        z_q, _, (_, _, index) = model.quantize(h)
        expected = ((model.decode(h).sample + 1) / 2).clamp(0, 1)
    assert torch.allclose(tokenizer.encode(images), z_q, atol=1e-6)
    assert torch.equal(tokenizer.encode_indices(images).flatten(), index)
    assert torch.allclose(tokenizer.decode(tokenizer.encode(images)), expected, atol=1e-5)
    pre = taming_tokenizer(latent="pre_quant")
    assert torch.equal(pre.encode(images), h)
    assert torch.allclose(pre.decode(h), expected, atol=1e-5)
    spec = pre.latent_spec(64)
    assert (spec.channels, spec.height, spec.discrete, spec.codebook_size) == (8, 16, False, None)
    with pytest.raises(ValueError, match="divisible"):
        pre.latent_spec(30)


def test_fingerprint_covers_output_changing_params_only():
    codes = taming_tokenizer().fingerprint()
    assert taming_tokenizer(latent="pre_quant").fingerprint() != codes
    assert taming_tokenizer(precision="bf16").fingerprint() != codes
    assert VQGANTokenizer(random_model(SMALL_TAMING, seed=0), SMALL_TAMING, VQGANParams(checkpoint="elsewhere.ckpt")).fingerprint() == codes


def test_describe_and_codebook_usage():
    tokenizer = llamagen_tokenizer()
    assert Capability.DISCRETE in tokenizer.capabilities
    described = tokenizer.describe()
    assert described["codebook_size"] == 128 and described["codebook_dim"] == 4 and described["l2_normalised_codes"]
    assert described["parameters"] == sum(p.numel() for p in tokenizer.model.parameters())
    usage = tokenizer.codebook_usage(smooth_images(4, 32))
    distinct = tokenizer.encode_indices(smooth_images(4, 32)).unique().numel()
    assert usage["codebook_usage"] == pytest.approx(distinct / 128)
    assert 1 <= usage["code_perplexity"] <= distinct
