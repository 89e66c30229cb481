"""Frozen features are extracted once into the store, resume shard by shard, and are
keyed by everything that changes them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokbench.api import Capability, LatentSpec, Tokenizer
from tokbench.data.shapes import ShapesDataset
from tokbench.runtime.context import BuildContext
from tokbench.storage.store import Store
from tokbench.understanding.features import FeatureRequest, extract_features


class CountingTokenizer(Tokenizer):
    """A fixed random projection with a call counter; 'feat' and a 2x2-pooled 4-channel latent."""

    capabilities = frozenset({Capability.ENCODE, Capability.DECODE, Capability.IMAGE_FEATURES})
    native_resolution = 16

    def __init__(self):
        self.projection = torch.nn.Conv2d(3, 4, kernel_size=4, stride=4)
        torch.nn.init.normal_(self.projection.weight, generator=torch.Generator().manual_seed(0))
        self.calls = 0

    def latent_spec(self, image_size):
        return LatentSpec(4, image_size // 4, image_size // 4, 4)

    def encode(self, images):
        self.calls += 1
        return self.projection(images)

    def decode(self, latents):
        raise NotImplementedError

    def image_features(self, images, layers=None):
        self.calls += 1
        latent = self.projection(images)
        return {"feat": latent.mean(dim=(2, 3)), "other": latent.amax(dim=(2, 3))}

    def fingerprint(self):
        return "counting-tokenizer-v1"

    def modules(self):
        return [self.projection]


@pytest.fixture
def context(tmp_path):
    return BuildContext(store=Store(tmp_path / "store"), progress=False)


def test_second_extraction_reads_the_store(context):
    tokenizer, data = CountingTokenizer(), ShapesDataset(num_images=20, resolution=16)
    request = FeatureRequest(("feat",))
    first = extract_features(context, tokenizer, tokenizer.fingerprint(), data, request, batch_size=8, shard_size=8)
    calls = tokenizer.calls
    second = extract_features(context, tokenizer, tokenizer.fingerprint(), data, request, batch_size=8, shard_size=8)
    assert first.extracted_now and not second.extracted_now
    assert tokenizer.calls == calls == 3  # 20 images in batches of 8, once
    np.testing.assert_array_equal(first.features["feat"], second.features["feat"])
    np.testing.assert_array_equal(second.labels, data.labels())
    np.testing.assert_array_equal(second.indices, np.arange(20))
    with torch.no_grad():
        images = torch.from_numpy(np.stack([data.image(i) for i in range(20)])).permute(0, 3, 1, 2).float() / 255
        expected = tokenizer.image_features(images)["feat"].numpy()
    np.testing.assert_allclose(second.features["feat"], expected, rtol=2e-3, atol=2e-3)  # stored as float16


def test_interrupted_extraction_resumes_at_the_missing_shard(context, monkeypatch):
    from tokbench.understanding import features as module

    tokenizer, data = CountingTokenizer(), ShapesDataset(num_images=24, resolution=16)
    request = FeatureRequest(("feat",))
    real = module._extract_shard
    done = []

    def dies_on_third(build, tok, dataset, req, ids, batch_size, out):
        if len(done) == 2:
            raise KeyboardInterrupt("killed")
        done.append(ids[0])
        return real(build, tok, dataset, req, ids, batch_size, out)

    monkeypatch.setattr(module, "_extract_shard", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        extract_features(context, tokenizer, "fp", data, request, batch_size=8, shard_size=8)
    monkeypatch.setattr(module, "_extract_shard", real)
    tokenizer.calls = 0
    table = extract_features(context, tokenizer, "fp", data, request, batch_size=8, shard_size=8)
    assert tokenizer.calls == 1  # only the third shard
    assert table.features["feat"].shape == (24, 4)


def test_keys_cover_what_changes_the_features(context):
    tokenizer, data = CountingTokenizer(), ShapesDataset(num_images=8, resolution=16)
    fp = tokenizer.fingerprint()
    keys = {
        extract_features(context, tokenizer, fp, data, FeatureRequest(("feat",)), shard_size=8).key,
        extract_features(context, tokenizer, "other-weights", data, FeatureRequest(("feat",)), shard_size=8).key,
        extract_features(context, tokenizer, fp, data.view("center-0.875", 16), FeatureRequest(("feat",)), shard_size=8).key,
        extract_features(context, tokenizer, fp, data, FeatureRequest(("feat", "other")), shard_size=8).key,
        extract_features(context, tokenizer, fp, data, FeatureRequest(("feat",), precision="bf16"), shard_size=8).key,
        extract_features(context, tokenizer, fp, data, FeatureRequest(("feat",), augmentation="hflip"), shard_size=8).key,
        extract_features(context, tokenizer, fp, data, FeatureRequest(("latent",), latent_pool=1), shard_size=8).key,
        extract_features(context, tokenizer, fp, data, FeatureRequest(("latent",), latent_pool=2), shard_size=8).key,
    }
    assert len(keys) == 8


def test_latent_pooling_and_flip_views(context):
    tokenizer, data = CountingTokenizer(), ShapesDataset(num_images=6, resolution=16)
    table = extract_features(context, tokenizer, "fp", data, FeatureRequest(("latent",), latent_pool=2, augmentation="hflip"))
    assert table.features["latent"].shape == (12, 16)  # 2 views x 6 images, 4 channels x 2 x 2
    np.testing.assert_array_equal(table.indices, np.tile(np.arange(6), 2))
    images = torch.from_numpy(np.stack([data.image(i) for i in range(6)])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        flipped = torch.nn.functional.adaptive_avg_pool2d(tokenizer.encode(images.flip(-1)), 2).flatten(1).numpy()
    np.testing.assert_allclose(table.features["latent"][6:], flipped, rtol=2e-3, atol=2e-3)


def test_matrix_concatenates_named_columns(context):
    tokenizer, data = CountingTokenizer(), ShapesDataset(num_images=4, resolution=16)
    table = extract_features(context, tokenizer, "fp", data, FeatureRequest(("feat", "other")))
    matrix, columns = table.matrix(["other", "feat"])
    np.testing.assert_array_equal(matrix[:, columns["feat"]], table.features["feat"])
    np.testing.assert_array_equal(columns["other"], np.arange(4))


@pytest.mark.parametrize("bad", [dict(names=()), dict(names=("latent", "feat")), dict(names=("latent",), latent_pool=0)])
def test_bad_requests(bad):
    with pytest.raises(ValueError):
        FeatureRequest(**bad)
