"""GAN losses, adaptive weight, PatchGAN and feature discriminators, DiffAugment."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tokbench.training.discriminators import (
    ActNorm,
    FeatureDiscriminator,
    PatchGANDiscriminator,
    _shift,
    diff_augment,
)
from tokbench.training.gan import (
    adaptive_gan_weight,
    gan_start_factor,
    hinge_d_loss,
    hinge_g_loss,
    non_saturating_g_loss,
    vanilla_d_loss,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


# --- losses -------------------------------------------------------------------------------


def test_hinge_d_loss_hand_computed() -> None:
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - r) = 0, 0.5, 2   -> mean 5/6
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + f) = 0, 1, 2     -> mean 1
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 1))


def test_hinge_d_loss_list_is_mean_over_heads() -> None:
    real = [torch.tensor([2.0, 0.5, -1.0]), torch.tensor([[0.0]])]  # head means 5/6 and 1
    fake = [torch.tensor([-2.0, 0.0, 1.0]), torch.tensor([[3.0]])]  # head means 1 and 4
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * ((5 / 6 + 1) / 2 + (1 + 4) / 2))


def test_vanilla_d_loss_hand_computed() -> None:
    real, fake = torch.tensor([1.0, -2.0]), torch.tensor([0.5])
    expected = 0.5 * ((_softplus(-1.0) + _softplus(2.0)) / 2 + _softplus(0.5))
    assert vanilla_d_loss(real, fake).item() == pytest.approx(expected)


def test_generator_losses_hand_computed() -> None:
    fake = torch.tensor([[1.0, -3.0], [0.5, 0.0]])
    assert hinge_g_loss(fake).item() == pytest.approx(-(1.0 - 3.0 + 0.5 + 0.0) / 4)
    assert hinge_g_loss([fake, torch.tensor([2.0])]).item() == pytest.approx((0.375 - 2.0) / 2)
    expected = sum(_softplus(-v) for v in (1.0, -3.0, 0.5, 0.0)) / 4
    assert non_saturating_g_loss(fake).item() == pytest.approx(expected)
    assert non_saturating_g_loss([fake]).item() == pytest.approx(-torch.log(torch.sigmoid(fake)).mean().item())


def test_loss_input_errors() -> None:
    with pytest.raises(ValueError, match="2 real heads but 1"):
        hinge_d_loss([torch.zeros(1), torch.zeros(1)], [torch.zeros(1)])
    with pytest.raises(ValueError, match="empty"):
        hinge_g_loss([])


def test_gan_start_factor() -> None:
    assert [gan_start_factor(step, 3) for step in range(5)] == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert gan_start_factor(0, 0) == 1.0


# --- adaptive weight ----------------------------------------------------------------------


def _tiny_autoencoder_losses(seed: int = 0):
    torch.manual_seed(seed)
    hidden = nn.Linear(4, 5)
    last = nn.Linear(5, 3)
    critic = nn.Linear(3, 1)
    x = torch.randn(6, 4)
    target = torch.randn(6, 3)
    out = last(torch.tanh(hidden(x)))
    rec = (out - target).abs().mean()
    gan = -critic(out).mean()
    return hidden, last, rec, gan


def test_adaptive_weight_matches_independent_autograd() -> None:
    hidden, last, rec, gan = _tiny_autoencoder_losses()
    weight = adaptive_gan_weight(rec, gan, last.weight)
    rec_grad = torch.autograd.grad(rec, last.weight, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan, last.weight, retain_graph=True)[0]
    expected = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    assert weight.dim() == 0 and not weight.requires_grad
    torch.testing.assert_close(weight, expected.detach())
    assert 0 < weight.item() < 1e4
    (rec + weight * gan).backward()  # graphs were retained for the real backward pass
    assert hidden.weight.grad is not None and last.weight.grad is not None


def test_adaptive_weight_is_clamped() -> None:
    _, last, rec, gan = _tiny_autoencoder_losses()
    unclamped = adaptive_gan_weight(rec, gan, last.weight).item()
    assert adaptive_gan_weight(rec, gan, last.weight, max_weight=unclamped / 2).item() == pytest.approx(unclamped / 2)
    tiny_gan = gan * 1e-12  # ||grad gan|| ~ 0: the weight is rec_norm / eps, then clamped at 1e4
    assert adaptive_gan_weight(rec * 1e3, tiny_gan, last.weight).item() == 1e4


def test_adaptive_weight_errors() -> None:
    hidden, last, rec, gan = _tiny_autoencoder_losses()
    with pytest.raises(ValueError, match="does not depend on last_layer"):
        adaptive_gan_weight(rec, gan, nn.Parameter(torch.zeros(2)))
    with pytest.raises(ValueError, match="does not require grad"):
        adaptive_gan_weight(rec.detach(), gan, last.weight)


# --- PatchGAN -----------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["batch", "actnorm", "group", "none"])
@pytest.mark.parametrize("side, logits_side", [(32, 2), (64, 6)])
def test_patchgan_output_shape(norm: str, side: int, logits_side: int) -> None:
    torch.manual_seed(0)
    disc = PatchGANDiscriminator(in_channels=3, base_channels=8, n_layers=3, norm=norm)
    logits = disc(torch.randn(2, 3, side, side))
    assert logits.shape == (2, 1, logits_side, logits_side)
    assert torch.isfinite(logits).all()


def test_patchgan_layout_and_init() -> None:
    torch.manual_seed(0)
    disc = PatchGANDiscriminator(base_channels=16, n_layers=2, norm="batch")
    convs = [m for m in disc.main if isinstance(m, nn.Conv2d)]
    layout = [(c.in_channels, c.out_channels, c.stride[0]) for c in convs]
    assert layout == [(3, 16, 2), (16, 32, 2), (32, 64, 1), (64, 1, 1)]
    assert [c.bias is not None for c in convs] == [True, False, False, True]  # BN layers carry the bias
    assert not isinstance(disc.main[1], nn.BatchNorm2d)  # no norm after the first conv
    big = convs[2].weight
    assert abs(big.mean().item()) < 0.002 and big.std().item() == pytest.approx(0.02, rel=0.05)
    bn_weights = torch.cat([m.weight for m in disc.main if isinstance(m, nn.BatchNorm2d)])
    assert (bn_weights - 1).abs().max().item() < 0.1 and bn_weights.std().item() > 0
    actnorm = PatchGANDiscriminator(base_channels=16, n_layers=2, norm="actnorm")
    assert "main.2.bias" in actnorm.state_dict() and "main.3.loc" in actnorm.state_dict()


def test_actnorm_initialises_from_first_training_batch() -> None:
    torch.manual_seed(0)
    layer = ActNorm(3)
    x = torch.randn(4, 3, 5, 5) * torch.tensor([2.0, 0.5, 3.0]).view(1, 3, 1, 1) + 7
    y = layer(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.transpose(0, 1).reshape(3, -1).std(dim=1), torch.ones(3), atol=1e-4, rtol=0)
    assert int(layer.initialized) == 1
    loc = layer.loc.detach().clone()
    layer(x * 5)  # second batch: no re-initialisation
    torch.testing.assert_close(layer.loc.detach(), loc)
    fresh = ActNorm(3).eval()
    torch.testing.assert_close(fresh(x), x)  # eval mode never initialises


def test_patchgan_rejects_bad_norm() -> None:
    with pytest.raises(ValueError, match="norm must be one of"):
        PatchGANDiscriminator(norm="layer")


# --- FeatureDiscriminator -----------------------------------------------------------------


class _TinyViT(nn.Module):
    """Fake frozen feature network: 4x4 patch embedding, two blocks, tokens from both blocks."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, kernel_size=4, stride=4)
        self.block1 = nn.Linear(dim, dim)
        self.norm = nn.BatchNorm1d(dim)  # detects a frozen network that was left in train mode
        self.block2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (B, N, C)
        first = tokens + torch.tanh(self.block1(tokens))
        second = first + torch.tanh(self.block2(self.norm(first.transpose(1, 2)).transpose(1, 2)))
        return [first, second]


