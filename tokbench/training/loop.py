"""The one training loop of the plugins' small trainers (the VAE, VQGAN and RAE-decoder ``tiny``
presets): a plugin supplies its model, its loss (an :class:`Objective`), its batches and its
settings; the loop does the rest, the same way for all of them.

Per step, in this order: the next batch; the learning rate of every optimizer group
(``lr(step)`` times the group's ``lr_scale``, default 1); the objective's loss; a
:class:`FloatingPointError` when it is not finite; backward, optional gradient clipping and the
optimizer step; the EMA copy's update; the objective's ``after_update`` (e.g. restarting dead
codes); the discriminator's step when the objective returns a discriminator loss; the record
into the history, a progress-bar postfix and a log line every tenth of the run; a checkpoint
every ``checkpoints.every`` steps.

A checkpoint holds everything the next step reads: the model, the EMA copy, the optimizers, the
discriminator, the batch stream's position, the objective's own state, the state of every random
generator (the plugin's ``torch.Generator``\\ s and the global torch RNG), the step and the history.
So stopping after step k and resuming trains to the bit the weights of an uninterrupted run (on
the same machine). A checkpoint is tied to the settings (``identity``) it was written with.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import torch
from torch import nn

from tokbench.runtime.timing import progress
from tokbench.training.ema import ema_update_

#: the loop's resume state inside ``Checkpoints.directory``
CHECKPOINT = "training-checkpoint.pt"
CHECKPOINT_FORMAT = 1
#: steps between resume checkpoints of a store producer's training (``launcher.checkpoint_every`` overrides)
DEFAULT_CHECKPOINT_EVERY = 100

__all__ = ["CHECKPOINT", "DEFAULT_CHECKPOINT_EVERY", "Batches", "Checkpoints", "Discriminator", "Objective", "TrainingLoop", "TrainingStopped", "bf16_autocast"]


class TrainingStopped(Exception):
    """Raised after ``Checkpoints.stop_after`` steps (checkpoint written): an interruption on purpose
    (tests, time slices). Running the same loop again resumes."""


@dataclass(frozen=True)
class Checkpoints:
    """Where and how often the loop saves its resume state. ``every``: every that many steps (0:
    only when stopping); ``stop_after``: end the run after that many steps in this call, with a
    checkpoint, by raising :class:`TrainingStopped`. A checkpoint found in ``directory`` is resumed."""

    directory: Path
    every: int = 0
    stop_after: int | None = None

    @property
    def path(self) -> Path:
        return Path(self.directory) / CHECKPOINT

    @classmethod
    def for_artifact(cls, context: Any, key_inputs: Any, kind: str) -> "Checkpoints | None":
        """The checkpoints of a training that produces the store artifact ``context.cached(key_inputs,
        kind, ...)``: in that artifact's ``partial/<key>`` work directory (a rerun after an
        interruption resumes there; the store removes it once the artifact commits), every
        ``context.checkpoint_every`` steps (the run's ``launcher.checkpoint_every``; None:
        :data:`DEFAULT_CHECKPOINT_EVERY`). The interval is in no key. No context (training into a
        plain directory): None, no checkpoints."""
        if context is None:
            return None
        every = getattr(context, "checkpoint_every", None)
        return cls(context.work_dir(key_inputs, kind), DEFAULT_CHECKPOINT_EVERY if every is None else every)


class Objective(Protocol):
    """A plugin's loss. ``loss`` runs the forward pass of one batch and returns the generator loss
    and a record of floats (with ``l1``: the progress bar shows it). The other methods are optional."""

    def loss(self, step: int, batch: Any) -> tuple[torch.Tensor, dict[str, float]]: ...


class Batches(Protocol):
    """The batch stream: ``batch(step)`` and its position as ``state_dict`` / ``load_state_dict``."""

    def batch(self, step: int) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Discriminator:
    """A GAN discriminator, its optimizer and learning rate. It steps when the objective's
    ``discriminator_loss(step)`` returns a loss (None: no discriminator step at this step)."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    lr: Callable[[int], float]


