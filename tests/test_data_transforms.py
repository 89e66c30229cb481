import numpy as np
import pytest
from PIL import Image

from tokbench.data.transforms import CROP_FUNCTIONS, adm_center_crop, resize_center_crop, squash


def _noise_image(width, height, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (height, width) if channels is None else (height, width, channels)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode)


def test_names():
    assert set(CROP_FUNCTIONS) == {"adm", "resize-center", "squash", "squash-bilinear", "clip", "center-0.875"}
    assert CROP_FUNCTIONS["adm"] is adm_center_crop


def test_adm_halves_with_box_then_bicubic():
    image = _noise_image(1024, 768)
    expected = image.resize((512, 384), resample=Image.Resampling.BOX)  # 768 >= 512: halve once
    expected = expected.resize((341, 256), resample=Image.Resampling.BICUBIC)  # round(512 * 256/384)
    expected = np.asarray(expected)[0:256, 42:298]  # offsets (256-256)//2, (341-256)//2
    result = adm_center_crop(image, 256)
    assert result.size == (256, 256) and result.mode == "RGB"
    assert np.array_equal(np.asarray(result), expected)
    # a single bicubic step is a different image: the halving really happened
    assert not np.array_equal(np.asarray(resize_center_crop(image, 256)), expected)


def test_adm_halves_repeatedly_and_handles_portrait():
    image = _noise_image(300, 1100, seed=1)
    expected = image.resize((150, 550), resample=Image.Resampling.BOX)
    expected = expected.resize((75, 275), resample=Image.Resampling.BOX)  # 150 >= 2*64 -> 75
    expected = expected.resize((64, 235), resample=Image.Resampling.BICUBIC)  # round(275 * 64/75) = 235
    expected = np.asarray(expected)[85:149, 0:64]  # (235-64)//2 = 85
    assert np.array_equal(np.asarray(adm_center_crop(image, 64)), expected)


def test_adm_upsamples_small_images():
    assert adm_center_crop(_noise_image(40, 30), 64).size == (64, 64)


@pytest.mark.parametrize("crop", sorted(CROP_FUNCTIONS))
@pytest.mark.parametrize("size", [(640, 480), (480, 640), (100, 100), (33, 70)])
def test_every_crop_gives_a_square_rgb(crop, size):
    result = CROP_FUNCTIONS[crop](_noise_image(*size), 48)
    assert result.size == (48, 48) and result.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
@pytest.mark.parametrize("crop", sorted(CROP_FUNCTIONS))
def test_non_rgb_input_is_converted(mode, crop):
    image = _noise_image(90, 60, mode="RGBA" if mode == "RGBA" else "L")
    if mode == "P":
        image = image.convert("P")
    result = CROP_FUNCTIONS[crop](image, 32)
    assert result.mode == "RGB" and np.asarray(result).shape == (32, 32, 3)


def test_grey_input_stays_grey():
    result = np.asarray(adm_center_crop(_noise_image(128, 96, mode="L"), 32))
    assert np.array_equal(result[..., 0], result[..., 1]) and np.array_equal(result[..., 1], result[..., 2])


def test_squash_ignores_aspect_and_resize_center_keeps_it():
    pixels = np.zeros((100, 200, 3), dtype=np.uint8)
    pixels[:, :50] = 255  # left quarter white: squash keeps it, a centre crop drops it
    image = Image.fromarray(pixels)
    squashed = np.asarray(squash(image, 50))
    cropped = np.asarray(resize_center_crop(image, 50))
    assert squashed[:, :10].min() > 200 and squashed[:, 16:].max() < 55
    assert cropped.max() < 55


def test_invalid_size():
    with pytest.raises(ValueError):
        adm_center_crop(_noise_image(10, 10), 0)


@pytest.mark.parametrize("size", [(640, 480), (333, 500), (97, 64), (224, 224)])
def test_protocol_crops_equal_torchvision(size):
    """VTP zero-shot, OpenCLIP eval and DINOv2/MAE eval transforms, pixel for pixel."""
    from torchvision import transforms as T

    image = _noise_image(*size, seed=3)
    bicubic, bilinear = T.InterpolationMode.BICUBIC, T.InterpolationMode.BILINEAR
    expected = {
        "squash-bilinear": T.Resize((56, 56), interpolation=bilinear),
        "clip": T.Compose([T.Resize(56, interpolation=bicubic), T.CenterCrop(56)]),
        "center-0.875": T.Compose([T.Resize(64, interpolation=bicubic), T.CenterCrop(56)]),  # 56 / 0.875 = 64
    }
    for crop, transform in expected.items():
        assert np.array_equal(np.asarray(CROP_FUNCTIONS[crop](image, 56)), np.asarray(transform(image))), crop
    at_imagenet_scale = T.Compose([T.Resize(256, interpolation=bicubic), T.CenterCrop(224)])
    assert np.array_equal(np.asarray(CROP_FUNCTIONS["center-0.875"](image, 224)), np.asarray(at_imagenet_scale(image)))
