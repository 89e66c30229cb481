"""LPIPSLoss: differentiable LPIPS-VGG, input spaces, backbone file handling (offline)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from tokbench.errors import TokbenchError
from tokbench.metrics.perceptual import ENV_LPIPS_VGG, VGG16_FILENAME, MetricUnavailable, load_lpips
from tokbench.training.perceptual import IMAGENET_MEAN, IMAGENET_STD, LPIPSLoss


@pytest.fixture(autouse=True)
def _offline_torch_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    monkeypatch.delenv(ENV_LPIPS_VGG, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture(scope="module")
def random_loss() -> LPIPSLoss:
    torch.manual_seed(0)
    return LPIPSLoss(input_space="unit", backbone="random")


def _images(seed: int, batch: int = 2, side: int = 32) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


def test_identical_zero_different_positive(random_loss: LPIPSLoss) -> None:
    x, y = _images(0), _images(1)
    assert random_loss(x, x).item() == 0.0
    assert random_loss(x, y).item() > 0
    assert random_loss(x, y).dim() == 0


def test_is_batch_mean(random_loss: LPIPSLoss) -> None:
    x, y = _images(0, batch=3), _images(1, batch=3)
    per_image = torch.stack([random_loss(x[i : i + 1], y[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(random_loss(x, y), per_image.mean())


def test_gradient_reaches_input_not_network(random_loss: LPIPSLoss) -> None:
    x = _images(0).requires_grad_(True)
    random_loss(x, _images(1)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in random_loss.parameters())


def test_stays_in_eval_mode(random_loss: LPIPSLoss) -> None:
    x, y = _images(0), _images(1)
    before = random_loss(x, y)
    random_loss.train()
    assert random_loss.training and not random_loss.model.training
    torch.testing.assert_close(random_loss(x, y), before)  # the heads' dropout stays off


def test_input_spaces_agree(random_loss: LPIPSLoss) -> None:
    x01, y01 = _images(0), _images(1)
    expected = random_loss(x01, y01)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for space, convert in (("signed", lambda t: t * 2 - 1), ("imagenet", lambda t: (t - mean) / std)):
        random_loss.input_space = space
        try:
            torch.testing.assert_close(random_loss(convert(x01), convert(y01)), expected, atol=1e-5, rtol=1e-4)
        finally:
            random_loss.input_space = "unit"


def test_matches_lpips_package_directly(random_loss: LPIPSLoss) -> None:
    x01, y01 = _images(0), _images(1)
    direct = random_loss.model(x01 * 2 - 1, y01 * 2 - 1).flatten()
    torch.testing.assert_close(random_loss(x01, y01), direct.mean())


def test_missing_file_is_a_clear_error() -> None:
    with pytest.raises(MetricUnavailable) as error:
        LPIPSLoss()
    message = str(error.value)
    assert VGG16_FILENAME in message and ENV_LPIPS_VGG in message
    assert isinstance(error.value, TokbenchError)
    with pytest.raises(MetricUnavailable, match="does not exist"):
        LPIPSLoss(vgg_weights="/nonexistent/vgg16.pth")


def test_file_backbone_matches_metric(
    random_loss: LPIPSLoss, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (random, fp16) VGG16 features file found via the env var gives the metric's distances."""
    torch.manual_seed(1)
    # torchvision layout "features.<i>.<param>", written from a perturbed random lpips backbone ("slice<k>.<i>.<param>")
    features = {
        f"features.{key.split('.', 1)[1]}": (value + 0.01 * torch.randn_like(value)).half()
        for key, value in random_loss.model.net.state_dict().items()
    }
    path = tmp_path / "vgg16-features.pth"
    torch.save(features, path)
    monkeypatch.setenv(ENV_LPIPS_VGG, str(path))
    loss = LPIPSLoss(input_space="signed")
    assert loss.vgg_weights == path
    torch.testing.assert_close(loss.model.net.slice1[0].weight, features["features.0.weight"].float())
    torch.testing.assert_close(getattr(loss.model.net.slice5, "28").bias, features["features.28.bias"].float())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "not the ImageNet VGG16" warning of the metric
        metric = load_lpips(path)
    x01, y01 = _images(0), _images(1)
    expected = metric(x01, y01).mean().float()
    torch.testing.assert_close(loss(x01 * 2 - 1, y01 * 2 - 1).detach(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_space="0-255"), "input_space"),
        (dict(backbone="imagenet"), "backbone"),
        (dict(backbone="random", vgg_weights="x.pth"), "drop one"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        LPIPSLoss(**kwargs)


def test_shape_errors(random_loss: LPIPSLoss) -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        random_loss(_images(0, side=32), _images(1, side=16))
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        random_loss(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