def bf16_autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing elsewhere (CPU runs stay fp32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class TrainingLoop:
    """``steps`` optimizer steps of ``model`` on ``objective``'s loss (see the module docstring).

    ``lr``: the learning rate at a step; ``max_grad_norm``: clip the model's gradient norm (None:
    no clipping); ``ema_decay``: keep an EMA copy (``self.ema``) updated after every step;
    ``generators``: the random generators the batches and the objective draw from (saved in
    checkpoints); ``name``: the run's name in log lines; ``details(step, record)``: extra text for
    a log line; ``track``: a progress wrapper ``track(iterable, description, total)``
    (default :func:`tokbench.runtime.timing.progress`); ``identity``: the settings a checkpoint must match.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, lr: Callable[[int], float], steps: int,
                 batches: Batches, objective: Objective, *, max_grad_norm: float | None = None,
                 ema_decay: float | None = None, discriminator: Discriminator | None = None,
                 generators: Sequence[torch.Generator] = (), name: str = "training",
                 details: Callable[[int, dict[str, float]], str] | None = None, track: Callable | None = None,
                 log: Callable[[str], None] | None = None, checkpoints: Checkpoints | None = None,
                 identity: Any = None):
        self.model, self.optimizer, self.lr, self.steps = model, optimizer, lr, steps
        self.batches, self.objective = batches, objective
        self.max_grad_norm, self.discriminator = max_grad_norm, discriminator
        self.ema = copy.deepcopy(model).eval().requires_grad_(False) if ema_decay is not None else None
        self.ema_decay = ema_decay
        self.generators = list(generators)
        self.name, self.details, self.track, self.log = name, details, track, log
        self.checkpoints, self.identity = checkpoints, identity
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.started = time.time()

    # ---- the loop -----------------------------------------------------------------------
    def run(self) -> list[dict[str, float]]:
        """Train from the checkpoint (if any) to ``steps``; returns the history (one record a step)."""
        if self.resume():
            # in the job log: an interrupted (killed, preempted, requeued) unit shows where it picked up
            message = f"resuming {self.name} training from step {self.step} of {self.steps} ({self.checkpoints.path})"
            print(message, file=sys.stderr, flush=True)
            if self.log is not None:
                self.log(message)
        every = self.checkpoints.every if self.checkpoints is not None else 0
        stop_after = self.checkpoints.stop_after if self.checkpoints is not None else None
        remaining = range(self.step, self.steps)
        track = self.track if self.track is not None else progress
        steps = track(remaining, f"train {self.name}", len(remaining))
        done_now = 0
        for step in steps:
            self.history.append(self.train_step(step))
            self.step = step + 1
            done_now += 1
            self.report(steps, step)
            if stop_after is not None and done_now >= stop_after and self.step < self.steps:
                self.save()
                raise TrainingStopped(f"{self.name}: stopped after step {self.step} (checkpoint {self.checkpoints.path})")
            if every and self.step % every == 0 and self.step < self.steps:
                self.save()
        return self.history

    def train_step(self, step: int) -> dict[str, float]:
        batch = self.batches.batch(step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr(step) * group.get("lr_scale", 1.0)
        loss, record = self.objective.loss(step, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.name}: training diverged at step {step} (loss {loss.item()}); lower train.lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        if self.ema is not None:
            ema_update_(self.ema.parameters(), self.model.parameters(), self.ema_decay)
        after_update = getattr(self.objective, "after_update", None)
        if after_update is not None:
            after_update(step)
        if self.discriminator is not None:
            d_loss = self.objective.discriminator_loss(step)
            if d_loss is not None:
                optimizer = self.discriminator.optimizer
                for group in optimizer.param_groups:
                    group["lr"] = self.discriminator.lr(step)
                optimizer.zero_grad(set_to_none=True)
                d_loss.backward()
                optimizer.step()
                record["d_loss"] = d_loss.item()
        record["loss"] = loss.item()
        return record

    def report(self, steps: Iterable[int], step: int) -> None:
        """The train L1 on the progress bar (when ``steps`` is one) every 10 steps, and a log line
        every tenth of the run: ``<name> step k/n: l1 <mean over the last tenth> <details> (<s>s)``."""
        history = self.history
        if hasattr(steps, "set_postfix") and (step % 10 == 0 or step == self.steps - 1):
            steps.set_postfix(l1=f"{history[-1]['l1']:.4f}", refresh=False)
        tenth = max(1, self.steps // 10)
        if self.log is not None and (step + 1) % tenth == 0:
            recent = history[-tenth:]
            details = f" {self.details(step, history[-1])}" if self.details is not None else ""
            self.log(f"{self.name} step {step + 1}/{self.steps}: l1 {sum(h['l1'] for h in recent) / len(recent):.4f}"
                     f"{details} ({time.time() - self.started:.0f}s)")

    # ---- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        objective_state = getattr(self.objective, "state_dict", None)
        device = next(self.model.parameters()).device
        return {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "discriminator": None if self.discriminator is None else {
                "module": self.discriminator.module.state_dict(),
                "optimizer": self.discriminator.optimizer.state_dict()},
            "batches": self.batches.state_dict(),
            "objective": objective_state() if objective_state is not None else None,
            "generators": [generator.get_state() for generator in self.generators],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.name}: checkpoint format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}; "
                             "delete it to train from the start")
        if state["identity"] != self.identity:
            raise ValueError(f"{self.name}: the checkpoint was written with other settings; resume with the same "
                             "settings or use another checkpoint directory")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.discriminator is not None:
            self.discriminator.module.load_state_dict(state["discriminator"]["module"])
            self.discriminator.optimizer.load_state_dict(state["discriminator"]["optimizer"])
        self.batches.load_state_dict(state["batches"])
        if state["objective"] is not None:
            self.objective.load_state_dict(state["objective"])
        if len(state["generators"]) != len(self.generators):
            raise ValueError(f"{self.name}: the checkpoint has {len(state['generators'])} generator states, "
                             f"the run {len(self.generators)}")
        for generator, generator_state in zip(self.generators, state["generators"]):
            generator.set_state(generator_state)
        torch.set_rng_state(state["torch_rng"])
        device = next(self.model.parameters()).device
        if state["cuda_rng"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        self.step = state["step"]
        self.history = list(state["history"])

    def save(self) -> Path:
        """Write the checkpoint, atomically and sealed (a half-written file never replaces a good one;
        ``store verify`` checks it)."""
        from tokbench.nn.checkpoints import write_training_state

        return write_training_state(self.state_dict(), self.checkpoints.path, f"{self.name} resume checkpoint")

    def resume(self) -> bool:
        """Load the checkpoint in ``checkpoints.directory`` when there is one (a damaged one is set
        aside and training starts over)."""
        if self.checkpoints is None:
            return False
        from tokbench.nn.checkpoints import read_resume_state

        state = read_resume_state(self.checkpoints.path, f"{self.name} resume checkpoint")
        if state is None:
            return False
        self.load_state_dict(state)
        return True
