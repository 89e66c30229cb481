"""The shared training loop on a small regression: step order, checkpoints, exact resume, errors."""

from __future__ import annotations

import pytest
import torch

from tokbench.training.loop import CHECKPOINT, Checkpoints, Discriminator, TrainingLoop, TrainingStopped
from tokbench.training.tiny import ShuffledIndices


class Regression:
    """Least squares of a linear model on a fixed pool, with input noise from a generator (so a
    resume that lost the generator's state would train other weights)."""

    def __init__(self, model, generator, critic=None):
        self.model, self.generator, self.critic = model, generator, critic
        inputs = torch.Generator().manual_seed(1)
        self.x = torch.randn(24, 3, generator=inputs)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
        self.calls: list[str] = []

    def loss(self, step, index):
        self.calls.append("loss")
        x = self.x[index] + 0.1 * torch.randn(len(index), 3, generator=self.generator)
        error = self.model(x).squeeze(1) - self.y[index]
        return error.pow(2).mean(), {"l1": error.abs().mean().item()}

    def after_update(self, step):
        self.calls.append("after_update")

    def discriminator_loss(self, step):
        self.calls.append("discriminator_loss")
        return None if step < 2 else self.critic(self.x[:4]).pow(2).mean()


def build(checkpoints=None, identity="a", steps=10, lr=0.3):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    critic = torch.nn.Linear(3, 1)
    generator = torch.Generator().manual_seed(0)
    objective = Regression(model, generator, critic)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    critic_optimizer = torch.optim.SGD(critic.parameters(), lr=0.01)
    loop = TrainingLoop(model, optimizer, lambda step: lr * (1 - step / steps), steps,
                        ShuffledIndices(24, 5, generator), objective, max_grad_norm=1.0, ema_decay=0.9,
                        discriminator=Discriminator(critic, critic_optimizer, lambda step: 0.01),
                        generators=[generator], name="regression", checkpoints=checkpoints, identity=identity)
    return loop, objective


def weights(loop):
    return [p.detach().clone() for module in (loop.model, loop.ema, loop.discriminator.module) for p in module.parameters()]


def test_the_loop_learns_in_order_and_keeps_an_ema():
    loop, objective = build()
    history = loop.run()
    assert len(history) == 10 and history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert objective.calls[:3] == ["loss", "after_update", "discriminator_loss"]
    assert "d_loss" not in history[1] and "d_loss" in history[2]  # the critic steps from step 2 on
    assert not torch.equal(loop.ema.weight, loop.model.weight)  # an average, not a copy
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.3 * (1 - 9 / 10))


def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path):
    whole, _ = build()
    whole.run()
    stopped, _ = build(Checkpoints(tmp_path, every=3, stop_after=7))
    with pytest.raises(TrainingStopped, match="after step 7"):
        stopped.run()
    resumed, _ = build(Checkpoints(tmp_path, every=3))
    history = resumed.run()
    assert len(history) == 10 and history == whole.history
    for a, b in zip(weights(whole), weights(resumed)):
        assert torch.equal(a, b)


def test_checkpoints_are_written_every_n_steps_and_tied_to_their_settings(tmp_path):
    loop, _ = build(Checkpoints(tmp_path, every=4))
    saved = []
    loop.save = lambda: saved.append(loop.step)
    loop.run()
    assert saved == [4, 8]  # not after the last step: the run is done
    with pytest.raises(TrainingStopped):
        build(Checkpoints(tmp_path, stop_after=2))[0].run()
    assert (tmp_path / CHECKPOINT).is_file()
    with pytest.raises(ValueError, match="other settings"):
        build(Checkpoints(tmp_path), identity="b")[0].run()


def test_a_non_finite_loss_names_the_step():
    loop, _ = build(lr=1e30)
    loop.max_grad_norm = None
    with pytest.raises(FloatingPointError, match=r"regression: training diverged at step \d+"):
        loop.run()
