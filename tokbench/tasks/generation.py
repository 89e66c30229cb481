"""Equal-FLOPs generation: train LightningDiT on each tokenizer's latents for the same compute,
sample, and score the decoded samples (gFID, precision/recall).

Protocol ``gfid-v2`` (v1 took the nearest token count silently and derived the sampling FLOPs
from the settings):
1. The training dataset is encoded once into the store (latents and horizontal-flip copies,
   float32, sharded and resumable), and its per-channel statistics standardise the latents
   (LightningDiT's ``latents_stats``), unless the task says otherwise.
2. The patch size makes every tokenizer's latent exactly ``target_tokens`` tokens (a run whose
   latent grid cannot fails before training, unless ``token_match: nearest``); the steps are the
   nearest whole number that spends the FLOP budget through the analytic count (equal to
   FlopCounterMode), so generators of different tokenizers spend the same training compute up
   to their input/output projections and half a step (achieved and budgeted FLOPs recorded).
3. Training: LightningDiT's recipe (``tokbench.generation.train``); interrupted training
   resumes from ``partial/`` in the store; the EMA weights are kept as an artifact in the
   official checkpoint layout.
4. Sampling: class-balanced labels (or uniform), seeded noise, Euler/Heun/adaptive ODE with
   the sampling shift, optional classifier-free guidance; the network evaluations are counted
   while sampling (``sampling.nfe``, stored with the samples); samples are decoded by the
   tokenizer, quantised to uint8 (round) and stored as an ADM-evaluator ``.npz`` (``arr_0``).
   The cost per generated image is ``nfe`` x forward FLOPs + the tokenizer's decode FLOPs.
5. gFID against the evaluation dataset's images (the same FID Inception and the same cached
   reference features as rFID); improved precision/recall with k = 3; Inception Score (10
   splits) when the FID weights have torch-fidelity's logits layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokbench.errors import TokbenchError
from tokbench.tasks.base import Task, TaskContext, TaskOutput
from tokbench.tasks.fid_reference import UsesFIDWeights
from tokbench.tasks.generation_params import GenerationParams, patch_for_tokens

#: the network evaluations counted while sampling, stored next to the samples
SAMPLING_FILE = "sampling.json"
TRAINING_FLOPS_COUNTS = (
    "generator forward + backward (3 forwards) per training image and step; not counted: the optimizer and EMA "
    "updates (elementwise, per step), activation checkpointing's recomputed forward, and the tokenizer's encoding "
    "of the training set with flips (done once, cached; its cost per image is tokenizer_cost)"
)


def time_since(started: float) -> float:
    import time

    return time.time() - started


@dataclass
class Latents:
    """Step 1 of ``GenerationTask.run``: the training set's latents with their standardisation."""

    spec: Any  # the tokenizer's LatentSpec at the training resolution
    table: Any  # the stored feature table (its key is an artifact of every result)
    views: Any  # (2, N, C, H, W): the latents and their horizontal flips
    labels: Any
    count: int  # training images (without the flips)
    mean: Any
    std: Any


@dataclass
class Generator:
    """Step 2: the LightningDiT sized to the budget and the inputs that key its training."""

    config: Any  # tokbench.generation.model.DiTConfig
    patch: int
    steps: int
    batch: int
    noise: Any  # tokbench.generation.transport.NoiseSchedule
    rungs: list[tuple[float, int]]  # (fraction of the budget, step) of each ladder rung
    training_inputs: dict[str, Any]


