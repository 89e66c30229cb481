"""FID reference features are extracted once per (images, Inception weights) and shared by every
task that scores against them, whatever the tasks' own shard sizes and batch sizes."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import requires_fid_weights
from tokbench.data.shapes import ShapesDataset
from tokbench.runtime.context import BuildContext
from tokbench.storage.store import Store
from tokbench.tasks.base import TaskContext
from tokbench.tasks.fid_reference import reference_features
from tokbench.tasks.reconstruction import ReconstructionTask
from tokbench.tasks.reconstruction_params import ReconstructionParams
from tokbench.tokenizers.resample import ResampleParams, build_resample

pytestmark = [requires_fid_weights, pytest.mark.slow]


def test_one_extraction_for_tasks_with_other_shard_and_batch_sizes(tmp_path):
    build = BuildContext(store=Store(tmp_path / "store"), progress=False)
    tokenizer = build_resample(ResampleParams(factor=4), build)
    context = TaskContext(build=build, tokenizer=tokenizer, tokenizer_name="f4", tokenizer_fingerprint=tokenizer.fingerprint(),
                          dataset=ShapesDataset(num_images=12, resolution=16), dataset_name="val", unit_key="k")
    first = ReconstructionTask(ReconstructionParams(metrics=["rfid"], shard_size=4, batch_size=4)).run(context)
    second = ReconstructionTask(ReconstructionParams(metrics=["rfid"], shard_size=8, batch_size=6)).run(context)
    references = [c for c in build.store.commits() if c["kind"] == "fid-reference-features"]
    assert len(references) == 1  # the second task found the first one's features
    assert first.artifacts[0] == second.artifacts[0] == references[0]["key"]
    assert first.metrics["rfid"] == pytest.approx(second.metrics["rfid"], rel=1e-9)
    # what generation asks for (its own batch size) is the same artifact and the same numbers
    extractor_task = ReconstructionTask(ReconstructionParams(metrics=["rfid"]))
    from tokbench.metrics.inception import load_fid_extractor

    extractor = load_fid_extractor(str(extractor_task.fid_weights()))
    features, key = reference_features(context, extractor, None, 64)
    assert key == references[0]["key"] and features.shape == (12, 2048) and features.dtype == np.float64
    assert len([c for c in build.store.commits() if c["kind"] == "fid-reference-features"]) == 1
