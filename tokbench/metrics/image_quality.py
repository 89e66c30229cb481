"""Pixel-level reconstruction metrics: uint8 quantisation, PSNR and SSIM (tokbench definitions).

* ``to_uint8``: the single quantisation rule applied to references and reconstructions alike.
* PSNR: per image on the uint8 pair, peak 255; averaged per image.
* SSIM: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, data_range 1 on [0,1] images,
  mean over pixels and RGB channels per image, same numbers as
  ``torchmetrics.functional.structural_similarity_index_measure(..., data_range=1.0)``.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

Rounding = Literal["round", "truncate"]
SSIMBorder = Literal["reflect", "valid"]

PSNR_PEAK = 255.0
IDENTICAL_PSNR_DB = 100.0  # value an identical pair counts as in mean_psnr (per-image PSNR is inf)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_RANGE_SLACK = 1e-6


def to_uint8(images01: torch.Tensor, rounding: Rounding = "round") -> torch.Tensor:
    """Quantise float images in [0,1] to uint8 (values outside [0,1] are clamped).

    * ``"round"`` (tokbench default): ``floor(clamp(255 x + 0.5, 0, 255))``, round half up;
      equal to DiT / LlamaGen / LightningDiT's ``clamp(127.5 y + 128, 0, 255)`` for y = 2x - 1.
    * ``"truncate"``: ``(clamp(x, 0, 1) * 255).to(uint8)`` as VTP and RAE do (about -0.5 LSB bias).

    Computed in float32, or float64 for float64 input. NaN/inf raise ``ValueError``.
    """
    if not isinstance(images01, torch.Tensor) or not images01.is_floating_point():
        raise TypeError(f"to_uint8 expects a floating-point tensor in [0,1], got {_describe(images01)}")
    if not bool(torch.isfinite(images01).all()):
        raise ValueError("to_uint8: images contain NaN or inf; the decoder output is broken")
    x = images01 if images01.dtype == torch.float64 else images01.to(torch.float32)
    if rounding == "round":
        return (x * 255.0 + 0.5).clamp_(0.0, 255.0).to(torch.uint8)
    if rounding == "truncate":
        return (x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)
    raise ValueError(f"rounding must be 'round' or 'truncate', got {rounding!r}")


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB (float64, shape (B,)) of two uint8 batches, peak 255.

    The MSE is taken over all non-batch dimensions (layout-agnostic). Identical images give
    ``inf``; use :func:`mean_psnr` / :func:`summarize_psnr` to average.
    """
    _check_pair(a, b, "psnr_uint8")
    if a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise TypeError(f"psnr_uint8 expects uint8 images, got {a.dtype} and {b.dtype}; quantise with to_uint8")
    diff = a.to(torch.float64) - b.to(torch.float64)
    mse = diff.square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(PSNR_PEAK**2 / mse)  # mse == 0 -> inf


class PSNRSummary(NamedTuple):
    mean_db: float  # mean over images, identical pairs counted as IDENTICAL_PSNR_DB
    n_identical: int  # pairs with PSNR = inf
    n_images: int


def summarize_psnr(per_image_db: torch.Tensor) -> PSNRSummary:
    """Average per-image PSNR, counting identical pairs (inf) as ``IDENTICAL_PSNR_DB`` = 100 dB.

    100 dB is above what real reconstructions reach (one 1-LSB error in a 256x256 RGB image
    already gives 101 dB, a typical tokenizer 20-35 dB), keeps the mean finite when a few
    images round-trip exactly, and ``n_identical`` is reported so nothing is hidden. NaN
    values (not produced by :func:`psnr_uint8`) raise ``ValueError``.
    """
    values = per_image_db.detach().to("cpu", torch.float64).flatten()
    if values.numel() == 0:
        raise ValueError("summarize_psnr: no images")
    if bool(torch.isnan(values).any()) or bool((values == -math.inf).any()):
        raise ValueError("summarize_psnr: per-image PSNR contains NaN or -inf")
    identical = torch.isinf(values)
    capped = torch.where(identical, torch.full_like(values, IDENTICAL_PSNR_DB), values)
    return PSNRSummary(float(capped.mean()), int(identical.sum()), int(values.numel()))


