"""Zero-shot classification: top-1 / top-5 from the tokenizer's text tower.

Protocol ``zero-shot-v1``: the dataset is seen through the protocol's crop at R
(``vtp``: squash, ``openclip``: shorter side + centre crop); image embeddings are the
tokenizer's ``clip`` image feature (cached in the store like any frozen feature); the
classifier is built from the dataset's class names and prompt templates (cached by
tokenizer and prompts); logits are 100 x cosine.
"""

from __future__ import annotations

from typing import Any

from tokbench.tasks.base import Task, TaskContext, TaskOutput
from tokbench.tasks.understanding_params import ZERO_SHOT_PROTOCOLS, ZeroShotParams

#: the image feature name of the embedding that lives in the text tower's space
CLIP_FEATURE = "clip"


class ZeroShotTask(Task):
    protocol_version = "zero-shot-v1"
    params: ZeroShotParams

    def run(self, ctx: TaskContext) -> TaskOutput:
        import numpy as np
        import torch
        import torch.nn.functional as F

        from tokbench.understanding.features import FeatureRequest, extract_features
        from tokbench.understanding.prompts import resolve_templates
        from tokbench.understanding.zero_shot import LOGIT_SCALE, build_classifier, majority_rate, topk_hits
        from tokbench.verdicts.evidence import save_correctness

        params = self.params
        tokenizer = ctx.tokenizer
        resolution = params.resolution or tokenizer.native_resolution
        dataset = ctx.dataset.view(params.crop, resolution)
        table = extract_features(
            ctx.build, tokenizer, ctx.tokenizer_fingerprint, dataset,
            FeatureRequest((CLIP_FEATURE,), precision=params.precision),
            count=params.num_images, batch_size=params.batch_size, shard_size=params.shard_size,
            label=f"zero-shot image embeddings {ctx.dataset_name} / {ctx.tokenizer_name}",
        )
        templates = resolve_templates(params.templates, dataset.zero_shot_templates())
        classnames = list(dataset.classnames)
        classifier_inputs = {"tokenizer": ctx.tokenizer_fingerprint, "classnames": classnames, "templates": list(templates)}

        def produce(out):
            weights = build_classifier(tokenizer, classnames, templates, params.classes_per_batch)
            np.save(out / "classifier.npy", weights.cpu().numpy())

        classifier_dir = ctx.build.cached(classifier_inputs, "zero-shot-classifier", produce,
                                          label=f"zero-shot classifier {ctx.tokenizer_name} ({len(classnames)} classes)")
        weights = torch.from_numpy(np.load(classifier_dir / "classifier.npy"))
        images = F.normalize(torch.from_numpy(table.features[CLIP_FEATURE]), dim=-1)
        logits = LOGIT_SCALE * images @ weights
        hits = topk_hits(logits, torch.from_numpy(table.labels), (1, 5))
        accuracy = {k: float(v.float().mean()) for k, v in hits.items()}
        evidence = save_correctness(ctx.build, {"zero-shot": classifier_inputs, "features": table.key},
                                    {f"top{k}": v.numpy() for k, v in hits.items()},
                                    f"zero-shot correctness {ctx.dataset_name} / {ctx.tokenizer_name}")
        evaluator: dict[str, Any] = {
            "protocol": params.protocol,
            "preprocessing": ZERO_SHOT_PROTOCOLS[params.protocol][1],
            "crop": params.crop,
            "resolution": resolution,
            "normalisation": "the tokenizer's own",
            "templates": params.templates if isinstance(params.templates, str) else "custom",
            "num_templates": len(templates),
            "logit_scale": LOGIT_SCALE,
            "precision": params.precision,
            # features are stored as float16 where they fit (float32 otherwise): part of the measurement
            "feature_storage": FeatureRequest.storage,
        }
        return TaskOutput(
            metrics={"top1": accuracy[1], "top5": accuracy[5]},
            evaluator=evaluator,
            artifacts=[table.key, classifier_dir.name],
            details={
                "num_images": int(len(table.labels)),
                "num_classes": len(classnames),
                "chance_top1": 1.0 / len(classnames),
                "majority_top1": majority_rate(table.labels),
                "features_extracted_now": table.extracted_now,
                "evidence": evidence,
            },
        )
