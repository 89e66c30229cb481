"""Flow matching and samplers: the time convention, the loss, the noise-shift knob in both
codebases' terms, ODE solvers on problems with known solutions, and classifier-free guidance."""

from __future__ import annotations

import math

import pytest
import torch

from tokbench.generation.transport import (
    NoiseSchedule,
    default_noise_shift,
    flow_loss,
    guided,
    interpolate,
    sample_adaptive,
    sample_ode,
)


def test_path_goes_from_noise_at_0_to_data_at_1():
    x1, x0 = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    xt, u = interpolate(x1, x0, torch.tensor([0.0, 1.0, 0.25, 0.5]))
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[1], x1[1])
    torch.testing.assert_close(xt[2], 0.25 * x1[2] + 0.75 * x0[2])
    torch.testing.assert_close(u, x1 - x0)


def test_loss_is_mse_plus_channel_cosine():
    target = torch.randn(2, 4, 3, 3)
    perfect = flow_loss(target, target)
    assert float(perfect["loss"].abs().max()) < 1e-6
    opposite = flow_loss(-target, target)
    torch.testing.assert_close(opposite["cos"], torch.full((2,), 2.0))
    torch.testing.assert_close(opposite["mse"], (4 * target.pow(2)).mean(dim=(1, 2, 3)))
    assert "cos" not in flow_loss(target, target, cosine=False)


def test_noise_shift_knob_in_lightningdit_terms():
    vtp_l = NoiseSchedule(train_shift=0.75, train_sigma=1.0, sample_shift=math.log(1 / 0.075))
    assert vtp_l.lightningdit == pytest.approx({"lognorm_mu": -0.75, "lognorm_sigma": 1.0, "timestep_shift": 0.075})
    grid = vtp_l.grid(249)
    s, t = 0.075, torch.linspace(0, 1, 250, dtype=torch.float64)
    torch.testing.assert_close(grid, (s * t / (1 + (s - 1) * t)).float())  # LightningDiT's compute_tm
    assert grid[0] == 0 and grid[-1] == 1 and len(grid) == 250
    inner = grid[1:-1].double()  # a pure logit translation toward noise
    torch.testing.assert_close(torch.logit(inner), torch.logit(t[1:-1]) - math.log(1 / 0.075), rtol=0, atol=1e-5)
    assert default_noise_shift(32, 16, 16) == pytest.approx(math.log(math.sqrt(2)))  # RAE rule: alpha 1.41
    assert default_noise_shift(64, 16, 16) == pytest.approx(math.log(2))
    assert default_noise_shift(16, 16, 16) == 0


def test_training_times_are_logit_normal_around_minus_the_shift():
    times = NoiseSchedule(train_shift=0.75, train_sigma=1.0).sample_times(200_000, torch.Generator().manual_seed(0))
    logits = torch.logit(times.double())
    assert float(logits.mean()) == pytest.approx(-0.75, abs=0.01) and float(logits.std()) == pytest.approx(1.0, abs=0.01)
    uniform = NoiseSchedule(train_sigma=0).sample_times(100_000, torch.Generator().manual_seed(0))
    assert float(uniform.mean()) == pytest.approx(0.5, abs=0.01)


def test_solvers_on_dx_dt_equals_x():
    """x(1) = e · x(0): Euler is first order, Heun second order, dopri5 meets its tolerance."""
    x0 = torch.ones(2, 1)
    exact = math.e

    def velocity(x, t):
        return x

    def error(method, steps):
        return abs(float(sample_ode(velocity, x0, torch.linspace(0, 1, steps + 1), method)[0, 0]) - exact)

    assert error("euler", 100) == pytest.approx(exact - (1 + 1 / 100) ** 100, rel=1e-4)
    assert error("euler", 200) < error("euler", 100) / 1.9  # first order
    assert error("heun", 200) < error("heun", 100) / 3.9  # second order
    assert error("heun", 50) < error("euler", 50) / 20
    result, evaluations = sample_adaptive(velocity, x0, atol=1e-8, rtol=1e-8)
    assert abs(float(result[0, 0]) - exact) < 1e-6 and evaluations < 200


def test_euler_and_heun_follow_the_shifted_grid():
    """Euler: one evaluation per step; Heun: 2S - 1, its last step an Euler step (no evaluation at t = 1)."""
    calls = []

    def velocity(x, t):
        calls.append(float(t[0]))
        return torch.zeros_like(x)

    grid = NoiseSchedule(sample_shift=1.2).grid(10)
    sample_ode(velocity, torch.zeros(1, 1), grid)
    assert calls == pytest.approx(grid[:-1].tolist())
    calls.clear()
    sample_ode(velocity, torch.zeros(1, 1), grid, "heun")
    inner = [float(t) for t in grid[1:-1] for _ in range(2)]  # each inner point: one step's corrector, the next's start
    assert len(calls) == 2 * 10 - 1 and calls == pytest.approx([float(grid[0]), *inner]) and 1.0 not in calls


class CountingModel:
    def __init__(self):
        self.batches = []

    def __call__(self, x, t, y):
        self.batches.append(len(x))
        # conditional and unconditional outputs differ in every channel
        return x + (y.float() != 1000).float().view(-1, 1, 1, 1) * torch.arange(1, x.shape[1] + 1).float().view(1, -1, 1, 1)


def test_guidance_all_channels_legacy3_interval_and_no_guidance():
    x, labels = torch.zeros(2, 5, 1, 1), torch.tensor([3, 7])
    model = CountingModel()
    cond = x + torch.arange(1, 6).float().view(1, -1, 1, 1)
    all_channels = guided(model, labels, 1000, 4.0)(x, torch.full((2,), 0.5))
    torch.testing.assert_close(all_channels, x + 4.0 * (cond - x))
    legacy = guided(model, labels, 1000, 4.0, channels="legacy3")(x, torch.full((2,), 0.5))
    torch.testing.assert_close(legacy[:, :3], all_channels[:, :3])
    torch.testing.assert_close(legacy[:, 3:], cond[:, 3:])  # the released code leaves the rest conditional
    model.batches.clear()
    early = guided(model, labels, 1000, 4.0, interval_start=0.6)(x, torch.full((2,), 0.5))
    torch.testing.assert_close(early, cond)  # high noise (t < start): conditional only
    assert model.batches == [2]  # ... and the unconditional half is not evaluated
    model.batches.clear()
    plain = guided(model, labels, 1000, 1.0)(x, torch.full((2,), 0.5))
    torch.testing.assert_close(plain, cond)
    assert model.batches == [2]  # scale 1: no unconditional half is computed

