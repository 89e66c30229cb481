"""ema_update_: t = m t + (1 - m) s in place, outside autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tokbench.training.ema import ema_update_


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_update_matches_formula() -> None:
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    before = [p.detach().clone() for p in target.parameters()]
    ema_update_(target.parameters(), source.parameters(), momentum=0.9)
    for old, new, src in zip(before, target.parameters(), source.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * src, rtol=0, atol=1e-7)
        assert new.requires_grad and new.grad_fn is None  # still a leaf, no graph recorded


def test_hand_computed_values_and_extremes() -> None:
    target = [torch.tensor([1.0, 2.0]), torch.tensor([[4.0]])]
    source = [torch.tensor([3.0, 6.0]), torch.tensor([[0.0]])]
    ema_update_(target, source, momentum=0.75)
    assert target[0].tolist() == [1.5, 3.0] and target[1].item() == 3.0
    ema_update_(target, source, momentum=1.0)
    assert target[0].tolist() == [1.5, 3.0]
    ema_update_(target, source, momentum=0.0)
    assert target[0].tolist() == [3.0, 6.0] and target[1].item() == 0.0
    assert source[0].tolist() == [3.0, 6.0]  # the source is never written


def test_works_under_grad_mode_on_leaf_parameters() -> None:
    target = nn.Parameter(torch.ones(3))
    source = nn.Parameter(torch.zeros(3))
    with torch.enable_grad():
        ema_update_([target], [source], momentum=0.5)
    assert target.detach().tolist() == [0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    "target, source, momentum, match",
    [
        ([torch.zeros(2)], [torch.zeros(2), torch.zeros(2)], 0.5, "1 target tensors but 2"),
        ([torch.zeros(2)], [torch.zeros(3)], 0.5, "shape"),
        ([torch.zeros(2)], [torch.zeros(2)], 1.5, "momentum"),
    ],
)
def test_invalid_input(target, source, momentum, match) -> None:
    with pytest.raises(ValueError, match=match):
        ema_update_(target, source, momentum)
