"""uint8 quantisation, PSNR and SSIM against closed forms and torchmetrics."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from tokbench.metrics.image_quality import (
    IDENTICAL_PSNR_DB,
    mean_psnr,
    psnr_uint8,
    ssim,
    summarize_psnr,
    to_uint8,
)


def test_round_is_round_half_up() -> None:
    k = torch.arange(0, 511)
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(to_uint8(k.to(dtype) / 510), ((k + 1) // 2).to(torch.uint8))  # 255 * k/510 = k/2


def test_round_equals_dit_formula_and_truncate_equals_vtp() -> None:
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.2 - 0.1
    dit = torch.clamp(127.5 * (2 * x - 1) + 128, 0, 255).to(torch.uint8)
    assert torch.equal(to_uint8(x, "round"), dit)
    vtp = (x.clamp(0, 1) * 255).to(torch.uint8)
    assert torch.equal(to_uint8(x, "truncate"), vtp)
    difference = to_uint8(x, "round").int() - to_uint8(x, "truncate").int()
    assert set(difference.unique().tolist()) == {0, 1}


def test_to_uint8_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(torch.tensor([0.5, float("nan")]))
    with pytest.raises(TypeError, match="floating-point"):
        to_uint8(torch.zeros(2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="rounding"):
        to_uint8(torch.zeros(2), "nearest")  # type: ignore[arg-type]


def test_psnr_closed_forms() -> None:
    a = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    b = a.clone()
    b[0] += 1  # every value off by 1: MSE 1
    b[1, :, :4] = 255  # half the values off by 255: MSE 255^2 / 2
    psnr = psnr_uint8(a, b)
    assert psnr.dtype == torch.float64 and psnr.shape == (3,)
    assert psnr[0].item() == pytest.approx(20 * math.log10(255), abs=1e-12)
    assert psnr[1].item() == pytest.approx(10 * math.log10(2), abs=1e-12)
    assert math.isinf(psnr[2].item())
    summary = summarize_psnr(psnr)
    assert summary.n_identical == 1 and summary.n_images == 3
    expected = (20 * math.log10(255) + 10 * math.log10(2) + IDENTICAL_PSNR_DB) / 3
    assert summary.mean_db == pytest.approx(expected) and mean_psnr(psnr) == summary.mean_db


def test_psnr_input_checks() -> None:
    with pytest.raises(TypeError, match="uint8"):
        psnr_uint8(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_uint8(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 4, 5, dtype=torch.uint8))


def _pair(shape: tuple[int, ...], noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(shape[0], shape[1], 8, 8, generator=generator),
                                             size=shape[2:], mode="bicubic").clamp(0, 1)
    degraded = (smooth + noise * torch.randn(shape, generator=generator)).clamp(0, 1)
    return smooth, degraded


@pytest.mark.parametrize(("shape", "noise"), [((4, 3, 64, 64), 0.05), ((2, 3, 37, 53), 0.2), ((3, 1, 32, 48), 0.01)])
def test_ssim_matches_torchmetrics(shape: tuple[int, ...], noise: float) -> None:
    a, b = _pair(shape, noise, seed=shape[2])
    reference = tm_ssim(a, b, data_range=1.0, reduction="none").to(torch.float64)
    ours = ssim(a, b)
    assert ours.shape == (shape[0],) and ours.dtype == torch.float64
    assert (ours - reference).abs().max().item() < 1e-5
    assert (ssim(a, b, compute_dtype=torch.float32) - reference).abs().max().item() < 1e-5


def test_ssim_valid_border_matches_torchmetrics_cropped_map() -> None:
    a, b = _pair((2, 3, 40, 48), 0.1, seed=1)
    _, full = tm_ssim(a.double(), b.double(), data_range=1.0, reduction="none", return_full_image=True)
    reference = full[..., 5:-5, 5:-5].mean(dim=(1, 2, 3))
    assert (ssim(a, b, border="valid") - reference).abs().max().item() < 1e-10


def test_ssim_identity_and_checks() -> None:
    a, _ = _pair((2, 3, 32, 32), 0.0, seed=2)
    assert torch.allclose(ssim(a, a), torch.ones(2, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match=r"expected \[0,1\]"):
        ssim(a * 2 - 1, a)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[..., :8, :8], a[..., :8, :8])
    with pytest.raises(TypeError, match="float images"):
        ssim(to_uint8(a), to_uint8(a))
    with pytest.raises(ValueError, match="border"):
        ssim(a, a, border="same")  # type: ignore[arg-type]
