"""DINOHead structure, weight-normalised prototypes and first-epoch gradient cancelling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tokbench_vtp.pretrain.heads import DINOHead, cancel_last_layer_gradients




def test_structure_and_init() -> None:
    torch.manual_seed(0)
    head = DINOHead(in_dim=64, out_dim=16, nlayers=3, hidden_dim=256, bottleneck_dim=8)
    kinds = [type(m) for m in head.mlp]
    assert kinds == [nn.Linear, nn.GELU, nn.Linear, nn.GELU, nn.Linear]
    shapes = [tuple(m.weight.shape) for m in head.mlp if isinstance(m, nn.Linear)]
    assert shapes == [(256, 64), (256, 256), (8, 256)]
    for m in head.mlp:
        if isinstance(m, nn.Linear):
            assert torch.count_nonzero(m.bias) == 0
    assert head.mlp[2].weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert [type(m) for m in DINOHead(4, 5, nlayers=1, bottleneck_dim=3).mlp] == [nn.Linear]
    keys = set(head.state_dict())
    assert {"last_layer.parametrizations.weight.original0", "last_layer.parametrizations.weight.original1"} <= keys
    assert head.last_layer.bias is None


def test_output_is_cosine_similarity_to_prototypes() -> None:
    torch.manual_seed(0)
    head = DINOHead(in_dim=6, out_dim=10, hidden_dim=12, bottleneck_dim=4)
    assert torch.allclose(head.last_layer.parametrizations.weight.original0, torch.ones(10, 1))
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(10), atol=1e-6)
    x = torch.randn(2, 3, 6)
    out = head(x)
    assert out.shape == (2, 3, 10)
    z = nn.functional.normalize(head.mlp(x), dim=-1)
    v = nn.functional.normalize(head.last_layer.parametrizations.weight.original1, dim=-1)
    assert torch.allclose(out, z @ v.T, atol=1e-6)
    assert out.abs().max() <= 1.0 + 1e-6


def test_cancel_last_layer_gradients_and_frozen_magnitude() -> None:
    head = DINOHead(in_dim=6, out_dim=10, hidden_dim=12, bottleneck_dim=4)
    head(torch.randn(5, 6)).pow(2).sum().backward()
    assert all(p.grad is not None for p in head.last_layer.parameters())
    cancel_last_layer_gradients(head)
    assert all(p.grad is None for p in head.last_layer.parameters())
    assert all(p.grad is not None for p in head.mlp.parameters())
    frozen = DINOHead(in_dim=6, out_dim=10, hidden_dim=12, bottleneck_dim=4, freeze_magnitude=True)
    assert not frozen.last_layer.parametrizations.weight.original0.requires_grad
    assert frozen.last_layer.parametrizations.weight.original1.requires_grad
    with pytest.raises(ValueError, match="nlayers"):
        DINOHead(in_dim=6, nlayers=0)
