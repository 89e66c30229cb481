"""VTP pretraining loop: stage 1 (joint CLIP + SSL + reconstruction) then stage 2
(decoder GAN fine-tune), resumable to the bit and distributed with DDP.

A run lives in one directory::

    <run>/checkpoint.pt     everything for an exact resume (student, teacher, heads, loss
                            centres, discriminator, optimizers, RNG states, data position)
    <run>/history.jsonl     one line per logged step / evaluation
    <run>/model.safetensors the official inference checkpoint (+ config.json), at the end
    <run>/training.json     summary: recipe, steps, losses, evaluations, FLOPs, wall time

Schedules are pure functions of the step, the data order is a pure function of
(seed, step), and the checkpoint carries the torch RNG state, so stopping after N
steps and resuming for M gives the weights of N+M uninterrupted steps (CPU).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from tokbench.nn.checkpoints import read_training_state
from tokbench.runtime.timing import progress_bar
from tokbench.training.ema import ema_update_
from tokbench.training.schedules import CosineSchedule
from tokbench_vtp.checkpoint import save_official
from tokbench_vtp.model.vtp import VTPModel
from tokbench_vtp.pretrain.distributed import all_reduce_mean_, world_info
from tokbench_vtp.pretrain.heads import DINOHead, cancel_last_layer_gradients
from tokbench_vtp.pretrain.losses.clip import clamp_logit_scale_
from tokbench_vtp.pretrain.losses.dino import relative_entropy
from tokbench_vtp.pretrain.objective import Stage1Objective, teacher_targets
from tokbench_vtp.pretrain.recipe import PretrainRecipe

logger = logging.getLogger("tokbench_vtp.pretrain")
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.jsonl"
#: teacher target entropy / ln K above which the DINO branch counts as collapsed to uniform
COLLAPSE_ENTROPY = 0.9
SUMMARY = "training.json"


class StopRequested(Exception):
    """Raised by ``stop_after`` to simulate an interruption (tests) or end a time slice."""


class VTPPretrainer:
    """Builds everything a recipe names, resumes from ``run_dir`` when a checkpoint is there."""

    def __init__(
        self,
        recipe: PretrainRecipe,
        run_dir: str | os.PathLike,
        device: str | torch.device = "cpu",
        source=None,
        evaluator: Callable[[VTPModel], dict[str, float]] | None = None,
        eval_every: int = 0,
        log: Callable[[str], None] | None = None,
    ):
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(device)
        self.rank, self.world_size = world_info()
        self.log = log or logger.info
        self.evaluator = evaluator
        self.eval_every = eval_every
        recipe.per_rank_batches(self.world_size)  # every branch gets whole, non-empty per-rank batches
        self.autocast_dtype = torch.bfloat16 if recipe.precision == "bf16" and self.device.type == "cuda" else None

        torch.manual_seed(recipe.seed)
        arch = recipe.arch
        self.model = VTPModel(arch).to(self.device)
        self.head = None
        self.teacher_trunk = self.teacher_head = None
        if recipe.loss.ssl > 0:
            h = recipe.head
            self.head = DINOHead(arch.vision_width, h.prototypes, h.layers, h.hidden, h.bottleneck).to(self.device)
            self.teacher_trunk = copy.deepcopy(self.model.trunk).requires_grad_(False)
            self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        perceptual = None
        if recipe.loss.rec > 0 and recipe.loss.perceptual > 0:
            from tokbench.training.perceptual import LPIPSLoss

            perceptual = LPIPSLoss(input_space="imagenet").to(self.device)
        self.objective = Stage1Objective(self.model, self.head, recipe, perceptual).to(self.device)
        self.trainable = self.objective
        if self.world_size > 1:
            unused = not (recipe.loss.clip > 0 and recipe.loss.ssl > 0 and recipe.loss.rec > 0)
            self.trainable = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False, find_unused_parameters=unused,
            )
        self.model.trunk.activation_checkpointing = recipe.activation_checkpointing
        if recipe.compile:
            # The trunk is used through forward_features (no nn.Module forward), so compile that.
            trunk = self.model.trunk
            trunk.forward_features = torch.compile(trunk.forward_features)
        self.stage2_perceptual = None
        if recipe.stage2.steps and recipe.stage2.perceptual > 0:
            # Fail now (naming the missing VGG16 file), not after all of stage 1.
            self.stage2_perceptual = self.objective.rec_loss.perceptual
            if self.stage2_perceptual is None:
                from tokbench.training.perceptual import LPIPSLoss

                self.stage2_perceptual = LPIPSLoss(input_space="imagenet").to(self.device)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.objective), lr=recipe.optim.lr, betas=recipe.optim.betas, eps=recipe.optim.eps,
            fused=recipe.fused_optimizer and self.device.type == "cuda",
        )
        o = recipe.optim
        # A warm-up longer than a (shortened) run is clamped to the run.
        self.lr = CosineSchedule(o.lr, o.min_lr, recipe.steps, warmup_steps=min(o.warmup_steps, recipe.steps - 1))
        self.wd = CosineSchedule(o.weight_decay, o.weight_decay_end, recipe.steps)
        self.momentum = CosineSchedule(o.teacher_momentum, o.teacher_momentum_end, recipe.steps)
        self.step = 0
        self._collapse_warned = False
        self.stage2 = None
        self._pending_stage2_state: dict[str, Any] | None = None  # a resumed stage 2's state, until it is built
        self.loader = self._make_loader(source)
        self.history: list[dict[str, Any]] = []
        self.started = time.time()
        self.elapsed_before = 0.0
        self._resume()

    # ---- data -------------------------------------------------------------------------
    def _make_loader(self, source):
        from tokbench_vtp.pretrain.data import build_loader

        return build_loader(self.recipe, source, rank=self.rank, world_size=self.world_size)

    @property
    def teacher_temp_warmup(self) -> int:
        warmup = self.recipe.loss.teacher_temp_warmup_steps
        return int(0.3 * self.recipe.steps) if warmup is None else warmup

    def teacher_temp(self, step: int) -> float:
        loss, warmup = self.recipe.loss, self.teacher_temp_warmup
        if step < warmup:
            return loss.warmup_teacher_temp + (loss.teacher_temp - loss.warmup_teacher_temp) * step / warmup
        return loss.teacher_temp

    # ---- one optimizer step --------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimizer step: forward/backward over the micro-batches, then the update."""
        record = self.forward_backward()
        self._check_collapse(record)
        record.update(self.apply_update())
        return record

    def _check_collapse(self, record: dict[str, float]) -> None:
        """Warn once when the DINO teacher targets stay near uniform after the temperature warm-up."""
        entropy = record.get("dino_teacher_entropy")
        if entropy is None or self.step < self.teacher_temp_warmup or entropy < COLLAPSE_ENTROPY or self._collapse_warned:
            return
        self._collapse_warned = True
        self.log(
            f"[vtp warning] step {self.step}: the DINO teacher targets are near uniform (entropy {entropy:.3f} of "
            f"ln K): the DINO branch has collapsed and teaches the trunk nothing. Small batches need fewer "
            f"prototypes (head.prototypes, now {self.recipe.head.prototypes}) or a lower loss.teacher_temp "
            f"(now {self.recipe.loss.teacher_temp})."
        )

    def forward_backward(self) -> dict[str, float]:
        """Set this step's lr / weight decay, run every micro-batch (teacher targets, the three
        student branches, backward). Leaves the (DDP-averaged) gradients in place."""
        recipe, step = self.recipe, self.step
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr(step)
            group["weight_decay"] = self.wd(step) if group.get("decay", True) else 0.0
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        accumulation = recipe.batch.accumulation
        for micro in range(accumulation):
            batch = next(self.loader).to(self.device, non_blocking=True)
            sync = micro == accumulation - 1 or self.world_size == 1
            context = contextlib.nullcontext() if sync else self.trainable.no_sync()
            with context, self.autocast():
                targets = None
                if self.teacher_trunk is not None and batch.global_crops.shape[0]:
                    targets = teacher_targets(self.teacher_trunk, self.teacher_head, self.objective, batch,
                                              self.teacher_temp(step), recipe.loss.centering)
                parts = self.trainable(batch, targets)
                (parts["total"] / accumulation).backward()
            if targets is not None:
                parts["dino_teacher_entropy"] = relative_entropy(targets.cls_probs)
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) / accumulation
        if self.world_size > 1:  # log the global mean, not rank 0's share
            names = sorted(sums)
            values = all_reduce_mean_(torch.tensor([sums[n] for n in names], dtype=torch.float64, device=self.device))
            sums = dict(zip(names, values.tolist()))
        return sums

    def apply_update(self) -> dict[str, float]:
        """Freeze-window gradient cancelling, clipping, AdamW, logit-scale clamp, EMA teacher."""
        recipe, step = self.recipe, self.step
        record: dict[str, float] = {}
        if self.head is not None and step < recipe.head.freeze_last_layer_steps:
            cancel_last_layer_gradients(self.head)
        if recipe.optim.clip_grad > 0:
            record["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.objective.parameters(), recipe.optim.clip_grad))
        self.optimizer.step()
        if self.model.arch.with_text:
            clamp_logit_scale_(self.model.logit_scale, recipe.loss.logit_scale_max)
        if self.teacher_trunk is not None:
            m = self.momentum(step)
            ema_update_(list(self.teacher_trunk.parameters()), list(self.model.trunk.parameters()), m)
            ema_update_(list(self.teacher_head.parameters()), list(self.head.parameters()), m)
        self.step += 1
        record.update(lr=self.lr(step), step=self.step)
        return record

    def autocast(self):
        """The recipe's mixed precision (bf16 on CUDA when asked) as a context manager."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ---- the loop -----------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train to the end of the recipe (stage 1, then stage 2), checkpointing along the way.
        ``stop_after`` ends the call after that many *more* steps (checkpoint written), as an
        interruption would; calling ``fit`` again (or a new trainer on the same run_dir) resumes."""
        recipe = self.recipe
        done_now = 0
        every = recipe.checkpoint_every
        bar = progress_bar(recipe.total_steps, "vtp pretraining", initial=self.step, enabled=self.rank == 0)
        while self.step < recipe.total_steps:
            if stop_after is not None and done_now >= stop_after:
                bar.close()
                self.save_checkpoint()
                raise StopRequested(f"stopped after step {self.step}")
            if self.step < recipe.steps:
                record = self.train_step()
            else:
                record = self._stage2().train_step(self.step)
                self.step += 1
            done_now += 1
            bar.update()
            if self.step % recipe.log_every == 0 or self.step == recipe.total_steps:
                self._record({"kind": "train", **record})
            if self.evaluator is not None and self.eval_every and self.step % self.eval_every == 0:
                self._evaluate()
            if every and self.step % every == 0 and self.step < recipe.total_steps:
                self.save_checkpoint()
        bar.close()
        if self.evaluator is not None and not any(h.get("kind") == "eval" and h["step"] == self.step for h in self.history):
            self._evaluate()
        return self.finish()

    def _stage2(self):
        if self.stage2 is None:
            from tokbench_vtp.pretrain.stage2 import DecoderGANStage

            # Built from its own seed, outside the training RNG stream: whether it is built at the
            # stage boundary or on resume, neither it nor the following steps depend on when.
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.recipe.seed + 1)
                self.stage2 = DecoderGANStage(
                    self.recipe, self.model.trunk, self.model.pixel_decoder, self.loader.source, device=self.device,
                    rank=self.rank, world_size=self.world_size, autocast=self.autocast,
                    state=self._pending_stage2_state, perceptual=self.stage2_perceptual)
        return self.stage2

    def _evaluate(self) -> None:
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), self.autocast():
            metrics = self.evaluator(self.model)
        self.model.train(was_training)
        self._record({"kind": "eval", "step": self.step, **metrics})

    def _record(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.rank == 0:
            with open(self.run_dir / HISTORY, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items() if k != "kind")
            self.log(f"[vtp {record['kind']}] {shown}")

    # ---- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "format": 1,
            "recipe": self.recipe.model_dump(mode="json"),
            "step": self.step,
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "teacher_trunk": self.teacher_trunk.state_dict() if self.teacher_trunk is not None else None,
            "teacher_head": self.teacher_head.state_dict() if self.teacher_head is not None else None,
            "loader": self.loader.state_dict(),
            "rng": self._rng_state(),
            "stage2": self.stage2.state_dict() if self.stage2 is not None else None,
            "elapsed": self.elapsed_before + time.time() - self.started,
            "history": self.history,
        }
        return state

    def _rng_state(self) -> dict[str, Any]:
        """Every RNG's state as tensors and plain numbers (loadable with ``weights_only=True``)."""
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        version, python_state, python_gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss": python_gauss},
        }

    def _set_rng_state(self, rng: dict[str, Any]) -> None:
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        numpy_state, python_state = rng["numpy"], rng["python"]
        np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                             numpy_state["has_gauss"], numpy_state["gauss"]))
        random.setstate((python_state["version"], tuple(int(v) for v in python_state["state"].tolist()),
                         python_state["gauss"]))

    def _rank_rng_path(self, rank: int) -> Path:
        return self.run_dir / "rng" / f"rank{rank}.pt"

    def save_checkpoint(self) -> Path:
        """Rank 0 writes the checkpoint; with several ranks each also writes its own RNG state
        (sample-drop draws differ per rank). Called by every rank."""
        path = self.run_dir / CHECKPOINT
        state = self.state_dict()
        if self.world_size > 1:
            rng_path = self._rank_rng_path(self.rank)
            rng_path.parent.mkdir(exist_ok=True)
            torch.save(state["rng"], rng_path.with_suffix(".tmp"))
            os.replace(rng_path.with_suffix(".tmp"), rng_path)
        if self.rank == 0:
            tmp = path.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, path)
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        return path

    def _resume(self) -> None:
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            return
        state = read_training_state(path, "VTP pretraining checkpoint")  # weights_only=True: no code runs
        saved = PretrainRecipe.model_validate(state["recipe"])
        if saved.cache_inputs() != self.recipe.cache_inputs():
            raise ValueError(
                f"{path} was written by a different recipe; resume with the same recipe or use another run directory"
            )
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.teacher_trunk is not None:
            self.teacher_trunk.load_state_dict(state["teacher_trunk"])
            self.teacher_head.load_state_dict(state["teacher_head"])
        self.loader.load_state_dict(state["loader"])
        rng = state["rng"]
        if self.world_size > 1:
            rank_file = self._rank_rng_path(self.rank)
            if not rank_file.is_file():
                raise ValueError(f"{rank_file} is missing: resume with the world size the run was saved with")
            rng = read_training_state(rank_file, "VTP per-rank RNG state")
        self._set_rng_state(rng)
        self.step = state["step"]
        self.history = state.get("history", [])
        self.elapsed_before = state.get("elapsed", 0.0)
        self._pending_stage2_state = state.get("stage2")
        if self._pending_stage2_state is not None:
            self._stage2()
        message = f"resuming vtp pretraining from step {self.step} of {self.recipe.total_steps} ({path})"
        if self.rank == 0:  # in the job log: where an interrupted unit picked up
            print(message, file=sys.stderr, flush=True)
        self.log(message)

    def finish(self) -> dict[str, Any]:
        """Export the official inference checkpoint and the summary (rank 0)."""
        summary = {
            "recipe": self.recipe.name,
            "steps": self.step,
            "stage1_steps": self.recipe.steps,
            "stage2_steps": self.recipe.stage2.steps,
            "final": next((h for h in reversed(self.history) if h.get("kind") == "train"), {}),
            "evaluations": [h for h in self.history if h.get("kind") == "eval"],
            "flops_per_step": self.recipe.training_flops(),
            "wall_seconds": round(self.elapsed_before + time.time() - self.started, 2),
            "world_size": self.world_size,
            "device": str(self.device),
        }
        if self.rank == 0:
            save_official(self.model, self.run_dir)
            (self.run_dir / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True, default=float))
        self.save_checkpoint()
        return summary


def _param_groups(module: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not on biases, norms, tokens, logit scale, weight-norm magnitudes)."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(("cls_token", "mask_token", "positional_embedding", "original0")):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "decay": True}, {"params": no_decay, "decay": False, "weight_decay": 0.0}]
