"""CosineSchedule: DINOv2's precomputed array, reproduced as a pure function of the step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tokbench.training.schedules import CosineSchedule


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _dinov2_array(base, final, total, warmup=0, start=0.0, freeze=0) -> np.ndarray:
    """Independent re-computation of DINOv2's CosineScheduler array (numpy linspace + cosine)."""
    freeze_part = np.zeros(freeze)
    warmup_part = np.linspace(start, base, warmup)
    iters = np.arange(total - warmup - freeze)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((freeze_part, warmup_part, cosine))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(base=2e-4, final=2e-5, total=20, warmup=5),
        dict(base=0.04, final=0.4, total=12, warmup=0),  # increasing (weight decay style)
        dict(base=1.0, final=0.0, total=15, warmup=4, start=0.1, freeze=3),
        dict(base=0.996, final=1.0, total=7, warmup=1),
    ],
)
def test_matches_dinov2_array(kwargs) -> None:
    expected = _dinov2_array(**kwargs)
    schedule = CosineSchedule(
        kwargs["base"], kwargs["final"], kwargs["total"], warmup_steps=kwargs.get("warmup", 0),
        start_warmup_value=kwargs.get("start", 0.0), freeze_steps=kwargs.get("freeze", 0),
    )
    got = np.array([schedule(step) for step in range(kwargs["total"])])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert schedule(kwargs["total"]) == kwargs["final"]
    assert schedule(kwargs["total"] + 1000) == kwargs["final"]


def test_hand_computed_points() -> None:
    schedule = CosineSchedule(
        base=1.0, final=0.0, total_steps=10, warmup_steps=3, start_warmup_value=0.2, freeze_steps=2
    )
    assert schedule(0) == 0.0 and schedule(1) == 0.0  # frozen
    assert schedule(2) == pytest.approx(0.2)  # warm-up start
    assert schedule(3) == pytest.approx(0.6)
    assert schedule(4) == pytest.approx(1.0)  # warm-up ends at base (linspace is inclusive)
    assert schedule(5) == pytest.approx(1.0)  # cosine starts at base; 5 cosine steps: 5..9
    assert schedule(7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 5)))
    assert schedule(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 5)))
    assert schedule(10) == 0.0


def test_pure_function_of_step() -> None:
    schedule = CosineSchedule(base=1.0, final=0.1, total_steps=50, warmup_steps=5)
    forward = [schedule(step) for step in range(60)]
    backward = [schedule(step) for step in reversed(range(60))][::-1]
    assert forward == backward


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(base=1.0, final=0.0, total_steps=5, warmup_steps=4, freeze_steps=2), "exceed"),
        (dict(base=1.0, final=0.0, total_steps=-1), "total_steps"),
        (dict(base=1.0, final=0.0, total_steps=10, warmup_steps=2.5), "warmup_steps"),
    ],
)
def test_invalid_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        CosineSchedule(**kwargs)


def test_negative_step() -> None:
    with pytest.raises(ValueError, match="step"):
        CosineSchedule(1.0, 0.0, 10)(-1)
