"""Multi-crop views: shapes, ranges, determinism and the DINOv2 photometric ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from tokbench_vtp.pretrain.augment import MultiCropAugmentation, MultiCropConfig, random_resized_box




def _image(width: int = 40, height: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


TINY = dict(image_size=32, global_size=32, local_size=16, n_local=3)


def test_views_have_the_configured_shapes_and_range():
    views = MultiCropAugmentation(MultiCropConfig(**TINY))(_image(), np.random.default_rng(0))
    assert set(views) == {"clip", "rec", "global_crops", "local_crops"}
    assert views["clip"].shape == (3, 32, 32)
    assert views["global_crops"].shape == (2, 3, 32, 32)
    assert views["local_crops"].shape == (3, 3, 16, 16)
    for tensor in views.values():
        assert tensor.dtype == torch.float32
        assert tensor.min() >= 0.0 and tensor.max() <= 1.0


def test_plain_view_is_the_squashed_image_and_rec_is_the_same():
    image = _image(40, 24).convert("L").convert("RGB")  # non-square, mode conversion path
    views = MultiCropAugmentation(MultiCropConfig(**TINY))(image.convert("RGBA"), np.random.default_rng(0), need_ssl=False)
    assert set(views) == {"clip", "rec"}  # no crops computed outside the SSL subset
    expected = np.asarray(image.resize((32, 32), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    np.testing.assert_allclose(views["clip"].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    assert views["rec"] is views["clip"]


def test_views_are_a_pure_function_of_the_rng_seed():
    augment = MultiCropAugmentation(MultiCropConfig(**TINY))
    image = _image()
    first = augment(image, np.random.default_rng(5))
    again = augment(image, np.random.default_rng(5))
    other = augment(image, np.random.default_rng(6))
    for key in first:
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["global_crops"], other["global_crops"])
    assert not torch.equal(first["local_crops"], other["local_crops"])
    assert not torch.equal(first["global_crops"][0], first["global_crops"][1])  # two different crops


def _only(**changes) -> MultiCropConfig:
    """Geometry off (full-image crop, no flip) and every photometric op off, except ``changes``."""
    base = dict(
        TINY, global_scale=(1.0, 1.0), local_scale=(1.0, 1.0), flip=False,
        color_jitter=0.0, grayscale=0.0, blur=(0.0, 0.0, 0.0), solarize=0.0,
    )
    return MultiCropConfig(**{**base, **changes})


def test_solarize_applies_to_the_second_global_crop_only():
    image = _image(32, 32)
    views = MultiCropAugmentation(_only(solarize=1.0))(image, np.random.default_rng(0))
    plain = views["clip"]  # scale 1 with aspect in (3/4, 4/3) falls back to the full image
    torch.testing.assert_close(views["global_crops"][0], plain)
    threshold = 128 / 255
    torch.testing.assert_close(views["global_crops"][1], torch.where(plain >= threshold, 1 - plain, plain))


def test_grayscale_blur_and_jitter_change_pixels_as_expected():
    image = _image(32, 32)
    gray = MultiCropAugmentation(_only(grayscale=1.0))(image, np.random.default_rng(0))["global_crops"]
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    torch.testing.assert_close(gray[:, 1], gray[:, 2])
    plain = MultiCropAugmentation(_only())(image, np.random.default_rng(0))["global_crops"]
    blur = MultiCropAugmentation(_only(blur=(1.0, 0.0, 0.0)))
    roughness = [  # sigma is drawn from (0.1, 2.0): on average the crop gets clearly smoother
        float(blur(image, np.random.default_rng(seed))["global_crops"][0].diff(dim=-1).abs().mean())
        for seed in range(8)
    ]
    assert max(roughness) <= float(plain[0].diff(dim=-1).abs().mean()) + 1e-6
    assert np.mean(roughness) < 0.8 * float(plain[0].diff(dim=-1).abs().mean())
    torch.testing.assert_close(blur(image, np.random.default_rng(0))["global_crops"][1], plain[1])  # p = 0 for crop 2
    jittered = MultiCropAugmentation(_only(color_jitter=1.0))(image, np.random.default_rng(0))["global_crops"]
    assert not torch.allclose(jittered, plain, atol=1e-3)


def test_flip_mirrors_the_crop():
    image = _image(32, 32)
    flips = [
        MultiCropAugmentation(_only(flip=True))(image, np.random.default_rng(seed))["global_crops"][0]
        for seed in range(8)
    ]
    plain = MultiCropAugmentation(_only())(image, np.random.default_rng(0))["global_crops"][0]
    mirrored = [torch.equal(view, plain.flip(-1)) for view in flips]
    kept = [torch.equal(view, plain) for view in flips]
    assert any(mirrored) and any(kept) and all(m or k for m, k in zip(mirrored, kept))


def test_no_local_crops():
    views = MultiCropAugmentation(MultiCropConfig(**{**TINY, "n_local": 0}))(_image(), np.random.default_rng(0))
    assert views["local_crops"].shape == (0, 3, 16, 16)


def test_random_resized_box_respects_scale_and_bounds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_box(100, 60, (0.2, 0.5), (3 / 4, 4 / 3), rng)
        assert 0 <= left < right <= 100 and 0 <= top < bottom <= 60
        area = (right - left) * (bottom - top) / 6000
        assert 0.15 <= area <= 0.55
        assert 0.7 <= (right - left) / (bottom - top) <= 1.4


def test_config_defaults_and_validation():
    config = MultiCropConfig()
    assert (config.image_size, config.global_size, config.local_size, config.n_local) == (256, 256, 96, 8)
    assert config.blur == (1.0, 0.1, 0.5) and config.solarize == 0.2
    with pytest.raises(ValidationError, match=r"local_size=100 must be a positive multiple of the patch size 16.*use 96 or 112"):
        MultiCropConfig(local_size=100)
    with pytest.raises(ValidationError, match="extra"):
        MultiCropConfig(n_crops=3)
    with pytest.raises(ValidationError, match="global_scale"):
        MultiCropConfig(global_scale=(0.5, 0.2))
    with pytest.raises(ValidationError):
        MultiCropConfig(grayscale=1.5)
    with pytest.raises(ValidationError):
        config.n_local = 2  # frozen


def test_jitter_components_follow_their_definitions():
    image = _image(32, 32)
    plain = MultiCropAugmentation(_only())(image, np.random.default_rng(0))["global_crops"][0]
    bright = _only(color_jitter=1.0, brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0)
    view = MultiCropAugmentation(bright)(image, np.random.default_rng(3))["global_crops"][0]
    unclipped = (view < 1.0) & (plain > 0.05)
    factor = (view[unclipped] / plain[unclipped]).mean()
    assert 0.6 <= factor <= 1.4 and abs(factor - 1) > 1e-3
    torch.testing.assert_close(view, (plain * factor).clamp(0, 1), atol=1e-5, rtol=0)
    # saturation and hue leave a grey image grey
    grey_image = image.convert("L").convert("RGB")
    grey_plain = MultiCropAugmentation(_only())(grey_image, np.random.default_rng(0))["global_crops"][0]
    colour_only = _only(color_jitter=1.0, brightness=0.0, contrast=0.0, saturation=0.2, hue=0.1)
    grey_view = MultiCropAugmentation(colour_only)(grey_image, np.random.default_rng(3))["global_crops"][0]
    torch.testing.assert_close(grey_view, grey_plain, atol=2e-3, rtol=0)