def test_feature_discriminator_grads() -> None:
    torch.manual_seed(0)
    vit = _TinyViT()
    disc = FeatureDiscriminator(vit, feature_dims=[8, 8], kernel_size=3).train()
    assert not vit.training and not vit.norm.training  # frozen network stays in eval mode
    running_mean = vit.norm.running_mean.clone()
    real = torch.rand(2, 3, 16, 16)
    fake = torch.rand(2, 3, 16, 16, requires_grad=True)

    logits_real, logits_fake = disc(real), disc(fake.detach())
    assert [tuple(t.shape) for t in logits_real] == [(2, 16), (2, 16)]
    hinge_d_loss(logits_real, logits_fake).backward()
    assert all(p.grad is None for p in vit.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.heads.parameters())
    torch.testing.assert_close(vit.norm.running_mean, running_mean)

    disc.zero_grad(set_to_none=True)
    hinge_g_loss(disc(fake)).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # through the frozen extractor
    assert all(p.grad is None for p in vit.parameters())


def test_feature_discriminator_plain_callable_maps_and_hooks() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, kernel_size=2, stride=2).requires_grad_(False)
    seen = {}

    def augment(x: torch.Tensor) -> torch.Tensor:
        seen["augment"] = x.shape[-1]
        return x.flip(-1)

    disc = FeatureDiscriminator(
        lambda x: [conv(x)], feature_dims=[4], norm="group", spectral_norm=False,
        input_transform=lambda x: F.interpolate(x, size=(12, 12), mode="bilinear"), augment=augment,
    )
    assert not any(p is conv.weight for p in disc.parameters())  # a plain callable is not registered
    logits = disc(torch.rand(3, 3, 8, 8))
    assert seen["augment"] == 8 and len(logits) == 1 and logits[0].shape == (3, 36)  # 12x12 map / 2


