"""The generation task end to end on CPU-sized pieces: two tokenizers with different latents get
generators with the same token count and the same training FLOPs, samples are stored in the ADM
layout and scored with the real FID Inception; a rerun recomputes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import requires_fid_weights
from tokbench.data.shapes import ShapesDataset
from tokbench.errors import TokbenchError
from tokbench.runtime.context import BuildContext
from tokbench.storage.store import Store
from tokbench.tasks.base import TaskContext
from tokbench.tasks.generation import GenerationTask
from tokbench.tasks.generation_params import GenerationParams
from tokbench.tokenizers.resample import ResampleParams, build_resample

pytestmark = [requires_fid_weights, pytest.mark.slow]

PARAMS = dict(model="micro", target_tokens=16, training_flops=2.0e10, batch_size=16, lr=1e-3, ema_decay=0.9,
              sample_steps=4, num_samples=24, sample_batch_size=12, shard_size=64, extract_batch_size=32)


def run(store_root, factor, **overrides):
    build = BuildContext(store=Store(store_root), progress=False)
    tokenizer = build_resample(ResampleParams(factor=factor), build)
    context = TaskContext(build=build, tokenizer=tokenizer, tokenizer_name=f"f{factor}",
                          tokenizer_fingerprint=tokenizer.fingerprint(), dataset=ShapesDataset(num_images=24, resolution=16),
                          dataset_name="val", unit_key="k", train_dataset=ShapesDataset(split="train", num_images=48, resolution=16),
                          train_dataset_name="train")
    return GenerationTask(GenerationParams(**{**PARAMS, **overrides})).run(context), build.store


def test_equal_flops_generation_for_two_latent_shapes(tmp_path):
    f4, store = run(tmp_path / "store", 4)  # 3 x 4 x 4 latents: patch 1 -> 16 tokens
    f2, _ = run(tmp_path / "store", 2)  # 3 x 8 x 8 latents: patch 2 -> 16 tokens
    assert f4.details["generator"]["patch_size"] == 1 and f2.details["generator"]["patch_size"] == 2
    assert f4.details["tokens"] == f2.details["tokens"] == 16
    # p = 2 projects 4x the channels in and out, so its steps are fewer; the compute is the same
    assert f4.details["steps"] > f2.details["steps"] > 50
    flops = f4.details["generator_training_flops"], f2.details["generator_training_flops"]
    assert abs(flops[0] - flops[1]) / max(flops) < 0.01
    for output in (f4, f2):
        assert output.metrics["gfid"] > 0 and 0 <= output.metrics["precision"] <= 1 and 0 <= output.metrics["recall"] <= 1
        assert output.metrics["inception_score"] is None and "logits" in output.unavailable["inception_score"]
        assert output.details["noise"]["lightningdit"]["timestep_shift"] > 0
        assert output.details["sampling"]["cfg_channels"] == "all"
    for output in (f4, f2):  # counted: 4 Euler steps, no guidance; resample decodes by interpolation (0 FLOPs)
        sampling = output.details["sampling"]
        assert sampling["nfe"] == sampling["nfe_max"] == 4 and sampling["nfe_unconditional"] == 0
        assert output.details["sampling_flops_per_image"] == 4 * output.details["forward_flops"]
        assert output.details["decode_flops_per_image"] == 0 and output.details["tokenizer_cost"]["resolution"] == 16
        assert output.metrics["total_gflops_per_image"] == pytest.approx(output.details["sampling_flops_per_image"] / 1e9)
        assert output.metrics["nfe"] == 4
        # the nearest whole step: within half a step of the budget
        per_step = 3 * output.details["forward_flops"] * 16
        assert abs(output.details["generator_training_flops"] - 2.0e10) <= per_step / 2
        assert output.metrics["training_budget_used"] == pytest.approx(output.details["generator_training_flops"] / 2.0e10)
        assert "footnote" not in output.details
    assert f4.evaluator == f2.evaluator  # one column: the same protocol, Inception and reference
    samples = np.load(store.path(f4.artifacts[2]) / "samples.npz")
    assert samples["arr_0"].shape == (24, 16, 16, 3) and samples["arr_0"].dtype == np.uint8
    assert np.bincount(samples["labels"], minlength=12).tolist() == [2] * 12  # class-balanced

    commits = len(store.commits())
    again, _ = run(tmp_path / "store", 4)
    assert len(store.commits()) == commits  # latents, generator, samples and references all reused
    assert again.metrics == f4.metrics
    assert again.details["sampling"] == f4.details["sampling"]  # the counted NFE comes back with the cached samples


@pytest.mark.parametrize("overrides, message", [
    (dict(target_tokens=9), "'f2' has a 3x8x8 latent grid, which gives no patch size with exactly target_tokens=9 tokens; "
                            "possible: 64 (patch 1), 16 (patch 2), 4 (patch 4), 1 (patch 8)"),
    (dict(batch_size=64), "has 48 images, fewer than batch_size 64"),
])
def test_inexact_tokens_or_a_too_large_batch_fail_before_any_work(tmp_path, overrides, message):
    with pytest.raises(TokbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(tmp_path / "store", 2, **overrides)
    assert not Store(tmp_path / "store").commits()  # nothing extracted, nothing trained


def test_params_need_a_budget_or_steps():
    with pytest.raises(ValueError, match="exactly one of training_flops"):
        GenerationParams()
    with pytest.raises(ValueError, match="exactly one of training_flops"):
        GenerationParams(steps=10, training_flops=1e12)
    assert GenerationParams(steps=10).sample_steps == 249


class _MeanColourExtractor:
    """Stands in for the FID Inception: per-image mean colour, enough to check the npz handling."""

    def __call__(self, images):
        return images.float().mean(dim=(2, 3))


def _reference_batch_task(path, **overrides):
    return GenerationTask(GenerationParams(steps=1, reference_batch=str(path), **overrides))


def test_adm_reference_batch_statistics_and_images(tmp_path):
    import torch

    images = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    mu, sigma = np.arange(3.0), np.eye(3) * 2
    np.savez(tmp_path / "ref.npz", arr_0=images, mu=mu, sigma=sigma)
    context = TaskContext(build=BuildContext(store=Store(tmp_path / "s"), progress=False), tokenizer=None, tokenizer_name="t",
                          tokenizer_fingerprint="f", dataset=None, dataset_name="val", unit_key="k")
    features, stats, name = _reference_batch_task(tmp_path / "ref.npz")._reference_batch(context, _MeanColourExtractor())
    expected = torch.from_numpy(images).permute(0, 3, 1, 2).float().mean(dim=(2, 3)).numpy()
    assert np.allclose(features, expected) and stats[0] is not None and np.array_equal(stats[0], mu) and np.array_equal(stats[1], sigma)
    assert name == "ref.npz (ADM reference batch)"
    # without mu/sigma the statistics come from its images; num_reference takes the first N
    np.savez(tmp_path / "images_only.npz", arr_0=images)
    features, stats, _ = _reference_batch_task(tmp_path / "images_only.npz", num_reference=4)._reference_batch(context, _MeanColourExtractor())
    assert len(features) == 4 and np.allclose(stats[0], expected[:4].mean(axis=0))
    np.savez(tmp_path / "bad.npz", samples=images)
    with pytest.raises(Exception, match="has no `arr_0` images"):
        _reference_batch_task(tmp_path / "bad.npz")._reference_batch(context, _MeanColourExtractor())


def test_missing_reference_batch_says_where_to_get_it(tmp_path):
    from tokbench.errors import MissingAssetError

    with pytest.raises(MissingAssetError, match="VIRTUAL_imagenet256_labeled.npz"):
        GenerationParams(steps=1, reference_batch=str(tmp_path / "absent.npz"))
