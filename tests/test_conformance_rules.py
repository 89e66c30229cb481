"""Each conformance rule, broken on purpose: the check fails naming the rule and the fix."""

from __future__ import annotations

import pytest
import torch

from tokbench.api import Capability, LatentSpec, Tokenizer
from tokbench.hashing import state_dict_fingerprint
from tokbench.testing import conformance as rules
from tokbench.testing.conformance import ConformanceError, TokenizerConformance


class Good(Tokenizer):
    """A 4x4 patch conv autoencoder with fixed weights."""

    capabilities = frozenset({Capability.ENCODE, Capability.DECODE})

    def __init__(self, channels: int = 8):
        generator = torch.Generator().manual_seed(0)
        self.channels = channels
        self.encoder = torch.nn.Conv2d(3, channels, 4, stride=4)
        self.decoder = torch.nn.ConvTranspose2d(channels, 3, 4, stride=4)
        for p in (*self.encoder.parameters(), *self.decoder.parameters()):
            p.data = torch.randn(p.shape, generator=generator) * 0.1

    def latent_spec(self, image_size):
        return LatentSpec(self.channels, image_size // 4, image_size // 4, 4)

    def encode(self, images):
        with torch.no_grad():
            return self.encoder(images)

    def decode(self, latents):
        with torch.no_grad():
            return torch.sigmoid(self.decoder(latents))

    def fingerprint(self):
        return state_dict_fingerprint({**self.encoder.state_dict(), **{f"d.{k}": v for k, v in self.decoder.state_dict().items()}},
                                      extra={"channels": self.channels})

    def modules(self):
        return [self.encoder, self.decoder]


def images(size=16, batch=3):
    generator = torch.Generator().manual_seed(1)
    return torch.rand(batch, 3, size, size, generator=generator)


class TestGoodPasses(TokenizerConformance):
    image_size = 16

    def make_tokenizer(self):
        return Good()

    def make_other_tokenizer(self):
        return Good(channels=4)


def broken(rule: str, check, *args, match: str):
    with pytest.raises(ConformanceError) as raised:
        check(*args)
    assert raised.value.rule == rule
    message = str(raised.value)
    assert message.startswith(f"[{rule}] ") and match in message and "Fix: " in message
    return message


def test_not_a_tokenizer():
    class NoFingerprint(Good):
        fingerprint = Tokenizer.fingerprint

    broken("is-tokenizer", rules.check_is_tokenizer, object(), match="is not a tokbench.api.Tokenizer")
    broken("is-tokenizer", rules.check_is_tokenizer, NoFingerprint(), match="does not implement fingerprint()")


def test_declared_capability_without_its_methods():
    class ClaimsText(Good):
        capabilities = frozenset({Capability.ENCODE, Capability.DECODE, Capability.TEXT})

    class NoDecode(Good):
        capabilities = frozenset({Capability.ENCODE})

    message = broken("capabilities", rules.check_capabilities, ClaimsText(), match="declares 'text' but does not implement tokenize, text_features")
    assert "drop 'text' from `capabilities`" in message
    broken("capabilities", rules.check_capabilities, NoDecode(), match="without encode and decode")


def test_latent_spec_that_lies():
    class WrongSpec(Good):
        def latent_spec(self, image_size):
            return LatentSpec(4, image_size // 4, image_size // 4, 4)

    class WrongDownsample(Good):
        def latent_spec(self, image_size):
            return LatentSpec(8, image_size // 4, image_size // 4, 8)

    class Grad(Good):
        def encode(self, images):
            return self.encoder(images)

    broken("latent-spec", rules.check_latent_spec, WrongSpec(), images(), match="encode returned shape (3, 8, 4, 4) but latent_spec(16) says (3, 4, 4, 4)")
    broken("latent-spec", rules.check_latent_spec, WrongDownsample(), images(), match="height x downsample")
    broken("latent-spec", rules.check_latent_spec, Grad(), images(), match="requires grad")


def test_pixels_outside_the_unit_range():
    class Signed(Good):
        def decode(self, latents):
            return torch.tanh(self.decoder(latents)).detach() * 2

    class Uint8(Good):
        def decode(self, latents):
            return (super().decode(latents) * 255).to(torch.uint8)

    broken("pixels", rules.check_pixels, Signed(), images(), match="decode returned values in [")
    broken("pixels", rules.check_pixels, Uint8(), images(), match="decode returned torch.uint8")


def test_nondeterministic_encoder():
    class Sampling(Good):
        def encode(self, images):
            latents = super().encode(images)
            return latents + 0.01 * torch.randn_like(latents)

    message = broken("determinism", rules.check_determinism, Sampling(), images(), match="different latents")
    assert "mode, not a sample" in message


def test_batch_statistics():
    class BatchNormed(Good):
        def encode(self, images):
            latents = super().encode(images)
            return latents - latents.mean(dim=0, keepdim=True)

    broken("batch-independence", rules.check_batch_independence, BatchNormed(), images(), match="depends on its batch")


def test_dtype_move_missing_a_module():
    class Hidden(Good):
        def modules(self):
            return [self.decoder]  # the encoder is not moved

    broken("dtype-move", rules.check_dtype_move, Hidden(), images(), match="float64")


def test_device_move_reports_the_wrong_device():
    class Stuck(Good):
        @property
        def device(self):
            return torch.device("meta")

    broken("device-move", rules.check_device_move, Stuck(), images(), match="after .to('cpu') the tokenizer is on meta")


def test_fingerprints():
    class Constant(Good):
        def fingerprint(self):
            return "always-the-same"

    class Unstable(Good):
        def fingerprint(self):
            return f"object-{id(self):x}"

    broken("fingerprint", rules.check_fingerprint, Constant(), Constant, None, match="changing a weight did not change the fingerprint")
    broken("fingerprint", rules.check_fingerprint, Unstable(), Unstable, None, match="two tokenizers built the same way")
    broken("fingerprint", rules.check_fingerprint, Constant(), Constant, lambda: Constant(channels=4), match="other params has the same fingerprint")
    short = type("Short", (Good,), {"fingerprint": lambda self: "abc"})
    broken("fingerprint", rules.check_fingerprint, short(), short, None, match="returned 'abc'")


def test_unpicklable_tokenizer():
    class HoldsLambda(Good):
        def __init__(self):
            super().__init__()
            self.hook = lambda x: x

    message = broken("pickling", rules.check_pickling, HoldsLambda(), images(), match="cannot be pickled")
    assert "lambdas" in message


def test_image_features_and_text_shapes():
    class Maps(Good):
        capabilities = Good.capabilities | {Capability.IMAGE_FEATURES}

        def image_features(self, images, layers=None):
            return {"map": self.encoder(images).detach()}

    class FlatText(Good):
        capabilities = Good.capabilities | {Capability.TEXT}

        def tokenize(self, texts):
            return torch.zeros(len(texts), 4, dtype=torch.long)

        def text_features(self, tokens):
            return torch.zeros(tokens.shape[0])

    broken("image-features", rules.check_image_features, Maps(), images(), match="feature 'map' has shape (3, 8, 4, 4)")
    broken("text", rules.check_text, FlatText(), match="has shape (2,)")