def test_feature_discriminator_errors() -> None:
    with pytest.raises(ValueError, match="level 0 has 8 channels but feature_dims says 6"):
        FeatureDiscriminator(_TinyViT(), feature_dims=[6, 8])(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="2 feature levels"):
        FeatureDiscriminator(_TinyViT(), feature_dims=[8])(torch.rand(1, 3, 8, 8))


# --- DiffAugment --------------------------------------------------------------------------


def test_shift_moves_content_with_zero_fill() -> None:
    x = torch.arange(9.0).view(1, 1, 3, 3).repeat(2, 1, 1, 1)
    shifted = _shift(x, dy=torch.tensor([1, 0]), dx=torch.tensor([0, -1]))
    assert shifted[0, 0].tolist() == [[0, 0, 0], [0, 1, 2], [3, 4, 5]]
    assert shifted[1, 0].tolist() == [[1, 2, 0], [4, 5, 0], [7, 8, 0]]


def test_diff_augment_is_differentiable_and_random() -> None:
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    out = diff_augment(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    again = diff_augment(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, out)
    other = diff_augment(x, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(other, out)


def test_diff_augment_cutout_and_translation_bounds() -> None:
    ones = torch.ones(16, 1, 8, 8)
    cut = diff_augment(ones, policy=["cutout"], generator=torch.Generator().manual_seed(0))
    zeros_per_image = (cut == 0).flatten(1).sum(1)
    assert set(cut.unique().tolist()) <= {0.0, 1.0}
    assert (zeros_per_image > 0).all() and (zeros_per_image <= 16).all()  # a 4x4 square, maybe clipped
    moved = diff_augment(ones, policy=["translation"], generator=torch.Generator().manual_seed(0))
    kept = moved.flatten(1).sum(1)
    assert (kept >= 49).all()  # shifts of at most 1 pixel (0.125 * 8) per axis keep >= 7x7
    assert (kept < 64).any()  # ... and some images did move


def test_diff_augment_rejects_unknown_policy() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        diff_augment(torch.zeros(1, 3, 4, 4), policy=["colour"])
