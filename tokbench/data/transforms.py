"""Square crops from PIL images; the ADM one is the canonical rFID preprocessing."""

from __future__ import annotations

from typing import Callable

from PIL import Image

#: Bump when any crop's output changes; dataset fingerprints include it.
TRANSFORMS_VERSION = 1


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_size(size: int) -> None:
    if size < 1:
        raise ValueError(f"crop size must be positive, got {size}")


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    left = (width - size) // 2
    top = (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def _resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    scale = size / min(image.size)
    new_size = (round(image.width * scale), round(image.height * scale))
    return image.resize(new_size, resample=Image.Resampling.BICUBIC)


def adm_center_crop(image: Image.Image, size: int) -> Image.Image:
    """guided-diffusion's ``center_crop_arr``: BOX-halve while the shorter side is
    at least ``2 * size``, BICUBIC-resize the shorter side to ``size``, centre-crop."""
    _check_size(size)
    image = _rgb(image)
    while min(image.size) >= 2 * size:
        image = image.resize((image.width // 2, image.height // 2), resample=Image.Resampling.BOX)
    return _center_crop(_resize_shorter_side(image, size), size)


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """BICUBIC-resize the shorter side to ``size`` in one step, then centre-crop."""
    _check_size(size)
    return _center_crop(_resize_shorter_side(_rgb(image), size), size)


def squash(image: Image.Image, size: int) -> Image.Image:
    """BICUBIC-resize to ``size`` x ``size``, ignoring the aspect ratio."""
    _check_size(size)
    return _rgb(image).resize((size, size), resample=Image.Resampling.BICUBIC)


# ---- the evaluation transforms of published protocols, pixel-exact ------------------
# torchvision's Resize on a PIL image is PIL's resize; its int-size form truncates the
# longer side and CenterCrop rounds the offset. Reproduced here without torchvision.


def _torchvision_resize_shorter(image: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    width, height = image.size
    if width <= height:
        new_size = (size, int(size * height / width))
    else:
        new_size = (int(size * width / height), size)
    return image.resize(new_size, resample=resample)


def _torchvision_center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def squash_bilinear(image: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize((size, size))`` on PIL (BILINEAR): VTP's zero-shot preprocessing."""
    _check_size(size)
    return _rgb(image).resize((size, size), resample=Image.Resampling.BILINEAR)


def clip_center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize(size, BICUBIC)`` + ``CenterCrop(size)``: OpenCLIP's eval transform."""
    _check_size(size)
    return _torchvision_center_crop(_torchvision_resize_shorter(_rgb(image), size, Image.Resampling.BICUBIC), size)


#: DINOv2 / MAE / timm evaluate at 224 after resizing the shorter side to 256.
EVAL_CROP_FRACTION = 0.875


def center_crop_0875(image: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize(round(size / 0.875), BICUBIC)`` + ``CenterCrop(size)``: the
    DINOv2 and MAE linear-probe eval transform (256 -> 224 at ImageNet scale)."""
    _check_size(size)
    resize_to = int(round(size / EVAL_CROP_FRACTION))
    return _torchvision_center_crop(_torchvision_resize_shorter(_rgb(image), resize_to, Image.Resampling.BICUBIC), size)


CROP_FUNCTIONS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "adm": adm_center_crop,
    "resize-center": resize_center_crop,
    "squash": squash,
    "squash-bilinear": squash_bilinear,
    "clip": clip_center_crop,
    "center-0.875": center_crop_0875,
}
