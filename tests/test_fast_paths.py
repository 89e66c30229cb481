"""The performance settings change speed and memory, never the numbers or the result keys."""

from __future__ import annotations

import pytest
import torch

from test_generation_train import trainer


def _weights(run) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in run.model.parameters()])


def test_dit_activation_checkpointing_takes_the_same_steps():
    plain, recomputed = trainer(steps=3), trainer(steps=3, activation_checkpointing=True)
    assert recomputed.model.gradient_checkpointing and not plain.model.gradient_checkpointing
    losses = [(plain.train_step()["loss"], recomputed.train_step()["loss"]) for _ in range(3)]
    assert all(a == pytest.approx(b, rel=1e-6) for a, b in losses)
    assert torch.allclose(_weights(plain), _weights(recomputed), atol=1e-6)


def test_dit_compile_routes_training_through_torch_compile(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    trainer(steps=1)
    assert compiled == []
    run = trainer(steps=1, compile=True)
    assert compiled == [run.model]
    run.train_step()


def test_vtp_trunk_activation_checkpointing_gives_the_same_gradients():
    from tokbench_vtp.model.config import preset
    from tokbench_vtp.model.trunk import VisionTrunk

    torch.manual_seed(0)
    trunk = VisionTrunk(preset("tiny")).train()
    images = torch.rand(2, 3, 32, 32)
    grads = []
    for recompute in (False, True):
        trunk.zero_grad()
        trunk.activation_checkpointing = recompute
        torch.manual_seed(1)  # the same drop-path draws
        out = trunk.features(images, drop_rate=0.1)
        (out.cls.square().sum() + out.patches.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in trunk.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_execution_settings_stay_out_of_the_result_key_and_precision_does_not():
    from tokbench.tasks.generation import GenerationTask
    from tokbench.tasks.generation_params import GenerationParams

    def key(**params):
        return GenerationTask(GenerationParams(steps=10, **params)).key_params()

    assert key() == key(compile=True, activation_checkpointing=True, fused_optimizer=False)
    assert key() != key(precision="fp32")


def test_tf32_policy_sets_both_backends_on_gpu_devices_only():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    from tokbench.storage.provenance import apply_tf32_policy

    try:
        apply_tf32_policy("cuda:0", True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        apply_tf32_policy("cpu", False)  # nothing to change on a CPU run
        assert torch.backends.cuda.matmul.allow_tf32
        apply_tf32_policy("cuda", False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
