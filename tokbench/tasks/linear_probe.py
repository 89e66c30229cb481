"""Linear probing of frozen features: one pass trains the whole head grid.

Protocol ``linear-probe-v1``:
1. Both splits are seen through the protocol's crop (``dataset`` = as configured) and their
   features extracted once into the store (sharded, resumable; keyed by tokenizer, dataset
   view, feature names / latent pooling, precision and augmentation).
2. ``minival_per_class`` training images per class (a seeded choice) are held out.
3. Every head (feature variant x learning rate x seed) trains on the rest in one pass
   (``tokbench.understanding.heads``).
4. ``top1`` / ``top5``: the validation accuracy of the head chosen on the minival (mean
   over seeds; ``top1_std`` across seeds). ``top1_best_on_val`` is the published habit
   (DINOv2, VTP: the best head picked on the validation set itself), optimistic and kept
   in its own column so the two are never confused.
"""

from __future__ import annotations

from typing import Any

from tokbench.errors import TokbenchError
from tokbench.tasks.base import Task, TaskContext, TaskOutput
from tokbench.tasks.understanding_params import LinearProbeParams, ProbeRecipe

MINIVAL_SEED = 0


class LinearProbeTask(Task):
    protocol_version = "linear-probe-v1"
    params: LinearProbeParams

    def run(self, ctx: TaskContext) -> TaskOutput:
        import numpy as np
        import torch

        from tokbench.understanding.features import FeatureRequest, extract_features
        from tokbench.understanding.heads import HeadGridSpec, epochs_to_iterations, train_head_grid
        from tokbench.understanding.zero_shot import majority_rate
        from tokbench.verdicts.evidence import save_correctness

        params, recipe = self.params, self.params.recipe()
        if ctx.train_dataset is None:
            raise TokbenchError("linear probing needs a training dataset: set the task's 'train_dataset'")
        train_data, val_data, resolution = self._views(ctx, recipe)
        if list(train_data.classnames) != list(val_data.classnames):
            raise TokbenchError(
                f"train dataset {ctx.train_dataset_name!r} and validation dataset {ctx.dataset_name!r} have different "
                f"classes ({train_data.num_classes} vs {val_data.num_classes}); a probe needs the same label space"
            )
        names = recipe.feature_names()
        request = dict(names=names, latent_pool=recipe.latent_pool, precision=params.precision)
        common = dict(batch_size=params.extract_batch_size, shard_size=params.shard_size)
        train = extract_features(
            ctx.build, ctx.tokenizer, ctx.tokenizer_fingerprint, train_data,
            FeatureRequest(**request, augmentation=params.augmentation), count=params.num_train_images,
            label=f"probe features {ctx.train_dataset_name} / {ctx.tokenizer_name}", **common,
        )
        val = extract_features(
            ctx.build, ctx.tokenizer, ctx.tokenizer_fingerprint, val_data, FeatureRequest(**request),
            count=params.num_val_images, label=f"probe features {ctx.dataset_name} / {ctx.tokenizer_name}", **common,
        )

        x_all, columns = train.matrix(names)
        x_val, _ = val.matrix(names)
        minival_images = _minival(train.indices, train.labels, params.minival_per_class)
        held_out = np.isin(train.indices, minival_images)
        first_view = np.arange(len(train.indices)) < len(train.indices) // (2 if params.augmentation == "hflip" else 1)
        fit_rows, minival_rows = ~held_out, held_out & first_view
        if not fit_rows.any():
            raise TokbenchError(
                f"no training images left after holding out {params.minival_per_class} per class for model selection; "
                "use more training images or a smaller minival_per_class"
            )
        num_classes = val_data.num_classes
        fit_count = int(fit_rows.sum())
        batch = min(recipe.batch_size, fit_count)
        iterations = recipe.iterations or epochs_to_iterations(recipe.epochs, fit_count, batch)
        warmup = min(iterations, epochs_to_iterations(recipe.warmup_epochs, fit_count, batch)) if recipe.warmup_epochs else 0
        spec = HeadGridSpec(
            variants={v: np.concatenate([columns[n] for n in ProbeRecipe.variant_features(v)]) for v in recipe.variants},
            learning_rates=recipe.learning_rates,
            seeds=tuple(params.seeds),
            iterations=iterations,
            batch_size=batch,
            warmup_iterations=warmup,
            optimizer=recipe.optimizer,
            weight_decay=recipe.weight_decay,
            batchnorm=recipe.batchnorm,
        )
        device = ctx.build.device
        from tokbench.runtime.timing import phase

        with phase("probe training", f"{len(spec.heads)} heads x {len(spec.seeds)} seed(s), {iterations} iterations"):
            grid = train_head_grid(
                torch.from_numpy(x_all[fit_rows]), torch.from_numpy(train.labels[fit_rows]), num_classes, spec, device
            )
        val_labels = torch.from_numpy(val.labels)
        on_val = grid.accuracy(torch.from_numpy(x_val), val_labels)
        on_minival = grid.accuracy(torch.from_numpy(x_all[minival_rows]), torch.from_numpy(train.labels[minival_rows]))

        chosen = on_minival[1].argmax(dim=1)  # (S,): first best head of each seed
        seeds = torch.arange(len(params.seeds))
        top1 = on_val[1][seeds, chosen]
        top5 = on_val[5][seeds, chosen]
        metrics: dict[str, float | None] = {
            "top1": float(top1.mean()),
            "top5": float(top5.mean()),
            "minival_top1": float(on_minival[1][seeds, chosen].mean()),
            "top1_best_on_val": float(on_val[1].max(dim=1).values.mean()),
        }
        hits = grid.example_hits(torch.from_numpy(x_val), val_labels, chosen)
        # per example: the fraction of probe seeds whose chosen head got it right (0/1 with one seed)
        evidence = save_correctness(ctx.build, {"probe": ctx.unit_key, "features": [train.key, val.key]},
                                    {f"top{k}": v.float().mean(dim=0).numpy() for k, v in hits.items()},
                                    f"probe correctness {ctx.dataset_name} / {ctx.tokenizer_name}")
        if len(seeds) > 1:  # the spread over probe seeds; with one seed there is none to report
            metrics["top1_std"] = float(top1.std(unbiased=True))
        heads = [
            {"seed": seed, "variant": variant, "lr": lr, "val_top1": float(on_val[1][s, h]),
             "minival_top1": float(on_minival[1][s, h]), "train_loss": float(grid.final_loss[s, h])}
            for s, seed in enumerate(params.seeds) for h, (variant, lr) in enumerate(spec.heads)
        ]
        evaluator: dict[str, Any] = {
            "protocol": recipe.protocol,
            "recipe": {**recipe.__dict__, "iterations": iterations, "batch_size": batch, "warmup_iterations": warmup},
            "crop": recipe.crop,
            "resolution": resolution,
            "features": list(names),
            "selection": f"best minival top-1 ({params.minival_per_class}/class held out of the training set, seed {MINIVAL_SEED})",
            "precision": params.precision,
            "augmentation": params.augmentation,
            # features are stored as float16 where they fit (float32 otherwise): part of the measurement
            "feature_storage": FeatureRequest.storage,
        }
        return TaskOutput(
            metrics=metrics,
            evaluator=evaluator,
            artifacts=[train.key, val.key],
            details={
                "num_images": int(len(val.labels)),
                "num_train_images": fit_count,
                "num_minival_images": int(minival_rows.sum()),
                "num_classes": num_classes,
                "chance_top1": 1.0 / num_classes,
                "majority_top1": majority_rate(val.labels),
                "feature_dim": int(x_all.shape[1]),
                "heads_per_seed": len(spec.heads),
                "chosen": [{"seed": seed, "variant": spec.heads[int(h)][0], "lr": spec.heads[int(h)][1]}
                           for seed, h in zip(params.seeds, chosen)],
                "head_training_seconds": grid.seconds,
                "features_extracted_now": {"train": train.extracted_now, "val": val.extracted_now},
                "heads": heads,
                "evidence": evidence,
            },
        )

    def _views(self, ctx: TaskContext, recipe: ProbeRecipe):
        if recipe.crop == "dataset":
            return ctx.train_dataset, ctx.dataset, ctx.dataset.resolution
        resolution = self.params.resolution or ctx.tokenizer.native_resolution
        return ctx.train_dataset.view(recipe.crop, resolution), ctx.dataset.view(recipe.crop, resolution), resolution


def _minival(indices, labels, per_class: int):
    """Dataset indices of ``per_class`` training images per class, a seeded choice."""
    import numpy as np

    rng = np.random.default_rng(MINIVAL_SEED)
    unique_indices, first = np.unique(indices, return_index=True)
    image_labels = labels[first]
    chosen = []
    for label in np.unique(image_labels):
        members = unique_indices[image_labels == label]
        chosen.append(rng.permutation(members)[: min(per_class, len(members) - 1)])  # keep one to train on
    return np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