def mean_psnr(per_image_db: torch.Tensor) -> float:
    """Mean PSNR over images with identical pairs counted as 100 dB (see :func:`summarize_psnr`)."""
    return summarize_psnr(per_image_db).mean_db


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    half = (SSIM_WINDOW - 1) / 2
    offsets = torch.arange(-half, half + 1, dtype=dtype, device=device)
    weights = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return weights / weights.sum()


def ssim(
    a01: torch.Tensor,
    b01: torch.Tensor,
    *,
    border: SSIMBorder = "reflect",
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Per-image SSIM (shape (B,), float64) of two (B,C,H,W) float batches in [0,1].

    Gaussian 11x11 window (sigma 1.5, separable), K1 = 0.01, K2 = 0.03, data_range = 1.0,
    variances clamped at 0, SSIM map averaged over channels and pixels.

    ``border`` chooses which SSIM-map positions are averaged:

    * ``"reflect"`` (default): every pixel, the window reflect-padded at the border, as
      torchmetrics >= 1.5 (the pinned 1.9) does.
    * ``"valid"``: only windows that lie inside the image, as torchmetrics < 1.5 and the
      original MATLAB code; differs in the third decimal on small images.

    Inputs outside [0,1] raise ``ValueError`` (SSIM is not shift-invariant: [-1,1] inputs
    give different numbers). ``compute_dtype`` float64 (default) avoids float32
    cancellation in E[x^2] - E[x]^2; torchmetrics computes in the input dtype.
    """
    _check_pair(a01, b01, "ssim")
    if not (a01.is_floating_point() and b01.is_floating_point()):
        raise TypeError(f"ssim expects float images in [0,1], got {a01.dtype} and {b01.dtype}; divide uint8 by 255")
    if a01.dim() != 4:
        raise ValueError(f"ssim expects (B,C,H,W) images, got shape {tuple(a01.shape)}")
    if min(a01.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(a01.shape[-2:])}")
    for name, image in (("a01", a01), ("b01", b01)):
        low, high = float(image.min()), float(image.max())
        if math.isnan(low) or low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
            raise ValueError(
                f"ssim: {name} has values in [{low:.4g}, {high:.4g}], expected [0,1] "
                "(clamp reconstructions; map [-1,1] images with (x + 1) / 2)"
            )
    if border not in ("reflect", "valid"):
        raise ValueError(f"border must be 'reflect' or 'valid', got {border!r}")

    x = a01.to(compute_dtype)
    y = b01.to(compute_dtype)
    if border == "reflect":
        pad = (SSIM_WINDOW - 1) // 2
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        y = F.pad(y, (pad, pad, pad, pad), mode="reflect")
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H', W')
    groups = moments.shape[1]
    window = _gaussian_window(compute_dtype, moments.device)
    moments = F.conv2d(moments, window.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    moments = F.conv2d(moments, window.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.chunk(5, dim=1)

    c1 = SSIM_K1**2  # data_range = 1
    c2 = SSIM_K2**2
    mu_xy = mu_x * mu_y
    mu_xx = mu_x.square()
    mu_yy = mu_y.square()
    var_x = (e_xx - mu_xx).clamp_min(0.0)
    var_y = (e_yy - mu_yy).clamp_min(0.0)
    cov_xy = e_xy - mu_xy
    ssim_map = ((2 * mu_xy + c1) * (2 * cov_xy + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1).to(torch.float64)


def _check_pair(a: torch.Tensor, b: torch.Tensor, where: str) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"{where} expects two tensors, got {_describe(a)} and {_describe(b)}")
    if a.shape != b.shape:
        raise ValueError(f"{where}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"{where}: expected a batch (B, ...), got shape {tuple(a.shape)}")


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of dtype {value.dtype}"
    return type(value).__name__
