"""Per-sample views for VTP pretraining: the plain CLIP/reconstruction view and
DINOv2 multi-crop views for the SSL branch.

Geometry (random resized crop, flip) is done by PIL in one ``resize(box=...)``
call on uint8 pixels, which is the cheapest way to cut and scale a region;
colour operations then run in torch on [0, 1] floats. Every random draw comes
from the ``numpy.random.Generator`` passed in, so the views of a sample are a
pure function of its seed — what makes an interrupted run resume bit-exactly.
Pixels stay in [0, 1]; normalisation belongs to the model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from tokbench_vtp.pretrain.crops import MultiCropConfig  # noqa: F401 - re-exported

#: torchvision's RandomResizedCrop aspect-ratio range, used by DINOv2.
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
#: DINOv2 GaussianBlur(kernel_size=9, sigma=(0.1, 2.0)).
BLUR_KERNEL = 9
BLUR_SIGMA = (0.1, 2.0)
SOLARIZE_THRESHOLD = 128.0 / 255.0
# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def _gray(image: torch.Tensor) -> torch.Tensor:
    """(1, H, W) luma of a (3, H, W) image."""
    return torch.einsum("chw,c->hw", image, _LUMA.to(image.dtype)).unsqueeze(0)


def _blend(image: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (other + factor * (image - other)).clamp_(0.0, 1.0)


class MultiCropAugmentation:
    """Turns one PIL image into the views the three VTP branches consume.

    Returns float tensors in [0, 1]:

    * ``clip`` (3, S, S): the image squashed to ``image_size`` (no crop, so the
      caption stays true of the whole picture);
    * ``rec`` (3, S, S): the same tensor object as ``clip`` — the reconstruction
      target is the plain view, and sharing it avoids a second resize;
    * ``global_crops`` (2, 3, G, G) and ``local_crops`` (n_local, 3, L, L):
      DINOv2 multi-crop views, only when ``need_ssl`` (so samples outside the
      SSL subset cost one resize).
    """

    def __init__(self, config: MultiCropConfig | None = None):
        self.config = config or MultiCropConfig()

    def __call__(self, image: Image.Image, rng: np.random.Generator, need_ssl: bool = True) -> dict[str, torch.Tensor]:
        config = self.config
        if image.mode != "RGB":
            image = image.convert("RGB")
        plain = _to_tensor(image.resize((config.image_size, config.image_size), Image.Resampling.BICUBIC))
        views: dict[str, torch.Tensor] = {"clip": plain, "rec": plain}
        if not need_ssl:
            return views
        blur_1, blur_2, blur_local = config.blur
        global_1 = self._view(image, config.global_size, config.global_scale, blur_1, 0.0, rng)
        global_2 = self._view(image, config.global_size, config.global_scale, blur_2, config.solarize, rng)
        views["global_crops"] = torch.stack([global_1, global_2])
        local = [
            self._view(image, config.local_size, config.local_scale, blur_local, 0.0, rng)
            for _ in range(config.n_local)
        ]
        size = config.local_size
        views["local_crops"] = torch.stack(local) if local else torch.empty(0, 3, size, size)
        return views

    # ------------------------------------------------------------------ one view

    def _view(
        self,
        image: Image.Image,
        size: int,
        scale: tuple[float, float],
        blur_probability: float,
        solarize_probability: float,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        box = random_resized_box(image.width, image.height, scale, CROP_RATIO, rng)
        crop = image.resize((size, size), Image.Resampling.BICUBIC, box=box)
        if self.config.flip and rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        view = _to_tensor(crop)
        if rng.random() < self.config.color_jitter:
            view = self._color_jitter(view, rng)
        if rng.random() < self.config.grayscale:
            view = _gray(view).expand(3, -1, -1).contiguous()
        if rng.random() < blur_probability:
            sigma = float(rng.uniform(*BLUR_SIGMA))
            view = TF.gaussian_blur(view, [BLUR_KERNEL, BLUR_KERNEL], [sigma, sigma])
        if rng.random() < solarize_probability:
            view = torch.where(view >= SOLARIZE_THRESHOLD, 1.0 - view, view)
        return view

    def _color_jitter(self, view: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """torchvision ColorJitter semantics: the four adjustments in random order,
        each factor uniform in [1 - s, 1 + s] (hue: shift uniform in [-h, h])."""
        config = self.config
        for op in rng.permutation(4):
            if op == 0 and config.brightness > 0:
                factor = float(rng.uniform(max(0.0, 1 - config.brightness), 1 + config.brightness))
                view = (view * factor).clamp_(0.0, 1.0)
            elif op == 1 and config.contrast > 0:
                factor = float(rng.uniform(max(0.0, 1 - config.contrast), 1 + config.contrast))
                view = _blend(view, _gray(view).mean(), factor)
            elif op == 2 and config.saturation > 0:
                factor = float(rng.uniform(max(0.0, 1 - config.saturation), 1 + config.saturation))
                view = _blend(view, _gray(view), factor)
            elif op == 3 and config.hue > 0:
                shift = float(rng.uniform(-config.hue, config.hue))
                view = TF.adjust_hue(view, shift)
        return view


def random_resized_box(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop's region: up to ``attempts`` draws of
    (area fraction, log-uniform aspect) that fit, else a centre crop clamped to
    ``ratio``. Returns a PIL box (left, top, right, bottom)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left = int(rng.integers(0, width - crop_w + 1))
            top = int(rng.integers(0, height - crop_h + 1))
            return left, top, left + crop_w, top + crop_h
    image_ratio = width / height
    if image_ratio < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif image_ratio > ratio[1]:
        crop_w, crop_h = int(round(height * ratio[1])), height
    else:
        crop_w, crop_h = width, height
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h