class GeneratorTraining:
    """Step 3: a unit's one training run (resumed from ``partial/`` in the store). The ladder's
    snapshots are taken on the way to the full budget; a rung whose snapshot is gone after the run
    went past it trains the same run again from step 0."""

    def __init__(self, ctx: TaskContext, params: GenerationParams, latents: Latents, generator: Generator):
        self.ctx, self.params, self.latents, self.generator = ctx, params, latents, generator
        self.trainer = None
        self.history: list[dict] = []
        self.log_every = max(1, generator.steps // 20)

    def at(self, step: int):
        """The trainer at or before ``step``."""
        import torch

        from tokbench.generation.model import LightningDiT
        from tokbench.generation.train import DiTTrainer, LatentSet, TrainSettings

        trainer, params, generator, latents = self.trainer, self.params, self.generator, self.latents
        if trainer is not None and trainer.step <= step:
            return trainer
        work_dir = self.ctx.build.work_dir(generator.training_inputs, "generator-training")
        if trainer is not None:  # past a rung whose snapshot is gone: the same run again from step 0
            (work_dir / DiTTrainer.CHECKPOINT).unlink(missing_ok=True)
        torch.manual_seed(params.seed)
        settings = TrainSettings(steps=generator.steps, batch_size=generator.batch, lr=params.lr, ema_decay=params.ema_decay,
                                 class_dropout=params.class_dropout, cosine_loss=params.cosine_loss,
                                 grad_clip=params.grad_clip, seed=params.seed, precision=params.precision,
                                 checkpoint_every=max(1, min(1000, generator.steps // 10)), compile=params.compile,
                                 activation_checkpointing=params.activation_checkpointing,
                                 fused_optimizer=params.fused_optimizer)
        data = LatentSet((latents.views[0] - latents.mean) / latents.std, (latents.views[1] - latents.mean) / latents.std,
                         latents.labels)
        self.trainer = DiTTrainer(LightningDiT(generator.config), data, settings, generator.noise, self.ctx.build.device,
                                  work_dir=work_dir)
        if self.trainer.step > step:
            return self.at(step)
        return self.trainer

    def snapshot(self, out: Path, step: int) -> dict[str, Any]:
        """Train to ``step`` and write the EMA weights there (a ladder rung)."""
        from tokbench.runtime.timing import phase

        trainer = self.at(step)
        with phase("generator training", f"LightningDiT-{self.params.model}/{self.generator.patch} to step {step} of "
                                         f"{self.generator.steps}"):
            self.history.extend(trainer.fit(log_every=self.log_every, until=step))
        trainer.snapshot(out / "checkpoint.pt")
        return {"step": step}

    def full(self, out: Path) -> dict[str, Any]:
        """Train to the full budget and write the EMA checkpoint and the latents' statistics."""
        import torch

        from tokbench.runtime.timing import phase

        trainer = self.at(self.generator.steps)
        with phase("generator training", f"LightningDiT-{self.params.model}/{self.generator.patch}, {self.generator.steps} steps"):
            self.history.extend(trainer.fit(log_every=self.log_every))
        trainer.export_official(out / "checkpoint.pt")
        torch.save({"mean": self.latents.mean, "std": self.latents.std}, out / "latents_stats.pt")
        return {"history": trainer.history, "ranks": trainer.world}


class GenerationTask(UsesFIDWeights, Task):
    protocol_version = "gfid-v2"
    execution_params = frozenset({"compile", "activation_checkpointing", "fused_optimizer"})
    schedule_weight = 5.0  # trains a generator, samples and scores it: about 5 probes' time
    params: GenerationParams

    def key_inputs(self) -> dict[str, Any]:
        inputs = self.fid_key_inputs()
        if self.params.reference_batch is not None:
            from tokbench.hashing import file_identity

            inputs["reference_batch_sha256"] = file_identity(self.params.reference_batch)
        return inputs

    def run(self, ctx: TaskContext) -> TaskOutput:
        """Encode the latents, size the generator to the budget, train it (the ladder's rungs
        sampled and scored on the way, successive halving deciding at each), sample, score."""
        import time

        params = self.params
        spec, patch = self._check_inputs(ctx)
        started = time.time()
        latents = self._encode_latents(ctx, spec)
        generator = self._size_generator(ctx, spec, patch, latents)
        training = GeneratorTraining(ctx, params, latents, generator)
        ladder: list[dict[str, Any]] = []
        points: list = []  # tokbench.ladders.data.Point of each rung so far (successive halving)
        for fraction, rung_steps in generator.rungs:
            snapshot_dir = self._train_to_rung(ctx, training, fraction, rung_steps)
            output = self._evaluate_rung(ctx, latents, generator, snapshot_dir, fraction, rung_steps, started)
            rung = {"fraction": fraction, "steps": rung_steps, "flops": output.details["generator_training_flops"],
                    "gfid": output.metrics.get("gfid")}
            ladder.append(rung)
            if params.ladder_stop is not None:
                stopped = self._successive_halving(ctx, output, fraction, rung, ladder, points, latents, generator,
                                                   snapshot_dir, started)
                if stopped is not None:
                    return stopped
        generator_dir = self._train_generator(ctx, training)
        output = self._evaluate(ctx, latents, generator, generator_dir, generator.steps, params.training_flops, started)
        if ladder:
            output.details["ladder"] = ladder
            if params.ladder_stop is not None:
                output.details["ladder_stop"] = {"stopped": False, "flops_saved": 0.0}
        return output

    # ---- the steps of run() ------------------------------------------------------------------------
    def _check_inputs(self, ctx: TaskContext):
        """The tokenizer's latent shape on the training set and the patch that makes it ``target_tokens``
        tokens; the datasets and batch size checked."""
        params = self.params
        if ctx.train_dataset is None:
            raise TokbenchError("generation trains on a dataset's latents: set the task's 'train_dataset'")
        train, reference = ctx.train_dataset, ctx.dataset
        if train.resolution != reference.resolution:
            raise TokbenchError(
                f"train dataset {ctx.train_dataset_name!r} is {train.resolution}px but the reference {ctx.dataset_name!r} "
                f"is {reference.resolution}px; samples are decoded at the training resolution, so use the same"
            )
        if len(train) < params.batch_size:
            raise TokbenchError(
                f"train dataset {ctx.train_dataset_name!r} has {len(train)} images, fewer than batch_size {params.batch_size}; "
                f"set batch_size to at most {len(train)} (the batch is never shrunk silently)"
            )
        spec = ctx.tokenizer.latent_spec(train.resolution)
        if spec.height != spec.width:
            raise TokbenchError(f"LightningDiT needs square latents; {ctx.tokenizer_name} gives {spec.height}x{spec.width}")
        return spec, patch_for_tokens(ctx.tokenizer_name, spec.channels, spec.height, params.target_tokens, params.token_match)

    def _encode_latents(self, ctx: TaskContext, spec) -> Latents:
        """1. The training set's latents and their horizontal-flip copies, extracted once into the
        store, and the statistics that standardise them."""
        import torch

        from tokbench.understanding.features import FeatureRequest, extract_features

        params = self.params
        table = extract_features(
            ctx.build, ctx.tokenizer, ctx.tokenizer_fingerprint, ctx.train_dataset,
            FeatureRequest(("latent",), latent_pool=spec.height, augmentation="hflip", storage="float32"),
            batch_size=params.extract_batch_size, shard_size=params.shard_size,
            label=f"latents {ctx.train_dataset_name} / {ctx.tokenizer_name}",
        )
        count = len(table.labels) // 2
        views = torch.from_numpy(table.features["latent"]).view(2, count, spec.channels, spec.height, spec.width)
        labels = torch.from_numpy(table.labels[:count])
        mean, std = self._normalization(ctx.tokenizer, views[0])
        return Latents(spec, table, views, labels, count, mean, std)

    def _size_generator(self, ctx: TaskContext, spec, patch: int, latents: Latents) -> Generator:
        """2. The generator's size and patch, its steps from the budget (and each rung's), the noise
        schedule, and the inputs that key its training in the store."""
        from tokbench.generation.flops import steps_for_budget
        from tokbench.generation.model import dit_config
        from tokbench.generation.transport import NoiseSchedule, default_noise_shift
        from tokbench.hashing import state_dict_fingerprint

        params = self.params
        config = dit_config(f"{params.model}/{patch}", spec.channels, input_size=spec.height,
                            num_classes=ctx.train_dataset.num_classes, class_dropout_prob=params.class_dropout)
        batch = params.batch_size
        steps = params.steps if params.steps is not None else steps_for_budget(config, params.training_flops, batch)
        shifts = {
            "train": default_noise_shift(*spec.shape) if params.train_shift == "auto" else float(params.train_shift),
            "sample": default_noise_shift(*spec.shape) if params.sample_shift == "auto" else float(params.sample_shift),
        }
        noise = NoiseSchedule(shifts["train"], params.train_sigma, shifts["sample"])
        rungs = [(fraction, steps_for_budget(config, fraction * params.training_flops, batch)) for fraction in params.ladder]
        training_inputs = {"latents": latents.table.key, "config": config.to_dict(), "steps": steps, "batch": batch,
                           "normalization": [params.latent_normalization,
                                             state_dict_fingerprint({"mean": latents.mean, "std": latents.std})],
                           "noise": [noise.train_shift, noise.train_sigma],
                           "recipe": params.model_dump(include={"lr", "ema_decay", "class_dropout", "cosine_loss", "grad_clip",
                                                                "seed", "precision"}), "version": 1}
        if rungs:  # a run trained without snapshots cannot give them: the ladder trains its own
            training_inputs["snapshots"] = [rung_steps for _, rung_steps in rungs]
        return Generator(config, patch, steps, batch, noise, rungs, training_inputs)

    def _train_to_rung(self, ctx: TaskContext, training: GeneratorTraining, fraction: float, rung_steps: int) -> Path:
        """3a. The EMA weights at a rung's step, from the unit's one training run (docs/ladders.md)."""
        generator = training.generator
        return ctx.build.cached({**generator.training_inputs, "snapshot_step": rung_steps}, "generator-snapshot",
                                lambda out: training.snapshot(out, rung_steps),
                                label=f"LightningDiT-{self.params.model}/{generator.patch} on {ctx.tokenizer_name} latents at "
                                      f"step {rung_steps} (rung {fraction:g})", collective=True)

    def _train_generator(self, ctx: TaskContext, training: GeneratorTraining) -> Path:
        """3. The generator trained to the full budget (resumable); its EMA checkpoint kept in the store."""
        generator = training.generator
        return ctx.build.cached(generator.training_inputs, "generator-checkpoint", training.full,
                                label=f"LightningDiT-{self.params.model}/{generator.patch} on {ctx.tokenizer_name} latents",
                                collective=True)

    def _evaluate_rung(self, ctx, latents, generator, snapshot_dir: Path, fraction: float, rung_steps: int,
                       started: float) -> TaskOutput:
        """A rung's result (sampled and scored as the full one) published at once as its own record."""
        params = self.params
        rung_budget = fraction * params.training_flops
        output = self._evaluate(ctx, latents, generator, snapshot_dir, rung_steps, rung_budget, started, " (rung)")
        output.details.update({"ladder_fraction": fraction, "rung_flops": output.details["generator_training_flops"],
                               "full_training_flops": params.training_flops})
        if ctx.publish is not None:  # its own record, with the rung's budget in its identity
            ctx.publish(f"rung-{fraction:g}", output, {"training_flops": rung_budget, "ladder_rung": fraction})
        return output

    def _successive_halving(self, ctx, output, fraction, rung, ladder, points, latents, generator, snapshot_dir,
                            started) -> TaskOutput | None:
        """``ladder_stop``: whether the generator stops at this rung (recorded in ``rung``); the
        stopped unit's result when it does."""
        from tokbench.generation.flops import training_flops_per_image
        from tokbench.ladders.data import Point
        from tokbench.ladders.halving import decide

        params = self.params
        points.append(Point(output.details["generator_training_flops"], output.metrics.get("gfid") or 0.0,
                            (output.details.get("evidence") or {}).get("gfid"), fraction))
        decision = decide(ctx.build.store, ctx.tokenizer_name, points, self.key_params(), ctx.dataset.fingerprint(),
                          params.ladder_stop.probability, params.training_flops)
        rung["decision"] = decision.to_dict()
        if not decision.stop:
            return None
        spent = float(training_flops_per_image(generator.config) * generator.batch * rung["steps"])
        full = float(training_flops_per_image(generator.config) * generator.batch * generator.steps)
        reason = (f"not trained past rung {fraction:g} ({rung['steps']} of {generator.steps} steps): {decision.reason} "
                  f"(successive halving, ladder_stop.probability {params.ladder_stop.probability:g})")
        return TaskOutput(
            metrics={name: None for name in params.metrics},
            unavailable={name: reason for name in params.metrics},
            evaluator=output.evaluator,
            artifacts=[latents.table.key, snapshot_dir.name],
            details={"num_images": params.num_samples, "ladder": ladder,
                     "ladder_stop": {"stopped": True, "rung": fraction, "step": rung["steps"], "reason": reason,
                                     **decision.to_dict(), "flops_spent": spent, "flops_saved": full - spent},
                     "generator_training_flops": spent, "training_flops_budget": params.training_flops,
                     "steps": rung["steps"], "batch_size": generator.batch, "seconds": time_since(started)},
        )

    def _evaluate(self, ctx, latents, generator, generator_dir: Path, steps_done: int, budget: float | None,
                  started: float, rung: str = "") -> TaskOutput:
        """4-5. Sample ``generator_dir``'s EMA weights, decode, score: one result (a ladder ``rung``'s
        phases are timed apart: "sampling (rung)", "scoring (rung)")."""
        from tokbench.runtime.timing import phase

        samples_dir = self._generate_samples(ctx, latents, generator, generator_dir, rung)
        with phase(f"scoring{rung}"):
            metrics, unavailable, evaluator, evidence = self._score(ctx, samples_dir)
        return self._result(ctx, latents, generator, generator_dir, samples_dir, steps_done, budget, started,
                            metrics, unavailable, evaluator, evidence)

    def _generate_samples(self, ctx, latents, generator, generator_dir: Path, rung: str = "") -> Path:
        """4. Samples of the generator, decoded and stored in the ADM layout with their counted evaluations."""
        import torch

        from tokbench.runtime.timing import phase

        params, noise = self.params, generator.noise
        sampling_inputs = {"generator": generator_dir.name, "tokenizer": ctx.tokenizer_fingerprint, "steps": params.sample_steps,
                           "sampler": params.sampler, "shift": noise.sample_shift, "cfg": [params.cfg_scale, params.cfg_interval_start,
                           params.cfg_channels], "n": params.num_samples, "labels": params.labels, "seed": params.seed,
                           "precision": params.precision if torch.device(ctx.build.device).type == "cuda" else "fp32",
                           # 2: counted evaluations stored; heun's last step is Euler; no unconditional half outside the interval
                           "version": 2}
        if params.sampler == "adaptive":  # its step control reads the whole batch's error
            sampling_inputs["batch"] = params.sample_batch_size

        def sample(out) -> None:
            with phase(f"sampling{rung}", f"{params.num_samples} samples, {params.sample_steps} steps"):
                self._sample(ctx, generator_dir, noise, latents.mean, latents.std, ctx.train_dataset.num_classes, out)

        return ctx.build.cached(sampling_inputs, "generated-samples", sample,
                                label=f"{params.num_samples} samples of {ctx.tokenizer_name}'s generator")

    def _result(self, ctx, latents, generator, generator_dir, samples_dir, steps_done, budget, started,
                metrics, unavailable, evaluator, evidence) -> TaskOutput:
        """5. The scores with the cost of each generated image (sampling + the tokenizer's decoding)
        and the training actually spent."""
        from tokbench.generation.flops import forward_flops, sampling_flops_per_image, training_flops_per_image
        from tokbench.tokenizers.cost import measure_cost

        params, config, noise, spec = self.params, generator.config, generator.noise, latents.spec
        counted = json.loads((samples_dir / SAMPLING_FILE).read_text())
        resolution = ctx.train_dataset.resolution
        cost = measure_cost(ctx.tokenizer, resolution)
        sampling_flops = sampling_flops_per_image(config, counted["nfe"])
        training_flops = float(training_flops_per_image(config) * generator.batch * steps_done)
        metrics["total_gflops_per_image"] = (sampling_flops + cost.decode_flops_per_image) / 1e9
        metrics["nfe"] = counted["nfe"]
        if budget is not None:
            metrics["training_budget_used"] = training_flops / budget
        details_extra: dict[str, Any] = {"evidence": evidence}
        if config.tokens != params.target_tokens:
            details_extra["footnote"] = (f"{ctx.tokenizer_name}: {config.tokens} tokens, not the target {params.target_tokens} "
                                         f"(token_match: nearest; its latent grid is {spec.height}x{spec.width})")
        seconds = time_since(started)
        return TaskOutput(
            metrics=metrics,
            unavailable=unavailable,
            evaluator=evaluator,  # per-tokenizer settings (patch, noise shift) are the method, in details
            artifacts=[latents.table.key, generator_dir.name, samples_dir.name],
            details={
                "num_images": params.num_samples,
                "noise": {"train_shift": noise.train_shift, "train_sigma": noise.train_sigma,
                          "sample_shift": noise.sample_shift, "lightningdit": noise.lightningdit},
                "sampling": {"sampler": params.sampler, "steps": params.sample_steps, "cfg_scale": params.cfg_scale,
                             "cfg_interval_start": params.cfg_interval_start, "cfg_channels": params.cfg_channels,
                             **counted},
                "generator": {"model": f"LightningDiT-{params.model}/{generator.patch}", **config.to_dict()},
                "tokens": config.tokens, "target_tokens": params.target_tokens, "token_match": params.token_match,
                "forward_flops": forward_flops(config),
                "generator_training_flops": training_flops,
                "training_flops_budget": budget,
                "training_flops_counts": TRAINING_FLOPS_COUNTS,
                "steps": steps_done, "batch_size": generator.batch,
                "epochs": steps_done * generator.batch / latents.count,
                "sampling_flops_per_image": sampling_flops,
                "decode_flops_per_image": cost.decode_flops_per_image,
                "total_flops_per_image": sampling_flops + cost.decode_flops_per_image,
                "tokenizer_cost": cost.to_dict(),
                "train_images": latents.count,
                "seconds": seconds,
                "gpu_hours": seconds / 3600 if str(ctx.build.device).startswith("cuda") else 0.0,
                **details_extra,
            },
        )

    # ---- pieces -------------------------------------------------------------------------------------
    def _normalization(self, tokenizer, latents):
        import torch

        from tokbench.generation.train import latent_statistics

        kind = self.params.latent_normalization
        if kind == "per-channel":
            return latent_statistics(latents)
        if kind == "tokenizer":
            stats = getattr(tokenizer, "latent_normalization", lambda: None)()
            if stats is None:
                raise TokbenchError("latent_normalization: tokenizer, but this tokenizer has no latent statistics; "
                                    "use per-channel (computed from the training latents)")
            return stats
        channels = latents.shape[1]
        return torch.zeros(1, channels, 1, 1), torch.ones(1, channels, 1, 1)

    def _sample(self, ctx, generator_dir, noise, mean, std, num_classes: int, out) -> None:
        import contextlib

        import numpy as np
        import torch

        from tokbench.generation.checkpoint import load_lightningdit
        from tokbench.generation.transport import sample_latents
        from tokbench.metrics.image_quality import to_uint8

        params, device = self.params, torch.device(ctx.build.device)
        model = load_lightningdit(generator_dir / "checkpoint.pt").to(device)
        forward = torch.compile(model) if params.compile else model
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and params.precision == "bf16"
                    else contextlib.nullcontext())
        generator = torch.Generator().manual_seed(params.seed + 1)
        if params.labels == "balanced":
            labels = torch.arange(params.num_samples) % num_classes
            labels = labels[torch.randperm(params.num_samples, generator=generator)]
        else:
            labels = torch.randint(0, num_classes, (params.num_samples,), generator=generator)
        config = model.config
        grid = noise.grid(params.sample_steps)
        images, counts = [], []
        for start in ctx.build.track(range(0, params.num_samples, params.sample_batch_size), desc=f"sample {ctx.tokenizer_name}"):
            y = labels[start : start + params.sample_batch_size].to(device)
            x = torch.randn(len(y), config.in_channels, config.input_size, config.input_size, generator=generator).to(device)
            with torch.no_grad():
                with autocast:  # the network in bf16; the ODE state stays fp32
                    z, count = sample_latents(forward, x, y, config.num_classes, grid, params.sampler, params.cfg_scale,
                                              params.cfg_interval_start, params.cfg_channels)
                counts.append((len(y), count))
                z = z.float()
                decoded = ctx.tokenizer.decode((z * std.to(device) + mean.to(device)).to(ctx.tokenizer.dtype)).float()
            images.append(to_uint8(decoded, rounding="round").permute(0, 2, 3, 1).cpu().numpy())
        from tokbench.report.plots import SAMPLES_FILE

        np.savez(out / SAMPLES_FILE, arr_0=np.concatenate(images), labels=labels.numpy())
        (out / SAMPLING_FILE).write_text(json.dumps(nfe_summary(counts), indent=1))

    def _score(self, ctx, samples_dir):
        import numpy as np
        import torch

        from tokbench.metrics.frechet import feature_statistics, frechet_distance
        from tokbench.metrics.inception import load_fid_extractor
        from tokbench.metrics.perceptual import MetricUnavailable
        from tokbench.report.plots import SAMPLES_FILE
        from tokbench.tasks.fid_reference import reference_features

        params = self.params
        extractor = load_fid_extractor(str(self.fid_weights()), device=ctx.build.device)
        reference_key = None
        if params.reference_batch is not None:
            reference, reference_stats, reference_name = self._reference_batch(ctx, extractor)
        else:
            reference, reference_key = reference_features(ctx, extractor, params.num_reference, params.extract_batch_size)
            reference_stats, reference_name = feature_statistics(reference), ctx.dataset_name
        with np.load(samples_dir / SAMPLES_FILE) as data:
            samples = torch.from_numpy(data["arr_0"]).permute(0, 3, 1, 2).contiguous()
        wanted = set(params.metrics)
        with_logits = "inception_score" in wanted and extractor.has_logits
        passes = [extractor.features_and_logits(chunk, logits=with_logits) for chunk in samples.split(params.extract_batch_size)]
        features = torch.cat([f for f, _ in passes]).numpy()
        metrics: dict[str, float | None] = {}
        unavailable: dict[str, str] = {}
        evidence, scored = self._evidence(ctx, samples_dir, extractor, features, reference, reference_key, wanted)
        if "gfid" in wanted:
            metrics["gfid"] = frechet_distance(*reference_stats, *feature_statistics(features))
        if "kid" in wanted:
            from tokbench.stats import kid_estimate

            metrics["kid"] = kid_estimate(features, reference)
        for name in ("precision", "recall"):  # the means of the stored per-sample manifold hits
            if name in wanted:
                metrics[name] = float(scored[name].mean())
        if with_logits:
            from tokbench.metrics.inception import IS_SHUFFLE_SEED, IS_SPLITS, inception_score

            metrics["inception_score"], metrics["inception_score_std"] = inception_score(torch.cat([l for _, l in passes]))
        elif "inception_score" in wanted:
            try:
                extractor.logits(samples[:1])
            except MetricUnavailable as reason:
                metrics["inception_score"] = None
                unavailable["inception_score"] = str(reason)
        evaluator = {"protocol": self.protocol_version, "fid": extractor.identity, "reference": reference_name,
                     "num_reference": int(len(reference)), "precision_recall_k": 3,
                     "precision_recall": "k-NN manifold hits on Inception pool3 (tokbench.metrics.manifold; equal to torch-fidelity's prc_features_to_metric)",
                     "rounding": "round"}
        if with_logits:
            evaluator["inception_score"] = {"splits": IS_SPLITS, "shuffle_seed": IS_SHUFFLE_SEED, "logits": "logits_unbiased"}
        evaluator["kid"] = {"estimator": "unbiased MMD^2 on all images (no subsets)", "kernel": "(x.y/d + 1)^3"}
        return metrics, unavailable, evaluator, evidence

    def _evidence(self, ctx, samples_dir, extractor, features, reference, reference_key, wanted):
        """Store the generated samples' Inception features and per-sample precision/recall hits
        beside their samples' key, and say where each metric's per-item data lives. Samples of
        different rows are different draws: every test between rows is unpaired."""
        import numpy as np

        from tokbench.metrics.manifold import manifold_hits
        from tokbench.verdicts.evidence import distance, per_item, pointer

        scored: dict[str, np.ndarray] = {}

        def produce(out) -> None:
            np.save(out / "features.npy", np.asarray(features, dtype=np.float64))
            if {"precision", "recall"} & wanted:
                precision, recall = manifold_hits(reference, features, k=3)
                np.save(out / "precision.npy", precision)
                np.save(out / "recall.npy", recall)

        directory = ctx.build.cached({"samples": samples_dir.name, "evaluator": extractor.identity,
                                      "reference": reference_key or "reference-batch", "wanted": sorted(wanted)},
                                     "generated-features", produce,
                                     label=f"Inception features of {ctx.tokenizer_name}'s samples")
        evidence: dict = {}
        for name in ("precision", "recall"):
            if name in wanted:
                scored[name] = np.load(directory / f"{name}.npy")
        if "precision" in wanted:  # a mean over generated samples against the fixed real manifold
            evidence["precision"] = per_item("proportion", pointer(directory.name, "precision.npy"), paired=False)
        if reference_key is not None:  # an ADM reference batch keeps no features in the store: no interval
            from tokbench.tasks.fid_reference import reference_pointer

            reference_ptr = reference_pointer(reference_key, len(reference))
            # recall depends on the whole generated set's manifold: resampled and rebuilt per replicate
            for name, kind in (("gfid", "frechet"), ("kid", "kid"), ("recall", "recall")):
                if name in wanted:
                    evidence[name] = distance(kind, pointer(directory.name, "features.npy"), reference_ptr, paired=False)
        return evidence, scored


    def _reference_batch(self, ctx, extractor):
        """(features of its arr_0 images, (mu, sigma), name) of an ADM reference batch. ADM's
        ``mu``/``sigma`` come from TensorFlow's Inception; tokbench's extractor is the PyTorch port
        of the same network, so gFID against them is close to, not identical with, ADM's numbers."""
        import numpy as np
        import torch

        params = self.params
        path = Path(params.reference_batch).expanduser()
        with np.load(path) as data:
            if "arr_0" not in data.files:
                raise TokbenchError(f"reference_batch {str(path)!r} has no `arr_0` images (found {data.files}); "
                                    "expected an ADM evaluator reference batch")
            images = data["arr_0"][: params.num_reference]
            stats = (data["mu"], data["sigma"]) if {"mu", "sigma"} <= set(data.files) else None
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise TokbenchError(f"reference_batch {str(path)!r}: `arr_0` must be uint8 (N, H, W, 3), found "
                                f"{images.dtype} {images.shape}")
        tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
        features = torch.cat([extractor(chunk.to(ctx.build.device)).cpu() for chunk in tensor.split(params.extract_batch_size)])
        features = features.numpy().astype(np.float64)
        from tokbench.metrics.frechet import feature_statistics

        return features, stats if stats is not None else feature_statistics(features), f"{path.name} (ADM reference batch)"


def nfe_summary(counts: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """The counted evaluations of every (batch size, per-image counts) batch: means per image over all
    samples, and the smallest and largest batch's ``nfe`` (they differ for the adaptive sampler only)."""
    total = sum(size for size, _ in counts)
    summary = {name: sum(size * count[name] for size, count in counts) / total for name in counts[0][1]}
    return {**summary, "nfe_min": min(count["nfe"] for _, count in counts), "nfe_max": max(count["nfe"] for _, count in counts)}
