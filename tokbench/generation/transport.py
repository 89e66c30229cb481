"""Flow matching on the linear path, and the ODE samplers.

Time convention (SiT / LightningDiT, used everywhere in tokbench): **t = 0 is noise, t = 1 is
data**. x_t = t·x1 + (1 − t)·x0 with x1 the (normalised) latent and x0 ~ N(0, I); the model
predicts the velocity u = x1 − x0.

One knob moves the noise level in both training and sampling, as a translation in logit space
toward noise (``docs/generation.md``): training times t = sigmoid(N(−ℓ_train, σ)) (LightningDiT's
``lognorm_mu = −ℓ_train``), sampling grid t' = s·t / (1 + (s − 1)·t) with s = exp(−ℓ_sample)
(LightningDiT's ``timestep_shift = s``), i.e. logit t' = logit t − ℓ_sample. The default rule is
RAE's: ℓ = ln √(C·H·W / 4096) for a C × H × W latent, 0 for 4096 dimensions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F


def default_noise_shift(channels: int, height: int, width: int) -> float:
    """RAE's dimension rule: ℓ = ln √(C·H·W / 4096) (0.35 for 32×16×16, 0.69 for 64×16×16)."""
    return 0.5 * math.log(channels * height * width / 4096)


@dataclass(frozen=True)
class NoiseSchedule:
    train_shift: float = 0.0  # ℓ_train
    train_sigma: float = 1.0  # σ of the logit-normal; 0 = uniform t
    sample_shift: float = 0.0  # ℓ_sample

    def sample_times(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        if self.train_sigma == 0:
            return torch.rand(batch, generator=generator).to(device)
        normal = torch.randn(batch, generator=generator)
        return torch.sigmoid(normal * self.train_sigma - self.train_shift).to(device)

    def grid(self, steps: int) -> torch.Tensor:
        """``steps + 1`` times from 0 (noise) to 1 (data), shifted toward noise by ℓ_sample."""
        t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        s = math.exp(-self.sample_shift)
        return (s * t / (1 + (s - 1) * t)).float()

    @property
    def lightningdit(self) -> dict[str, float]:
        """The same settings in LightningDiT's config names."""
        return {"lognorm_mu": -self.train_shift, "lognorm_sigma": self.train_sigma,
                "timestep_shift": math.exp(-self.sample_shift)}


def interpolate(x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t and the target velocity u = x1 − x0."""
    tt = t.view(-1, *([1] * (x1.ndim - 1))).to(x1.dtype)
    return tt * x1 + (1 - tt) * x0, x1 - x0


def flow_loss(prediction: torch.Tensor, target: torch.Tensor, cosine: bool = True) -> dict[str, torch.Tensor]:
    """LightningDiT's loss per sample: MSE + (1 − cosine similarity over channels) averaged over positions."""
    dims = tuple(range(1, prediction.ndim))
    mse = (prediction.float() - target.float()).pow(2).mean(dim=dims)
    terms = {"mse": mse}
    if cosine:
        terms["cos"] = (1 - F.cosine_similarity(prediction.float(), target.float(), dim=1)).mean(dim=tuple(range(1, prediction.ndim - 1)))
    terms["loss"] = sum(terms.values())
    return terms


Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t batch) -> v


class CountedModel:
    """The network, counting the images it evaluates: every row of every call is one network
    evaluation of one image; rows labelled ``null_label`` are the unconditional half of guidance.
    ``nfe`` (evaluations per image) is what the sampling FLOPs are computed from."""

    def __init__(self, model: Callable[..., torch.Tensor], null_label: int):
        self.model, self.null_label = model, null_label
        self.conditional = 0
        self.unconditional = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        unconditional = int((labels == self.null_label).sum())
        self.unconditional += unconditional
        self.conditional += len(labels) - unconditional
        return self.model(x, t, labels, **kwargs)

    @property
    def evaluations(self) -> int:
        return self.conditional + self.unconditional


def guided(model: Callable[..., torch.Tensor], labels: torch.Tensor, null_label: int, scale: float,
           interval_start: float = 0.0, channels: Literal["all", "legacy3"] = "all") -> Velocity:
    """Classifier-free guidance: v = v_uncond + scale·(v_cond − v_uncond), the conditional and
    unconditional halves in one batch. Below ``interval_start`` (high noise) the conditional
    model runs alone (the unconditional half is not evaluated). ``legacy3`` guides only the
    first 3 channels, as the released LightningDiT / VTP sampling code does (to reproduce
    published numbers only)."""
    null = torch.full_like(labels, null_label)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if scale == 1.0 or float(t[0]) < interval_start:  # no guidance here: no unconditional half
            return model(x, t, labels)
        out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
        cond, uncond = out.chunk(2)
        mixed = uncond + scale * (cond - uncond)
        if channels == "legacy3":
            return torch.cat([mixed[:, :3], cond[:, 3:]], dim=1)
        return mixed

    return velocity


def sample_ode(velocity: Velocity, noise: torch.Tensor, grid: torch.Tensor,
               method: Literal["euler", "heun"] = "euler") -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from t = grid[0] to grid[-1] on the given grid (S = len(grid) − 1 steps).

    ``euler``: one evaluation per step, S in all (LightningDiT's default: 250 grid points, 249 steps);
    ``heun``: the trapezoidal corrector on every step but the last, which is an Euler step (as EDM's
    sampler: no evaluation at the data end t = 1), 2S − 1 evaluations in all."""
    x = noise
    batch = noise.shape[0]
    steps = len(grid) - 1
    for i in range(steps):
        t, t_next = float(grid[i]), float(grid[i + 1])
        dt = t_next - t
        v = velocity(x, torch.full((batch,), t, device=x.device))
        if method == "euler" or i == steps - 1:
            x = x + dt * v
        else:
            guess = x + dt * v
            v_next = velocity(guess, torch.full((batch,), t_next, device=x.device))
            x = x + dt * 0.5 * (v + v_next)
    return x


def sample_latents(model: Callable[..., torch.Tensor], noise: torch.Tensor, labels: torch.Tensor, null_label: int,
                   grid: torch.Tensor, sampler: Literal["euler", "heun", "adaptive"] = "euler", cfg_scale: float = 1.0,
                   interval_start: float = 0.0, channels: Literal["all", "legacy3"] = "all") -> tuple[torch.Tensor, dict[str, float]]:
    """Sample one batch from ``noise`` (t = 0) to data (t = 1) with optional guidance; returns the
    latents and the network evaluations counted per image: ``nfe`` (all), ``nfe_conditional``
    and ``nfe_unconditional`` (the two halves of guidance). ``grid`` is unused by ``adaptive``."""
    counted = CountedModel(model, null_label)
    velocity = guided(counted, labels, null_label, cfg_scale, interval_start, channels)
    if sampler == "adaptive":
        latents, _ = sample_adaptive(velocity, noise)
    else:
        latents = sample_ode(velocity, noise, grid, sampler)
    n = len(labels)
    return latents, {"nfe": counted.evaluations / n, "nfe_conditional": counted.conditional / n,
                     "nfe_unconditional": counted.unconditional / n}


# Dormand-Prince 5(4) (dopri5), the adaptive solver LightningDiT's small-scale studies use
_A = [[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
      [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
      [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
      [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]]
_C = [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1]
_B5 = [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0]
_B4 = [5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]


def sample_adaptive(velocity: Velocity, noise: torch.Tensor, t0: float = 0.0, t1: float = 1.0,
                    atol: float = 1e-6, rtol: float = 1e-3, max_steps: int = 10_000) -> tuple[torch.Tensor, int]:
    """Adaptive Dormand-Prince 5(4) from t0 to t1 (error norm over the whole batch, as torchdiffeq, so
    the steps depend on the batch); returns the result and the number of calls of ``velocity``."""
    x, t, evaluations = noise, t0, 0
    batch = noise.shape[0]
    h = (t1 - t0) / 100
    k1 = velocity(x, torch.full((batch,), t, device=x.device))
    evaluations += 1
    for _ in range(max_steps):
        if t >= t1 - 1e-12:
            return x, evaluations
        h = min(h, t1 - t)
        ks = [k1]
        for stage in range(1, 7):
            increment = sum(a * k for a, k in zip(_A[stage], ks))
            ks.append(velocity(x + h * increment, torch.full((batch,), t + _C[stage] * h, device=x.device)))
            evaluations += 1
        fifth = x + h * sum(b * k for b, k in zip(_B5, ks))
        fourth = x + h * sum(b * k for b, k in zip(_B4, ks))
        scale = atol + rtol * torch.maximum(x.abs(), fifth.abs())
        error = float(((fifth - fourth) / scale).pow(2).mean().sqrt())
        if error <= 1.0:
            t, x, k1 = t + h, fifth, ks[-1]  # first-same-as-last
        h = h * min(5.0, max(0.2, 0.9 * (1.0 / max(error, 1e-10)) ** 0.2))
    raise RuntimeError(f"the adaptive ODE solver did not reach t = {t1} in {max_steps} steps")
