"""The conformance suite every tokenizer plugin runs: the whole Tokenizer contract.

From a plugin's own tests::

    from tokbench.testing.conformance import TokenizerConformance

    class TestMyTokenizer(TokenizerConformance):
        image_size = 32

        def make_tokenizer(self):
            return MyTokenizer(MyParams())       # deterministic: same weights every call

        def make_other_tokenizer(self):            # optional: other params that change outputs
            return MyTokenizer(MyParams(channels=8))

pytest collects the inherited ``test_*`` methods. Each rule is also a plain function
(``check_<rule>(tokenizer, images, ...)``) raising ``ConformanceError`` whose message
names the rule, what was observed and how to fix it.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Callable

import pytest

from tokbench.api import Capability, Tokenizer

if TYPE_CHECKING:  # pragma: no cover
    import torch


class ConformanceError(AssertionError):
    def __init__(self, rule: str, problem: str, fix: str):
        self.rule = rule
        super().__init__(f"[{rule}] {problem}. Fix: {fix}")


#: capability -> the methods it promises
CAPABILITY_METHODS: dict[Capability, tuple[str, ...]] = {
    Capability.ENCODE: ("encode", "latent_spec"),
    Capability.DECODE: ("decode",),
    Capability.IMAGE_FEATURES: ("image_features",),
    Capability.TEXT: ("tokenize", "text_features"),
}


def _overridden(tokenizer: Tokenizer, method: str) -> bool:
    return getattr(type(tokenizer), method, None) is not getattr(Tokenizer, method, None)


def check_is_tokenizer(tokenizer) -> None:
    if not isinstance(tokenizer, Tokenizer):
        raise ConformanceError("is-tokenizer", f"{type(tokenizer).__name__} is not a tokbench.api.Tokenizer",
                               "subclass tokbench.api.Tokenizer")
    for method in ("fingerprint", "modules"):
        if not _overridden(tokenizer, method):
            raise ConformanceError("is-tokenizer", f"{type(tokenizer).__name__} does not implement {method}()",
                                   f"implement {method}() (see docs/write-a-plugin.md)")


def check_capabilities(tokenizer: Tokenizer) -> None:
    declared = set(tokenizer.capabilities)
    if not {Capability.ENCODE, Capability.DECODE} <= declared:
        raise ConformanceError("capabilities", f"declares {sorted(c.value for c in declared)} without encode and decode",
                               "every tokenizer encodes and decodes: include Capability.ENCODE and Capability.DECODE")
    for capability, methods in CAPABILITY_METHODS.items():
        implemented = [m for m in methods if _overridden(tokenizer, m)]
        if capability in declared and len(implemented) < len(methods):
            missing = [m for m in methods if m not in implemented]
            raise ConformanceError("capabilities", f"declares {capability.value!r} but does not implement {', '.join(missing)}",
                                   f"implement {', '.join(missing)} or drop {capability.value!r} from `capabilities`")


def check_latent_spec(tokenizer: Tokenizer, images: "torch.Tensor") -> "torch.Tensor":
    import torch

    size = images.shape[-1]
    spec = tokenizer.latent_spec(size)
    latents = tokenizer.encode(images)  # outside no_grad on purpose: encode must not build a graph itself
    if not isinstance(latents, torch.Tensor):
        raise ConformanceError("latent-spec", f"encode returned {type(latents).__name__}, not a tensor", "return a (B, C, h, w) tensor")
    if tuple(latents.shape) != (images.shape[0], *spec.shape):
        raise ConformanceError("latent-spec", f"encode returned shape {tuple(latents.shape)} but latent_spec({size}) says "
                               f"{(images.shape[0], *spec.shape)}", "make latent_spec describe exactly what encode returns")
    if spec.height * spec.downsample != size or spec.width * spec.downsample != size:
        raise ConformanceError("latent-spec", f"latent_spec({size}) has {spec.height}x{spec.width} at downsample {spec.downsample}",
                               "height x downsample (and width x downsample) must equal the image size")
    if not torch.isfinite(latents.float()).all():
        raise ConformanceError("latent-spec", "encode returned NaN or inf", "check the encoder's numerics on [0, 1] inputs")
    if latents.requires_grad:
        raise ConformanceError("latent-spec", "encode returned a tensor that requires grad",
                               "run the encoder under torch.no_grad() or detach (tasks never backpropagate into tokenizers)")
    return latents


def check_pixels(tokenizer: Tokenizer, images: "torch.Tensor") -> None:
    import torch

    with torch.no_grad():
        out = tokenizer.decode(tokenizer.encode(images))
    if tuple(out.shape) != tuple(images.shape):
        raise ConformanceError("pixels", f"decode(encode(x)) has shape {tuple(out.shape)} for input {tuple(images.shape)}",
                               "decode to (B, 3, H, W) at the input resolution")
    if not out.dtype.is_floating_point:
        raise ConformanceError("pixels", f"decode returned {out.dtype}", "return float images in [0, 1], not uint8")
    if not torch.isfinite(out).all() or float(out.min()) < 0.0 or float(out.max()) > 1.0:
        raise ConformanceError("pixels", f"decode returned values in [{float(out.min()):.3g}, {float(out.max()):.3g}]",
                               "convert back from your normalisation and clamp to [0, 1] inside decode")


def check_determinism(tokenizer: Tokenizer, images: "torch.Tensor") -> None:
    import torch

    with torch.no_grad():
        first, second = tokenizer.encode(images), tokenizer.encode(images)
        if not torch.equal(first, second):
            raise ConformanceError("determinism", "encode gave different latents for the same images",
                                   "encode deterministically (a posterior's mode, not a sample; eval-mode dropout)")
        if not torch.equal(tokenizer.decode(first), tokenizer.decode(first)):
            raise ConformanceError("determinism", "decode gave different images for the same latents", "decode deterministically")


def check_batch_independence(tokenizer: Tokenizer, images: "torch.Tensor", atol: float = 1e-4) -> None:
    import torch

    with torch.no_grad():
        batched = tokenizer.encode(images).float()
        single = torch.cat([tokenizer.encode(images[i : i + 1]) for i in range(len(images))]).float()
    error = float((batched - single).abs().max())
    if error > atol:
        raise ConformanceError("batch-independence", f"an image's latent depends on its batch (max difference {error:.3g})",
                               "no batch statistics at inference (BatchNorm in eval mode), no cross-sample mixing")


def check_dtype_move(tokenizer: Tokenizer, images: "torch.Tensor", atol: float = 1e-3) -> None:
    import torch

    with torch.no_grad():
        reference = tokenizer.encode(images).double()
        tokenizer.to(dtype=torch.float64)
        try:
            if tokenizer.dtype != torch.float64:
                raise ConformanceError("dtype-move", f"after .to(dtype=float64) the tokenizer reports {tokenizer.dtype}",
                                       "list every torch module in modules() so .to() reaches them")
            try:
                moved = tokenizer.encode(images.double())
            except RuntimeError as error:
                raise ConformanceError("dtype-move", f"encode fails after .to(dtype=float64): {error}",
                                       "list every torch module in modules() so .to() reaches them") from error
        finally:
            tokenizer.to(dtype=torch.float32)
    if not tokenizer.latent_spec(images.shape[-1]).discrete and moved.dtype != torch.float64:
        raise ConformanceError("dtype-move", f"in float64 encode returned {moved.dtype}", "compute in the tokenizer's dtype")
    error = float((moved.double() - reference).abs().max())
    if error > atol * max(1.0, float(reference.abs().max())):
        raise ConformanceError("dtype-move", f"float64 and float32 latents differ by {error:.3g}",
                               "keep every buffer and constant in modules() (no float32 tensors created on the fly)")


def check_device_move(tokenizer: Tokenizer, images: "torch.Tensor") -> None:
    import torch

    tokenizer.to("cpu")
    if tokenizer.device.type != "cpu":
        raise ConformanceError("device-move", f"after .to('cpu') the tokenizer is on {tokenizer.device}",
                               "list every torch module in modules()")
    if not torch.cuda.is_available():
        return
    with torch.no_grad():
        reference = tokenizer.encode(images)
        tokenizer.to("cuda")
        try:
            moved = tokenizer.encode(images.cuda()).cpu()
        finally:
            tokenizer.to("cpu")
    if not torch.allclose(moved.float(), reference.float(), atol=1e-2, rtol=1e-2):
        raise ConformanceError("device-move", "CUDA and CPU latents differ", "create tensors on the input's device inside encode")


def check_fingerprint(tokenizer: Tokenizer, rebuild: Callable[[], Tokenizer],
                      other: Callable[[], Tokenizer | None] | None = None) -> None:
    import torch

    first = tokenizer.fingerprint()
    if not isinstance(first, str) or len(first) < 8:
        raise ConformanceError("fingerprint", f"fingerprint() returned {first!r}", "return a hash string of >= 8 characters")
    if rebuild().fingerprint() != first:
        raise ConformanceError("fingerprint", "two tokenizers built the same way have different fingerprints",
                               "hash the weights and output-changing params only (no ids, times or random state)")
    if other is not None:
        different = other()
        if different is not None and different.fingerprint() == first:
            raise ConformanceError("fingerprint", "a tokenizer with other params has the same fingerprint",
                                   "include every parameter that changes outputs in the fingerprint")
    parameters = [p for module in tokenizer.modules() for p in module.parameters()]
    if not parameters:
        return
    with torch.no_grad():
        parameters[0].add_(1.0)
    try:
        if tokenizer.fingerprint() == first:
            raise ConformanceError("fingerprint", "changing a weight did not change the fingerprint",
                                   "compute the fingerprint from the current weights (e.g. tokbench.hashing.state_dict_fingerprint)")
    finally:
        with torch.no_grad():
            parameters[0].sub_(1.0)


def check_pickling(tokenizer: Tokenizer, images: "torch.Tensor") -> None:
    """Cluster jobs and DDP workers receive tokenizers and params by pickle."""
    import torch

    try:
        restored = pickle.loads(pickle.dumps(tokenizer))
    except Exception as error:  # noqa: BLE001 - reported as the rule
        raise ConformanceError("pickling", f"the tokenizer cannot be pickled ({type(error).__name__}: {error})",
                               "keep lambdas, open files and locks out of instance attributes (build them lazily)") from error
    if restored.fingerprint() != tokenizer.fingerprint():
        raise ConformanceError("pickling", "the unpickled tokenizer has another fingerprint", "make fingerprint() depend on state that pickles")
    with torch.no_grad():
        if not torch.equal(restored.encode(images), tokenizer.encode(images)):
            raise ConformanceError("pickling", "the unpickled tokenizer encodes differently", "pickle every module and buffer")
    params = getattr(tokenizer, "params", None)
    if params is not None and hasattr(params, "model_dump"):
        if type(params).model_validate(params.model_dump(mode="json")) != params:
            raise ConformanceError("pickling", "params do not survive a JSON round trip (suites store them as JSON)",
                                   "use JSON-able pydantic field types")


def check_image_features(tokenizer: Tokenizer, images: "torch.Tensor") -> None:
    import torch

    with torch.no_grad():
        features = tokenizer.image_features(images)
    if not isinstance(features, dict) or not features:
        raise ConformanceError("image-features", "image_features returned no named features", "return {name: (B, dim) tensor}")
    for name, value in features.items():
        if value.shape[0] != images.shape[0] or value.ndim != 2:
            raise ConformanceError("image-features", f"feature {name!r} has shape {tuple(value.shape)}",
                                   "return (B, dim) per feature (pool spatial maps)")


def check_text(tokenizer: Tokenizer) -> None:
    import torch

    with torch.no_grad():
        features = tokenizer.text_features(tokenizer.tokenize(["a red circle", "a blue star"]))
    if features.ndim != 2 or features.shape[0] != 2:
        raise ConformanceError("text", f"text_features of 2 prompts has shape {tuple(features.shape)}", "return (B, dim)")


class TokenizerConformance:
    image_size: int = 32
    batch_size: int = 3
    #: tolerance for comparing a batch with its items encoded one by one
    batch_atol: float = 1e-4
    #: tolerance for float64 vs float32 outputs
    dtype_atol: float = 1e-3

    def make_tokenizer(self) -> Tokenizer:  # pragma: no cover - overridden
        raise NotImplementedError("subclasses return a freshly built tokenizer")

    def make_other_tokenizer(self) -> Tokenizer | None:
        """A tokenizer with other parameters that change outputs (None: not checked)."""
        return None

    # ---- fixtures -------------------------------------------------------------
    @pytest.fixture
    def tokenizer(self) -> Tokenizer:
        return self.make_tokenizer().eval()

    @pytest.fixture
    def images(self):
        import torch

        generator = torch.Generator().manual_seed(0)
        smooth = torch.rand(self.batch_size, 3, self.image_size // 4, self.image_size // 4, generator=generator)
        return torch.nn.functional.interpolate(smooth, size=self.image_size, mode="bilinear", align_corners=False)

    # ---- the contract, one rule per test ---------------------------------------
    def test_is_tokenizer(self, tokenizer):
        check_is_tokenizer(tokenizer)

    def test_declares_capabilities(self, tokenizer):
        check_capabilities(tokenizer)

    def test_encode_matches_latent_spec(self, tokenizer, images):
        check_latent_spec(tokenizer, images)

    def test_decode_returns_images_in_unit_range(self, tokenizer, images):
        check_pixels(tokenizer, images)

    def test_encode_decode_deterministic(self, tokenizer, images):
        check_determinism(tokenizer, images)

    def test_batch_items_independent(self, tokenizer, images):
        check_batch_independence(tokenizer, images, self.batch_atol)

    def test_dtype_move(self, tokenizer, images):
        check_dtype_move(tokenizer, images, self.dtype_atol)

    def test_device_move(self, tokenizer, images):
        check_device_move(tokenizer, images)

    def test_fingerprint_stable_and_sensitive(self, tokenizer):
        check_fingerprint(tokenizer, self.make_tokenizer, self.make_other_tokenizer)

    def test_pickles_for_cluster_jobs(self, tokenizer, images):
        check_pickling(tokenizer, images)

    def test_image_features_when_declared(self, tokenizer, images):
        if Capability.IMAGE_FEATURES not in tokenizer.capabilities:
            pytest.skip("no image_features capability")
        check_image_features(tokenizer, images)

    def test_text_when_declared(self, tokenizer):
        if Capability.TEXT not in tokenizer.capabilities:
            pytest.skip("no text capability")
        check_text(tokenizer)
