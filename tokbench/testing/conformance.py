"""The conformance tests every tokenizer plugin runs.

Use it from a plugin's tests::

    from tokbench.testing.conformance import TokenizerConformance

    class TestMyTokenizer(TokenizerConformance):
        image_size = 32

        def make_tokenizer(self):
            return MyTokenizer(...)   # must be deterministic: same weights every call

pytest collects the inherited ``test_*`` methods.
"""

from __future__ import annotations

import pytest

from tokbench.api import Capability, Tokenizer


class TokenizerConformance:
    image_size: int = 32
    batch_size: int = 3
    #: tolerance for comparing a batch with its items encoded one by one
    batch_atol: float = 1e-4
    #: tolerance for float64 vs float32 outputs
    dtype_atol: float = 1e-3

    def make_tokenizer(self) -> Tokenizer:  # pragma: no cover - overridden
        raise NotImplementedError("subclasses return a freshly built tokenizer")

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

    # ---- contract ----------------------------------------------------------------
    def test_declares_capabilities(self, tokenizer):
        assert isinstance(tokenizer, Tokenizer)
        assert {Capability.ENCODE, Capability.DECODE} <= set(tokenizer.capabilities)

    def test_encode_matches_latent_spec(self, tokenizer, images):
        import torch

        spec = tokenizer.latent_spec(self.image_size)
        with torch.no_grad():
            latents = tokenizer.encode(images)
        assert tuple(latents.shape) == (self.batch_size, *spec.shape)
        assert spec.height * spec.downsample == self.image_size
        assert torch.isfinite(latents.float()).all()
        assert not latents.requires_grad

    def test_decode_returns_images_in_unit_range(self, tokenizer, images):
        import torch

        with torch.no_grad():
            out = tokenizer.decode(tokenizer.encode(images))
        assert tuple(out.shape) == tuple(images.shape)
        assert out.dtype.is_floating_point
        assert torch.isfinite(out).all()
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0

    def test_encode_decode_deterministic(self, tokenizer, images):
        import torch

        with torch.no_grad():
            first = tokenizer.encode(images)
            second = tokenizer.encode(images)
            assert torch.equal(first, second)
            assert torch.equal(tokenizer.decode(first), tokenizer.decode(second))

    def test_batch_items_independent(self, tokenizer, images):
        import torch

        with torch.no_grad():
            batched = tokenizer.encode(images)
            one_by_one = torch.cat([tokenizer.encode(images[i : i + 1]) for i in range(len(images))])
        torch.testing.assert_close(batched.float(), one_by_one.float(), atol=self.batch_atol, rtol=0)

    def test_dtype_move(self, tokenizer, images):
        import torch

        with torch.no_grad():
            reference = tokenizer.encode(images).double()
            tokenizer.to(dtype=torch.float64)
            assert tokenizer.dtype == torch.float64
            moved = tokenizer.encode(images.double())
            tokenizer.to(dtype=torch.float32)
        if not tokenizer.latent_spec(self.image_size).discrete:
            assert moved.dtype == torch.float64
        torch.testing.assert_close(moved.double(), reference, atol=self.dtype_atol, rtol=self.dtype_atol)

    def test_device_move(self, tokenizer, images):
        import torch

        tokenizer.to("cpu")
        assert tokenizer.device.type == "cpu"
        if not torch.cuda.is_available():
            return
        with torch.no_grad():
            reference = tokenizer.encode(images)
            tokenizer.to("cuda")
            moved = tokenizer.encode(images.cuda()).cpu()
        torch.testing.assert_close(moved.float(), reference.float(), atol=1e-2, rtol=1e-2)

    def test_fingerprint_stable_and_weight_sensitive(self, tokenizer):
        import torch

        first = tokenizer.fingerprint()
        assert isinstance(first, str) and len(first) >= 8
        assert self.make_tokenizer().fingerprint() == first, "same weights must give the same fingerprint"
        parameters = [p for module in tokenizer.modules() for p in module.parameters()]
        if not parameters:
            pytest.skip("tokenizer has no weights")
        with torch.no_grad():
            parameters[0].add_(1.0)
        assert tokenizer.fingerprint() != first, "changing weights must change the fingerprint"

    def test_image_features_when_declared(self, tokenizer, images):
        import torch

        if Capability.IMAGE_FEATURES not in tokenizer.capabilities:
            pytest.skip("no image_features capability")
        with torch.no_grad():
            features = tokenizer.image_features(images)
        assert features and all(f.shape[0] == self.batch_size for f in features.values())

    def test_text_when_declared(self, tokenizer):
        import torch

        if Capability.TEXT not in tokenizer.capabilities:
            pytest.skip("no text capability")
        with torch.no_grad():
            features = tokenizer.text_features(tokenizer.tokenize(["a red circle", "a blue star"]))
        assert features.shape[0] == 2
