"""How each metric is shown: label, direction, scale, format and a one-line description.

Unknown metrics (a plugin's task may report anything) fall back to their own name,
no direction (never highlighted) and four significant digits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    label: str
    higher_is_better: bool | None  # None: no best to highlight
    scale: float = 1.0
    decimals: int = 2
    description: str = ""
    #: the metric that carries this one's spread (e.g. top1_std for top1)
    spread: str | None = None
    #: a count or a setting, not an estimate from samples (FLOPs, evaluations): no sampling error
    exact: bool = False

    @property
    def arrow(self) -> str:
        return "" if self.higher_is_better is None else ("↑" if self.higher_is_better else "↓")

    def format(self, value: float | None, spread: float | None = None) -> str:
        if value is None:
            return "n/a"
        text = f"{value * self.scale:.{self.decimals}f}"
        if spread is not None:
            text += f" ± {spread * self.scale:.{self.decimals}f}"
        return text

    def format_interval(self, value: float, low: float, high: float, style: str = "halfwidth") -> str:
        """``12.34 ± 0.58`` (the larger distance from the value to a bound) or ``12.34 [11.80, 12.92]``
        (the bounds themselves: an interval need not be symmetric, e.g. a bias-corrected FID bootstrap)."""
        if style == "bounds":
            lo, hi = sorted((low * self.scale, high * self.scale))
            return f"{value * self.scale:.{self.decimals}f} [{lo:.{self.decimals}f}, {hi:.{self.decimals}f}]"
        half = max(abs(high - value), abs(value - low)) * abs(self.scale)
        return f"{value * self.scale:.{self.decimals}f} ± {half:.{self.decimals}f}"


METRICS: dict[str, MetricInfo] = {
    "rfid": MetricInfo("rFID", False, 1, 2, "Fréchet Inception distance between the images fed to the tokenizer and its reconstructions"),
    "kid": MetricInfo("KID ×10³", False, 1e3, 2, "kernel Inception distance (unbiased MMD², cubic polynomial kernel): unbiased at any N, unlike FID", spread="kid_std"),
    "psnr": MetricInfo("PSNR (dB)", True, 1, 2, "peak signal-to-noise ratio on the uint8 pair, averaged over images"),
    "ssim": MetricInfo("SSIM", True, 1, 3, "structural similarity (Gaussian 11×11, σ 1.5) on [0, 1]"),
    "lpips": MetricInfo("LPIPS", False, 1, 3, "learned perceptual distance (VGG, v0.1)"),
    "encode_gflops": MetricInfo("encode GFLOPs/img", False, 1, 3, "the tokenizer's encoder per image at the run's "
                                "resolution (torch.utils.flop_counter; interpolation counts 0)", exact=True),
    "decode_gflops": MetricInfo("decode GFLOPs/img", False, 1, 3, "the tokenizer's decoder per image at the run's "
                                "resolution (torch.utils.flop_counter; interpolation counts 0)", exact=True),
    "top1": MetricInfo("top-1 (%)", True, 100, 1, "accuracy; for probes, of the head chosen on a held-out minival", spread="top1_std"),
    "top5": MetricInfo("top-5 (%)", True, 100, 1, "top-5 accuracy"),
    "top1_best_on_val": MetricInfo("top-1 best-on-val (%)", True, 100, 1,
                                   "the published habit: best probe head picked on the validation set itself (optimistic)"),
    "minival_top1": MetricInfo("minival top-1 (%)", True, 100, 1, "probe accuracy on the held-out training images used for selection"),
    "gfid": MetricInfo("gFID", False, 1, 2, "FID of generated samples against the dataset's reference statistics"),
    "total_gflops_per_image": MetricInfo("GFLOPs/img (sample + decode)", False, 1, 3,
                                         "cost of one generated image: counted network evaluations × generator forward FLOPs "
                                         "+ the tokenizer's decode FLOPs", exact=True),
    "inception_score": MetricInfo("IS", True, 1, 1, "Inception score of generated samples (10 splits, torch-fidelity's isc)",
                                  spread="inception_score_std"),
    "precision": MetricInfo("precision", True, 1, 3, "improved precision (k = 3) of generated samples"),
    "recall": MetricInfo("recall", True, 1, 3, "improved recall (k = 3) of generated samples"),
    "nfe": MetricInfo("NFE/img", False, 1, 1, "network evaluations per generated image, counted while sampling "
                      "(the conditional and unconditional halves of guidance counted separately)", exact=True),
    "training_budget_used": MetricInfo("train FLOPs (% of budget)", None, 100, 1,
                                       "generator training FLOPs achieved (whole steps) over the FLOP budget", exact=True),
}

#: metrics shown only as the spread of another one
SPREADS = {info.spread for info in METRICS.values() if info.spread}


def metric_info(name: str) -> MetricInfo:
    return METRICS.get(name) or MetricInfo(name, None, 1, 4)
