"""CodebookQuantizer: lookup and loss terms against hand-computed values, diffusers agreement."""

from __future__ import annotations

import math

import pytest
import torch

from tokbench_vqgan.quantizer import CodebookQuantizer
from vqgan_test_helpers import one_torch_thread  # noqa: F401 - autouse fixture


def quantizer(l2_norm: bool, legacy: bool) -> CodebookQuantizer:
    q = CodebookQuantizer(3, 2, beta=0.25, legacy=legacy, l2_norm=l2_norm)
    with torch.no_grad():
        q.embedding.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]]))
    return q


def latent(*vector: float) -> torch.Tensor:
    return torch.tensor(vector).view(1, 2, 1, 1).requires_grad_(True)


def test_plain_lookup_is_squared_l2():
    # (3, 1): squared distances 2, 13, 20 -> code 0; (-0.5, -2): 10.25, 25.25, 1.25 -> code 2
    q = quantizer(l2_norm=False, legacy=True)
    z = torch.tensor([[3.0, 1.0], [-0.5, -2.0]]).T.reshape(1, 2, 1, 2)
    assert q.indices(z).tolist() == [[[0, 2]]]
    z_q, _, (_, _, index) = q(z)
    assert index.tolist() == [0, 2]
    assert torch.equal(z_q, torch.tensor([[2.0, -1.0], [0.0, -1.0]]).reshape(1, 2, 1, 2))


def test_l2_lookup_is_cosine_and_returns_the_normalised_code():
    # |(3,1)| = sqrt(10); cosines with the codes: 0.949, 0.316, -0.894 -> code 0, decoded as (1, 0)
    # (1.0, 1.2): squared distances 2.44 (code 0), 4.24 (code 1) unnormalised; cosines 0.640, 0.768 -> code 1
    q = quantizer(l2_norm=True, legacy=False)
    z = torch.tensor([[3.0, 1.0], [1.0, 1.2]]).T.reshape(1, 2, 1, 2)
    assert q.indices(z).tolist() == [[[0, 1]]]
    assert quantizer(l2_norm=False, legacy=False).indices(z).tolist() == [[[0, 0]]]
    z_q, _, _ = q(z)
    assert torch.allclose(z_q, torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2), atol=1e-7)
    assert torch.allclose(q.codebook()[2], torch.tensor([-1.0, -1.0]) / math.sqrt(2))


@pytest.mark.parametrize("legacy, codebook_grad, latent_grad", [
    # taming / diffusers legacy: beta on the codebook term -> codebook grad 0.25*(e - z), latent grad (z - e)
    (True, [-0.25, -0.25], [1.0, 1.0]),
    # VQ-VAE / LlamaGen: beta on the commitment term
    (False, [-1.0, -1.0], [0.25, 0.25]),
])
def test_beta_placement(legacy, codebook_grad, latent_grad):
    q = quantizer(l2_norm=False, legacy=legacy)
    z = latent(3.0, 1.0)  # nearest code (2, 0); mean squared error over 2 elements = 1
    _, loss, _ = q(z)
    assert loss.item() == pytest.approx(1.25)
    loss.backward()
    assert q.embedding.weight.grad[0].tolist() == pytest.approx(codebook_grad)
    assert q.embedding.weight.grad[1:].abs().sum() == 0
    assert z.grad.flatten().tolist() == pytest.approx(latent_grad)


def test_l2_loss_is_measured_on_the_sphere():
    q = quantizer(l2_norm=True, legacy=False)
    _, loss, _ = q(latent(3.0, 1.0))
    z = torch.tensor([3.0, 1.0]) / math.sqrt(10)
    expected = 1.25 * ((z - torch.tensor([1.0, 0.0])) ** 2).mean()
    assert loss.item() == pytest.approx(float(expected), rel=1e-6)


def test_straight_through_gradient():
    q = quantizer(l2_norm=False, legacy=True)
    z = latent(3.0, 1.0)
    z_q, _, _ = q(z)
    z_q.sum().backward()
    assert z.grad.flatten().tolist() == [1.0, 1.0]


def test_agrees_with_diffusers_vector_quantizer():
    from diffusers.models.autoencoders.vae import VectorQuantizer

    torch.manual_seed(0)
    reference = VectorQuantizer(256, 8, beta=0.25)
    ours = CodebookQuantizer(256, 8, beta=0.25, legacy=True)
    ours.load_state_dict(reference.state_dict(), strict=True)
    z = torch.randn(2, 8, 5, 7) * 0.01
    expected_q, expected_loss, (_, _, expected_index) = reference(z)
    z_q, loss, (_, _, index) = ours(z)
    assert torch.equal(index, expected_index)
    assert torch.allclose(z_q, expected_q, atol=1e-7) and torch.allclose(loss, expected_loss, rtol=1e-6)
    assert torch.equal(ours.get_codebook_entry(index, (2, 5, 7, 8)), reference.get_codebook_entry(expected_index, (2, 5, 7, 8)))


def test_chunked_lookup_matches_one_block(monkeypatch):
    from tokbench_vqgan import quantizer as module

    q = CodebookQuantizer(512, 8, l2_norm=True)
    z = torch.randn(3, 8, 16, 16)
    whole = q.indices(z)
    monkeypatch.setattr(module, "_CHUNK", 100)
    assert torch.equal(q.indices(z), whole)


def test_the_codebook_gradient_is_the_same_every_time_on_several_threads():
    """Many latents choosing the same codes: their gradients must be summed in a fixed order, or
    two runs of the same training drift apart in the last bits (they did with ``codebook[index]``,
    whose backward adds atomically from each CPU thread)."""
    generator = torch.Generator().manual_seed(0)
    q = CodebookQuantizer(16, 16, l2_norm=True)
    z = torch.randn(256, 16, 32, 32, generator=generator)  # 262,144 vectors on 16 codes
    upstream = torch.randn(256, 16, 32, 32, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gradients = []
        for _ in range(4):
            q.zero_grad(set_to_none=True)
            z_q, loss, _ = q(z.clone().requires_grad_(True))
            ((z_q * upstream).sum() + loss).backward()
            gradients.append(q.embedding.weight.grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert gradients[0].abs().sum() > 0
    assert all(torch.equal(gradients[0], g) for g in gradients[1:])
    # the same gradient as advanced indexing computes, up to the order of the sums
    vectors = q.prepare(z)
    reference = q.codebook()[q.nearest(vectors)]
    assert torch.equal(q.gather(q.nearest(vectors)), reference)
