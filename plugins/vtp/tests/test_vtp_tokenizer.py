"""VTPTokenizer: the conformance suite, agreement with the official methods, features, text,
loading (pretrained and recipe) and the plugin registration."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from tokbench.api import Capability, CapabilityError
from tokbench.errors import MissingAssetError
from tokbench.nn.layers import imagenet_denormalize, imagenet_normalize
from tokbench.testing.conformance import TokenizerConformance
from tokbench_vtp.checkpoint import save_official
from tokbench_vtp.params import VTPParams
from tokbench_vtp.text_tokenizer import EOT_TOKEN, SOT_TOKEN
from tokbench_vtp.tokenizer import VTPTokenizer, build_vtp
from vtp_test_helpers import MICRO, micro_model


def smooth_images(batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 4, size // 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    """micro_model(seed=0) saved in the official format."""
    directory = tmp_path_factory.mktemp("vtp-micro")
    save_official(micro_model(seed=0), directory)
    return directory


@pytest.fixture
def tokenizer(checkpoint_dir) -> VTPTokenizer:
    return build_vtp({"pretrained": str(checkpoint_dir)})


class TestVTPConformance(TokenizerConformance):
    """The contract, on a checkpoint written with ``save_official`` and loaded by the factory."""

    image_size = 32

    @pytest.fixture(autouse=True)
    def _checkpoint(self, checkpoint_dir):
        self.directory = checkpoint_dir

    def make_tokenizer(self):
        return build_vtp({"pretrained": str(self.directory)})


# ---- agreement with the official methods -------------------------------------------------------
def test_encode_is_the_official_latent_of_imagenet_normalised_images(tokenizer):
    model = micro_model(seed=0)
    images = smooth_images()
    with torch.no_grad():
        expected = model.get_reconstruction_latents(imagenet_normalize(images))
    latents = tokenizer.encode(images)
    assert latents.shape == (2, 8, 4, 4) and latents.dtype == torch.float32
    torch.testing.assert_close(latents, expected, atol=1e-6, rtol=0)
    assert tokenizer.encode(images).std() > 0  # not a constant


def test_decode_is_the_official_decoder_denormalised_and_clamped(tokenizer):
    model = micro_model(seed=0)
    with torch.no_grad():  # a louder output layer pushes pixels out of [0, 1] (the decoder ends in LayerNorm + conv)
        for decoder in (model.pixel_decoder, tokenizer.model.pixel_decoder):
            decoder.proj_out.weight.mul_(50)
    latents = tokenizer.encode(smooth_images())
    with torch.no_grad():
        raw = imagenet_denormalize(model.get_latents_decoded_images(latents))
    images = tokenizer.decode(latents)
    assert raw.min() < 0 or raw.max() > 1, "the test needs out-of-range pixels to check the clamp"
    torch.testing.assert_close(images, raw.clamp(0, 1), atol=1e-6, rtol=0)
    assert images.shape == (2, 3, 32, 32) and 0 <= float(images.min()) and float(images.max()) <= 1


def test_latent_spec_and_resolution(tokenizer):
    spec = tokenizer.latent_spec(32)
    assert (spec.channels, spec.height, spec.width, spec.downsample, spec.discrete) == (8, 4, 4, 8, False)
    assert tokenizer.latent_spec(64).shape == (8, 8, 8)
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        tokenizer.latent_spec(36)
    assert tokenizer.native_resolution == 256  # the config written by save_official (the released value)
    assert tokenizer.encode(smooth_images(size=48)).shape == (2, 8, 6, 6)  # any multiple of the patch


# ---- image features ------------------------------------------------------------------------
def test_default_features_names_shapes_and_values(tokenizer):
    model = micro_model(seed=0)
    images = smooth_images()
    x = imagenet_normalize(images)
    features = tokenizer.image_features(images)
    assert {name: tuple(v.shape) for name, v in features.items()} == {
        "cls": (2, 64), "patch_mean": (2, 64), "latent_mean": (2, 8), "clip": (2, 32)
    }
    with torch.no_grad():
        last = model.get_last_layer_feature(x)
        latents = model.get_reconstruction_latents(x)
        clip = model.get_clip_image_feature(x)
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features["cls"], last["cls_token"], **close)
    torch.testing.assert_close(features["patch_mean"], last["patch_tokens"].mean(dim=1), **close)
    torch.testing.assert_close(features["latent_mean"], latents.mean(dim=(2, 3)), **close)
    torch.testing.assert_close(features["clip"], clip, **close)
    torch.testing.assert_close(features["clip"].norm(dim=-1), torch.ones(2))


def test_block_features_match_the_official_intermediate_layers(tokenizer):
    model = micro_model(seed=0)
    images = smooth_images()
    names = ["block-1.cls", "block-1.patch_mean", "block-2.cls", "block-2.patch_mean", "cls", "patch_mean"]
    features = tokenizer.image_features(images, layers=names)
    assert list(features) == names  # only what was asked, in that order
    with torch.no_grad():
        (second_last, last) = model.get_intermediate_layers_feature(imagenet_normalize(images), n=2, return_class_token=True)
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features["block-2.cls"], second_last[1], **close)
    torch.testing.assert_close(features["block-2.patch_mean"], second_last[0].mean(dim=1), **close)
    torch.testing.assert_close(features["block-1.cls"], last[1], **close)
    assert torch.equal(features["block-1.cls"], features["cls"])
    assert torch.equal(features["block-1.patch_mean"], features["patch_mean"])
    assert not torch.allclose(features["block-2.cls"], features["cls"])


def test_only_requested_features_are_computed(tokenizer, monkeypatch):
    calls = []
    original = tokenizer.model.trunk.intermediate
    monkeypatch.setattr(tokenizer.model.trunk, "intermediate", lambda x, blocks: calls.append(blocks) or original(x, blocks))
    features = tokenizer.image_features(smooth_images(), layers=["block-2.cls"])
    assert list(features) == ["block-2.cls"] and calls == [[0]]  # stops after the first block
    tokenizer.image_features(smooth_images(), layers=["latent_mean", "block-2.patch_mean"])
    assert calls[-1] == [0, 1]  # one pass for both


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (["block-3.cls"], r"k = 1\.\.2 \(this trunk has 2 blocks\)"),
        (["patchmean"], "did you mean 'patch_mean'"),
        ([], "at least one layer"),
    ],
)
def test_bad_feature_names_are_explained(tokenizer, layers, message):
    with pytest.raises(ValueError, match=message):
        tokenizer.image_features(smooth_images(), layers=layers)


def test_feature_names_list_the_probing_blocks(tokenizer):
    names = tokenizer.feature_names()
    assert names[:4] == ["cls", "patch_mean", "latent_mean", "clip"]
    assert "block-2.patch_mean" in names and "block-3.cls" not in names


# ---- text -----------------------------------------------------------------------------------
def test_tokenize_shape_and_end_of_text(tokenizer):
    tokens = tokenizer.tokenize(["a red circle", "word " * 200])
    assert tokens.shape == (2, 77) and tokens.dtype == torch.long
    short, long = tokens
    assert short[0] == SOT_TOKEN and int(short.argmax()) == 4 and short[4] == EOT_TOKEN and not short[5:].any()
    assert long[-1] == EOT_TOKEN and int(long.argmax()) == 76  # truncated, EOT kept last
    assert tokenizer.tokenize([]).shape == (0, 77)
    with pytest.raises(TypeError, match="strings"):
        tokenizer.tokenize([3])


def test_text_features_are_the_official_normalised_embeddings(tokenizer):
    model = micro_model(seed=0)
    tokens = tokenizer.tokenize(["a red circle", "a blue star", "a green square"])
    features = tokenizer.text_features(tokens)
    assert features.shape == (3, 32)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(3))
    with torch.no_grad():
        torch.testing.assert_close(features, model.get_clip_text_feature(tokens), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(features[0], features[1])
    assert tokenizer.logit_scale == pytest.approx(float(model.logit_scale.detach().exp()))


def test_missing_open_clip_is_explained(monkeypatch):
    from tokbench_vtp import text_tokenizer

    text_tokenizer._bpe.cache_clear()
    monkeypatch.setitem(sys.modules, "open_clip", None)  # makes `import open_clip` fail
    try:
        with pytest.raises(ImportError, match="pip install open_clip_torch") as error:
            text_tokenizer.tokenize(["a cat"])
        assert isinstance(error.value, MissingAssetError)
    finally:
        text_tokenizer._bpe.cache_clear()


# ---- components, precision, compile, stats ----------------------------------------------------
def test_components_set_capabilities(checkpoint_dir):
    trunk_only = build_vtp({"pretrained": str(checkpoint_dir), "components": []})
    assert trunk_only.capabilities == {Capability.ENCODE, Capability.IMAGE_FEATURES}
    assert trunk_only.model.pixel_decoder is None and not trunk_only.arch.with_text
    assert list(trunk_only.image_features(smooth_images())) == ["cls", "patch_mean", "latent_mean"]
    with pytest.raises(CapabilityError, match="'decoder'"):
        trunk_only.decode(torch.zeros(1, 8, 4, 4))
    with pytest.raises(CapabilityError, match="'text'"):
        trunk_only.tokenize(["a cat"])
    with pytest.raises(CapabilityError, match="'text'"):
        trunk_only.image_features(smooth_images(), layers=["clip"])
    full = build_vtp({"pretrained": str(checkpoint_dir)})
    assert torch.equal(trunk_only.encode(smooth_images()), full.encode(smooth_images()))
    assert trunk_only.fingerprint() != full.fingerprint()
    decoder_only = build_vtp({"pretrained": str(checkpoint_dir), "components": ["decoder"]})
    assert Capability.DECODE in decoder_only.capabilities and Capability.TEXT not in decoder_only.capabilities


def test_fingerprint_covers_precision_and_survives_dtype_round_trips(checkpoint_dir):
    fp32 = build_vtp({"pretrained": str(checkpoint_dir)})
    bf16 = build_vtp({"pretrained": str(checkpoint_dir), "precision": "bf16"})
    assert fp32.fingerprint() != bf16.fingerprint()
    before = fp32.fingerprint()
    fp32.to(dtype=torch.float64).to(dtype=torch.float32)
    assert fp32.model.trunk.rope_embed.periods.dtype == torch.bfloat16
    assert fp32.fingerprint() == before
    # bf16 autocast applies on CUDA only: on the CPU the outputs are the fp32 ones
    assert torch.equal(bf16.encode(smooth_images()), build_vtp({"pretrained": str(checkpoint_dir)}).encode(smooth_images()))


def test_compile_routes_the_trunk_through_torch_compile(checkpoint_dir, monkeypatch):
    compiled = []

    def fake_compile(function):
        compiled.append(function.__name__)
        return function

    monkeypatch.setattr(torch, "compile", fake_compile)
    plain = build_vtp({"pretrained": str(checkpoint_dir)})
    plain.encode(smooth_images())
    assert compiled == []
    tokenizer = build_vtp({"pretrained": str(checkpoint_dir), "compile": True})
    images = smooth_images()
    assert torch.equal(tokenizer.encode(images), plain.encode(images))
    tokenizer.encode(images)
    tokenizer.image_features(images)
    assert compiled == ["latents", "intermediate"]  # each compiled once


def test_latent_normalization_from_official_stats(checkpoint_dir, tmp_path):
    assert build_vtp({"pretrained": str(checkpoint_dir)}).latent_normalization() is None
    mean, std = torch.linspace(-0.3, 0.3, 8).view(1, 8, 1, 1), torch.linspace(0.1, 0.2, 8).view(1, 8, 1, 1)
    torch.save({"mean": mean, "std": std}, tmp_path / "latents_stats.pt")
    tokenizer = build_vtp({"pretrained": str(checkpoint_dir), "latent_stats": str(tmp_path / "latents_stats.pt")})
    got_mean, got_std = tokenizer.latent_normalization()
    assert torch.equal(got_mean, mean) and torch.equal(got_std, std)
    plain = build_vtp({"pretrained": str(checkpoint_dir)})
    assert tokenizer.fingerprint() != plain.fingerprint()  # generation standardises with the stats
    torch.save({"mean": torch.zeros(1, 64, 1, 1), "std": torch.ones(1, 64, 1, 1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="has 64 values but this model's latent has 8 channels"):
        build_vtp({"pretrained": str(checkpoint_dir), "latent_stats": str(tmp_path / "other.pt")})
    torch.save({"avg": mean}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="`mean` and `std`"):
        build_vtp({"pretrained": str(checkpoint_dir), "latent_stats": str(tmp_path / "bad.pt")})


def test_describe_counts_parameters(tokenizer, checkpoint_dir):
    info = tokenizer.describe()
    counts = info["parameters"]
    assert info["source"] == str(checkpoint_dir) and info["architecture"]["vision_width"] == 64
    assert counts["total"] == sum(p.numel() for p in tokenizer.model.parameters())
    assert counts["total"] == counts["trunk"] + counts["pixel_decoder"] + counts["text_and_clip"]
    assert counts == MICRO.parameter_count()


# ---- loading ---------------------------------------------------------------------------------
def test_build_from_file_directory_and_model_are_identical(checkpoint_dir):
    by_dir = build_vtp({"pretrained": str(checkpoint_dir)})
    by_file = build_vtp(VTPParams(pretrained=str(checkpoint_dir / "model.safetensors")))
    in_memory = VTPTokenizer(micro_model(seed=0))
    assert isinstance(by_dir, VTPTokenizer)
    assert by_dir.fingerprint() == by_file.fingerprint() == in_memory.fingerprint()
    images = smooth_images()
    assert torch.equal(by_dir.encode(images), in_memory.encode(images))
    context = types.SimpleNamespace(device="cpu")
    assert build_vtp({"pretrained": str(checkpoint_dir)}, context).device.type == "cpu"


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(MissingAssetError, match="huggingface-cli download"):
        build_vtp({"pretrained": str(tmp_path / "nowhere")})
    with pytest.raises(MissingAssetError) as error:
        build_vtp({"pretrained": "small"})  # the hub is offline in these tests and the cache is empty
    assert "MiniMaxAI/VTP-Small-f16d64" in str(error.value) and "--local-dir" in str(error.value)


def test_recipe_uses_the_trained_checkpoint(monkeypatch, tmp_path):
    """The recipe path asks ``pretrain.run.trained_checkpoint`` for the weights (stubbed: no training)."""
    calls = []

    def trained_checkpoint(recipe, context):
        calls.append((recipe, context))
        directory = tmp_path / "trained"
        save_official(micro_model(seed=3, arch=recipe.arch), directory)
        return directory

    fake = types.ModuleType("tokbench_vtp.pretrain.run")
    fake.trained_checkpoint = trained_checkpoint
    monkeypatch.setitem(sys.modules, "tokbench_vtp.pretrain.run", fake)
    overrides = {"architecture": MICRO.model_dump(mode="json"), "steps": 5}
    params = VTPParams(recipe="tiny", recipe_overrides=overrides, components=["decoder"])
    assert params.needs_preparation()
    context = types.SimpleNamespace(device="cpu")
    tokenizer = build_vtp(params.model_dump(), context)
    (recipe, given_context), = calls
    assert recipe == params.recipe_config() and recipe.steps == 5 and given_context is context
    assert tokenizer.native_resolution == 64  # the recipe's crops.image_size
    assert tokenizer.source == "recipe:tiny"
    assert Capability.TEXT not in tokenizer.capabilities  # components still apply
    images = smooth_images(size=64)
    with torch.no_grad():
        expected = micro_model(seed=3).get_reconstruction_latents(imagenet_normalize(images))
    torch.testing.assert_close(tokenizer.encode(images), expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="needs a build context"):
        build_vtp(params)
    assert len(calls) == 1


# ---- registration --------------------------------------------------------------------------
def test_registry_lists_vtp_with_its_capabilities():
    from tokbench.registry.plugins import build_registry, resolve

    registry = build_registry()
    plugin = next(info for info in registry.plugins if info.name == "vtp")
    assert plugin.error is None and "tokenizer:vtp" in plugin.registered
    entry = registry.tokenizers["vtp"]
    assert entry.capabilities == {Capability.ENCODE, Capability.DECODE, Capability.IMAGE_FEATURES, Capability.TEXT}
    assert resolve(entry.factory) is build_vtp and resolve(entry.params) is VTPParams
    assert "VTP" in entry.description


def test_zero_shot_classifier_equals_open_clips_builder_on_the_official_text_path(tokenizer):
    """tokbench's classifier over the Tokenizer API == open_clip.build_zero_shot_classifier
    driving the official ``get_clip_text_feature`` through an ``encode_text`` facade."""
    from open_clip import build_zero_shot_classifier

    from tokbench.data.imagenet import imagenet_classnames
    from tokbench.understanding.prompts import template_set
    from tokbench.understanding.zero_shot import build_classifier
    from tokbench_vtp.text_tokenizer import tokenize

    class Facade(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def encode_text(self, text, normalize=False):
            return self.model.get_clip_text_feature(text, normalize=normalize)

    classnames, templates = list(imagenet_classnames()[:12]), template_set("openai")
    ours = build_classifier(tokenizer, classnames, templates, classes_per_batch=5)
    theirs = build_zero_shot_classifier(
        Facade(tokenizer.model), lambda texts: tokenize(texts, MICRO.text_context_length), classnames, templates,
        num_classes_per_batch=10,
    )
    assert ours.shape == (MICRO.clip_dim, 12)
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=1e-6)
