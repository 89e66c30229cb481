"""LPIPS: never downloads; runs with a locally provided VGG16 state dict."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokbench.errors import TokbenchError
from tokbench.metrics import perceptual
from tokbench.metrics.perceptual import ENV_LPIPS_VGG, MetricUnavailable, load_lpips


@pytest.fixture(autouse=True)
def _empty_torch_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(ENV_LPIPS_VGG, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home"


@pytest.fixture(scope="module")
def random_vgg16_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    import torchvision

    state = torchvision.models.vgg16(weights=None).state_dict()
    path = tmp_path_factory.mktemp("vgg") / "random-vgg16.pth"
    torch.save(state, path)
    return path, state


def test_without_weights_lpips_is_unavailable() -> None:
    with pytest.raises(MetricUnavailable) as error:
        load_lpips()
    message = str(error.value)
    assert ENV_LPIPS_VGG in message and "vgg16-397923af.pth" in message and "never downloads" in message
    assert isinstance(error.value, TokbenchError)


def test_env_var_to_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_LPIPS_VGG, str(tmp_path / "nope.pth"))
    with pytest.raises(MetricUnavailable, match=ENV_LPIPS_VGG):
        load_lpips()


def test_corrupt_hub_cache_file_is_refused(_empty_torch_home: Path) -> None:
    checkpoints = _empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / perceptual.VGG16_FILENAME).write_bytes(b"truncated download")
    with pytest.raises(MetricUnavailable, match="corrupt"):
        load_lpips()


def test_file_that_is_not_vgg16(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(MetricUnavailable, match="features.0.weight"):
        load_lpips(path)


def test_runs_with_local_vgg16(
    random_vgg16_file: tuple[Path, dict[str, torch.Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, state = random_vgg16_file
    monkeypatch.setenv(ENV_LPIPS_VGG, str(path))
    with pytest.warns(UserWarning, match="not torchvision's ImageNet VGG16"):
        metric = load_lpips()
    backbone = metric._model.net
    loaded = backbone.state_dict()
    assert torch.equal(loaded["slice1.0.weight"], state["features.0.weight"])
    assert torch.equal(loaded["slice5.28.bias"], state["features.28.bias"])
    identity = metric.identity
    assert identity["vgg16_imagenet"] is False and identity["vgg16_origin"] == f"env:{ENV_LPIPS_VGG}"
    assert identity["net"] == "vgg" and identity["version"] == "0.1"

    generator = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 32, 32, generator=generator)
    b = (a + 0.2 * torch.randn(a.shape, generator=generator)).clamp(0, 1)
    same = metric(a, a)
    assert same.shape == (3,) and same.dtype == torch.float64
    assert torch.equal(same, torch.zeros(3, dtype=torch.float64))
    different = metric(a, b)
    assert bool((different > 0).all())
    with pytest.raises(ValueError, match=r"expected \[0,1\]"):
        metric(a * 2 - 1, b)
