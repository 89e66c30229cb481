"""Training LightningDiT on cached latents: LightningDiT's recipe, resumable to the bit.

AdamW (lr 2e-4, betas 0.9 / 0.95, no weight decay, constant lr), EMA of the weights (0.9999,
from step 0), class dropout for classifier-free guidance (0.1), logit-normal times with the
noise shift, MSE + cosine loss, bf16 autocast on CUDA, optional gradient clipping and
activation checkpointing. Every random draw of step k (batch indices, flip choice, times,
noise, dropped labels) comes from generators seeded by (seed, k), so a run resumed from a
checkpoint continues exactly as if it had never stopped: the checkpoint holds the model, the
EMA, the optimiser and the step, nothing else.

Because the learning rate is constant and nothing depends on the total number of steps, the EMA
weights at step k of a long run are the weights a run of k steps ends with (``snapshot``): the
budget ladder (docs/ladders.md) reads its rungs off one run. A schedule that decays toward the
end would break that; ``snapshot`` refuses when the optimiser's learning rate is not the
configured constant.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tokbench.generation.model import LightningDiT
from tokbench.generation.transport import NoiseSchedule, flow_loss, interpolate
from tokbench.nn.checkpoints import read_resume_state, write_training_state
from tokbench.runtime.timing import progress_bar
from tokbench.training.ema import ema_update_


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int = 1024
    lr: float = 2e-4
    beta2: float = 0.95
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    class_dropout: float = 0.1
    cosine_loss: bool = True
    grad_clip: float | None = None
    seed: int = 0
    precision: str = "bf16"  # autocast dtype on CUDA; CPU trains in fp32
    checkpoint_every: int = 0  # 0: at the end (and when stopped)
    # execution only: the same steps and weights (up to kernel rounding) either way
    compile: bool = False
    activation_checkpointing: bool = False
    fused_optimizer: bool = True  # on CUDA

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps}, {self.batch_size}")


@dataclass
class LatentSet:
    """Normalised latents (N, C, H, W), their horizontal-flip copies and labels (N,)."""

    latents: torch.Tensor
    flipped: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.latents.shape != self.flipped.shape or len(self.labels) != len(self.latents):
            raise ValueError("latents, flipped copies and labels must line up")

    def __len__(self) -> int:
        return len(self.latents)


def _generator(seed: int, *stream: int) -> torch.Generator:
    mixed = seed
    for value in stream:
        mixed = (mixed * 1_000_003 + value + 0x9E3779B9) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


class DiTTrainer:
    CHECKPOINT = "checkpoint.pt"

    def __init__(self, model: LightningDiT, data: LatentSet, settings: TrainSettings, noise: NoiseSchedule,
                 device: str | torch.device = "cpu", work_dir: str | Path | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).train()
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        self.data, self.settings, self.noise = data, settings, noise
        if settings.batch_size > len(data):  # never shrink the batch silently: the budget assumes it
            raise ValueError(f"batch_size {settings.batch_size} is larger than the {len(data)} training latents; "
                             f"use batch_size <= {len(data)}")
        # DDP when a process group is up (torchrun, or tokbench.execution.launch.distributed on Slurm): every
        # rank draws the same global batch and trains on its slice; DDP averages the gradients, so
        # N ranks take exactly the steps one process would take with the whole batch.
        self.rank, self.world = _process_group()
        self.model.gradient_checkpointing = settings.activation_checkpointing
        self.forward_model = self.model
        if self.world > 1:
            global_batch = settings.batch_size
            if global_batch % self.world:
                raise ValueError(f"batch size {global_batch} is not divisible by the {self.world} ranks; "
                                 f"use a multiple of {self.world}")
            from torch.nn.parallel import DistributedDataParallel

            self.forward_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if settings.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=settings.lr, betas=(0.9, settings.beta2),
            weight_decay=settings.weight_decay, fused=settings.fused_optimizer and self.device.type == "cuda",
        )
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.step = 0
        self.history: list[dict] = []
        if self.work_dir is not None and (self.work_dir / self.CHECKPOINT).is_file():
            self._load(self.work_dir / self.CHECKPOINT)

    # ---- data ---------------------------------------------------------------------------------
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents and labels of ``step``: epochs are seeded permutations; each sample is the
        original or its flip copy with probability 1/2 (as LightningDiT's loader)."""
        n, size = len(self.data), self.settings.batch_size
        per_epoch = n // size
        epoch, position = divmod(step, per_epoch)
        order = torch.randperm(n, generator=_generator(self.settings.seed, 1, epoch))
        index = order[position * size : (position + 1) * size]
        flip = torch.rand(size, generator=_generator(self.settings.seed, 2, step)) < 0.5
        latents = torch.where(flip.view(-1, 1, 1, 1), self.data.flipped[index], self.data.latents[index])
        return latents.to(self.device), self.data.labels[index].to(self.device)

    # ---- one step -------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        settings = self.settings
        x1, labels = self.batch(self.step)
        generator = _generator(settings.seed, 3, self.step)
        t = self.noise.sample_times(len(x1), generator).to(self.device)
        x0 = torch.randn(x1.shape, generator=generator).to(self.device)
        drop = (torch.rand(len(x1), generator=generator) < settings.class_dropout).to(self.device)
        if self.world > 1:  # this rank's contiguous slice of the global batch
            share = len(x1) // self.world
            x1, labels, t, x0, drop = (v[self.rank * share:(self.rank + 1) * share] for v in (x1, labels, t, x0, drop))
        xt, target = interpolate(x1, x0, t)
        with self._autocast():
            prediction = self.forward_model(xt, t, labels, drop_labels=drop)
        terms = flow_loss(prediction, target, cosine=settings.cosine_loss)
        loss = terms["loss"].mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = None
        if settings.grad_clip:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), settings.grad_clip))
        self.optimizer.step()
        ema_update_(self.ema.parameters(), self.model.parameters(), settings.ema_decay)
        self.step += 1
        logged = {"loss": loss.detach(), **{k: v.detach().mean() for k, v in terms.items() if k != "loss"}}
        if self.world > 1:  # the global batch's means, as one process would log them
            import torch.distributed as dist

            values = torch.stack(list(logged.values()))
            dist.all_reduce(values)
            logged = dict(zip(logged, values / self.world))
        record = {"step": self.step, **{k: float(v) for k, v in logged.items()}}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        return record

    def fit(self, stop_after: int | None = None, log_every: int = 50, until: int | None = None) -> list[dict]:
        """Train to ``settings.steps`` (or ``stop_after`` more steps, or up to step ``until``),
        checkpointing as configured."""
        target = self.settings.steps if stop_after is None else min(self.settings.steps, self.step + stop_after)
        if until is not None:
            target = min(target, until)
        started = time.perf_counter()
        bar = progress_bar(target, "generator training", initial=self.step, enabled=self.rank == 0)
        while self.step < target:
            record = self.train_step()
            bar.update()
            if self.step % log_every == 0 or self.step == target:
                record["seconds"] = time.perf_counter() - started
                self.history.append(record)
            every = self.settings.checkpoint_every
            if self.work_dir is not None and every and self.step % every == 0:
                self.save()
        bar.close()
        if self.work_dir is not None:
            self.save()
        return self.history

    # ---- checkpoints -----------------------------------------------------------------------------
    def save(self) -> Path:
        """Write the checkpoint (rank 0 only; the ranks hold identical state)."""
        if self.work_dir is None:
            raise ValueError("this trainer has no work_dir to save checkpoints in; pass work_dir=... to resume later")
        path = self.work_dir / self.CHECKPOINT
        if self.rank != 0:
            return path
        return write_training_state({"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                                     "opt": self.optimizer.state_dict(), "step": self.step,
                                     "config": self.model.config.to_dict(), "settings": asdict(self.settings),
                                     "history": self.history}, path, "LightningDiT resume checkpoint")

    def _load(self, path: Path) -> None:
        state = read_resume_state(path, "LightningDiT resume checkpoint", self.device)
        if state is None:  # damaged or not ours: set aside, train from the start
            return
        if state.get("settings", {}).get("seed") != self.settings.seed or state.get("config") != self.model.config.to_dict():
            raise ValueError(f"{path} belongs to another run (config or seed differ); remove it to start over")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["opt"])
        self.step, self.history = int(state["step"]), list(state.get("history", []))
        # in the job log: a requeued (preempted, timed-out) training unit shows where it picked up
        print(f"[dit] resumed {path} at step {self.step} of {self.settings.steps}", file=sys.stderr, flush=True)

    def _autocast(self):
        if self.device.type == "cuda" and self.settings.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def snapshot(self, path: str | Path) -> Path:
        """The EMA weights at the current step, in the official layout (``{"ema", "config", "step"}``):
        what a run of ``self.step`` steps would end with, since the learning rate is constant."""
        rates = {group["lr"] for group in self.optimizer.param_groups}
        if rates != {self.settings.lr}:
            raise ValueError(f"a ladder rung needs a constant learning rate ({self.settings.lr}); the optimiser has "
                             f"{sorted(rates)}: with a decaying schedule the weights at step {self.step} are not what a "
                             "shorter run would give (see docs/ladders.md)")
        path = Path(path)
        torch.save({"ema": self.ema.state_dict(), "config": self.model.config.to_dict(), "step": self.step}, path)
        return path

    def export_official(self, path: str | Path) -> Path:
        """A checkpoint in LightningDiT's own layout ({"model", "ema", "opt", "config"})."""
        path = Path(path)
        torch.save({"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.optimizer.state_dict(),
                    "config": self.model.config.to_dict()}, path)
        return path


def _process_group() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def latent_statistics(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased std over (N, H, W), as (1, C, 1, 1) float32 — the layout
    of LightningDiT's ``latents_stats.pt`` (computed here over every latent, deterministically)."""
    flat = latents.double().transpose(0, 1).reshape(latents.shape[1], -1)
    return flat.mean(dim=1).float().view(1, -1, 1, 1), flat.std(dim=1, unbiased=True).float().view(1, -1, 1, 1)
