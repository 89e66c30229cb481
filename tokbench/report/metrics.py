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


METRICS: dict[str, MetricInfo] = {
    "rfid": MetricInfo("rFID", False, 1, 2, "Fréchet Inception distance between the images fed to the tokenizer and its reconstructions"),
    "kid": MetricInfo("KID ×10³", False, 1e3, 2, "kernel Inception distance of the reconstructions (unbiased MMD, polynomial kernel)", spread="kid_std"),
    "psnr": MetricInfo("PSNR (dB)", True, 1, 2, "peak signal-to-noise ratio on the uint8 pair, averaged over images"),
    "ssim": MetricInfo("SSIM", True, 1, 3, "structural similarity (Gaussian 11×11, σ 1.5) on [0, 1]"),
    "lpips": MetricInfo("LPIPS", False, 1, 3, "learned perceptual distance (VGG, v0.1)"),
    "top1": MetricInfo("top-1 (%)", True, 100, 1, "accuracy; for probes, of the head chosen on a held-out minival", spread="top1_std"),
    "top5": MetricInfo("top-5 (%)", True, 100, 1, "top-5 accuracy"),
    "top1_best_on_val": MetricInfo("top-1 best-on-val (%)", True, 100, 1,
                                   "the published habit: best probe head picked on the validation set itself (optimistic)"),
    "minival_top1": MetricInfo("minival top-1 (%)", True, 100, 1, "probe accuracy on the held-out training images used for selection"),
    "gfid": MetricInfo("gFID", False, 1, 2, "FID of generated samples against the dataset's reference statistics"),
    "inception_score": MetricInfo("IS", True, 1, 1, "Inception score of generated samples"),
    "precision": MetricInfo("precision", True, 1, 3, "improved precision (k = 3) of generated samples"),
    "recall": MetricInfo("recall", True, 1, 3, "improved recall (k = 3) of generated samples"),
}

#: metrics shown only as the spread of another one
SPREADS = {info.spread for info in METRICS.values() if info.spread}


def metric_info(name: str) -> MetricInfo:
    return METRICS.get(name) or MetricInfo(name, None, 1, 4)
