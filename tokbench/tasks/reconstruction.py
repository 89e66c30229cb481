"""Reconstruction: rFID, KID, PSNR, SSIM and LPIPS of a tokenizer's reconstructions.

Protocol ``rfid-v1``: the reference set is exactly the uint8 images fed to the
tokenizer (the dataset's crop and resolution); reconstructions are quantised
to uint8 once (``rounding``); both go through the same FID Inception
(torch-fidelity ``inception-v3-compat`` with real weights from a local file);
statistics are float64. Reference features are cached by (dataset, images,
evaluator) and shared by every tokenizer; reconstruction features and
per-image scores are cached by tokenizer fingerprint. Both are sharded, so an
interrupted evaluation resumes at the first missing shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokbench.tasks.base import Task, TaskContext, TaskOutput
from tokbench.tasks.fid_reference import UsesFIDWeights
from tokbench.tasks.reconstruction_params import ReconstructionParams


PREVIEW_IMAGES = 8


class ReconstructionTask(UsesFIDWeights, Task):
    protocol_version = "rfid-v1"
    params: ReconstructionParams

    @property
    def wants_fid(self) -> bool:
        return bool({"rfid", "kid"} & set(self.params.metrics))

    def key_inputs(self) -> dict[str, Any]:
        return self.fid_key_inputs() if self.wants_fid else {}

    # ---- run -------------------------------------------------------------------
    def run(self, ctx: TaskContext) -> TaskOutput:
        import numpy as np

        params = self.params
        dataset = ctx.dataset
        count = min(params.num_images or len(dataset), len(dataset))
        indices = list(range(count))
        shards = [indices[i : i + params.shard_size] for i in range(0, count, params.shard_size)]
        metrics = set(params.metrics)
        unavailable: dict[str, str] = {}
        evaluator: dict[str, Any] = {"protocol": self.protocol_version, "rounding": params.rounding}
        if "ssim" in metrics:
            evaluator["ssim"] = {"window": 11, "sigma": 1.5, "k1": 0.01, "k2": 0.03, "border": "reflect", "data_range": 1.0}
        if "psnr" in metrics:
            evaluator["psnr"] = {"peak": 255, "on": "uint8", "identical_images_counted_as_db": 100.0}
        artifacts: list[str] = []

        extractor = None
        if self.wants_fid:
            from tokbench.metrics.inception import load_fid_extractor

            extractor = load_fid_extractor(str(self.fid_weights()), device=ctx.build.device)
            evaluator["fid"] = extractor.identity
        lpips_fn = None
        if "lpips" in metrics:
            from tokbench.metrics.perceptual import MetricUnavailable, load_lpips

            try:
                lpips_fn = load_lpips(params.lpips_vgg_weights)
                lpips_fn = lpips_fn.to(ctx.build.device) if hasattr(lpips_fn, "to") else lpips_fn
                evaluator["lpips"] = getattr(lpips_fn, "identity", {"net": "vgg", "version": "0.1"})
            except MetricUnavailable as reason:
                unavailable["lpips"] = str(reason)

        store = ctx.build.store
        evaluator_id = evaluator.get("fid", {}).get("weights_sha256")
        reference_feats = reference_key = None
        if extractor is not None:
            from tokbench.tasks.fid_reference import reference_features

            reference_feats, reference_key = reference_features(ctx, extractor, count, params.batch_size)
            artifacts.append(reference_key)

        recon = store.sharded(
            key=_key({"reconstruction": ctx.tokenizer_fingerprint, "dataset": dataset.fingerprint(), "count": count,
                      "shard": params.shard_size, "evaluator": evaluator_id, "rounding": params.rounding,
                      "lpips": "lpips" in evaluator, "protocol": self.protocol_version}),
            kind="reconstruction-scores",
            num_shards=len(shards),
            meta={"label": f"reconstructions of {ctx.dataset_name} by {ctx.tokenizer_name}"},
        )
        from tokbench.runtime.timing import phase

        with phase("encoding", f"reconstructions of {ctx.dataset_name} by {ctx.tokenizer_name}, per-image scores"):
            for index in ctx.build.track(recon.todo(), desc=f"reconstruct {ctx.tokenizer_name}"):
                recon.write_shard(index, lambda out, ids=shards[index]: self._recon_shard(ctx, extractor, lpips_fn, ids, out))
        artifacts.append(recon.finalize().name)

        def gather(sharded, name: str):
            return np.concatenate([np.load(sharded.shard_dir(i) / f"{name}.npy") for i in range(len(shards))])

        results: dict[str, float | None] = {}
        details_extra: dict[str, Any] = {"evidence": self._evidence(recon.key, reference_key if extractor is not None else None,
                                                                    len(shards), count, metrics, lpips_fn is not None)}
        if "psnr" in metrics:
            import torch

            from tokbench.metrics.image_quality import summarize_psnr

            summary = summarize_psnr(torch.from_numpy(gather(recon, "psnr")))
            results["psnr"] = summary.mean_db
            details_extra["psnr_identical_images"] = summary.n_identical
        if "ssim" in metrics:
            results["ssim"] = float(gather(recon, "ssim").mean())
        if "lpips" in metrics:
            results["lpips"] = float(gather(recon, "lpips").mean()) if lpips_fn is not None else None
        if extractor is not None:
            from tokbench.metrics.frechet import feature_statistics, frechet_distance

            ref_features, rec_features = reference_feats, gather(recon, "features")
            if "rfid" in metrics:
                results["rfid"] = frechet_distance(*feature_statistics(ref_features), *feature_statistics(rec_features))
            if "kid" in metrics:  # unbiased at any N; its interval comes from the bootstrap (tokbench.verdicts)
                from tokbench.stats import kid_estimate

                results["kid"] = kid_estimate(rec_features, ref_features)
                evaluator["kid"] = {"estimator": "unbiased MMD^2 on all images (no subsets)", "kernel": "(x.y/d + 1)^3"}
        # the tokenizer's own cost per image at this resolution (FLOPs comparable; seconds: this device only)
        from tokbench.tokenizers.cost import measure_cost

        cost = measure_cost(ctx.tokenizer, dataset.resolution)
        results["encode_gflops"] = cost.encode_flops_per_image / 1e9
        results["decode_gflops"] = cost.decode_flops_per_image / 1e9
        details_extra["tokenizer_cost"] = cost.to_dict()
        return TaskOutput(
            metrics=results,
            unavailable=unavailable,
            evaluator=evaluator,
            artifacts=artifacts,
            details={"num_images": count, "resolution": dataset.resolution, **details_extra},
        )

    @staticmethod
    def _evidence(recon_key: str, reference_key: str | None, num_shards: int, count: int, metrics: set[str],
                  has_lpips: bool) -> dict[str, Any]:
        """Where each metric's per-image data lives (see ``tokbench.verdicts.evidence``): every
        tokenizer sees the same images, so rows are paired."""
        from tokbench.tasks.fid_reference import reference_pointer
        from tokbench.verdicts.evidence import distance, per_item, pointer

        evidence: dict[str, Any] = {}
        if "psnr" in metrics:  # identical pairs (inf dB) count as 100 dB, as in the mean
            evidence["psnr"] = {**per_item("mean", pointer(recon_key, "psnr.npy", num_shards)), "inf_as": 100.0}
        if "ssim" in metrics:
            evidence["ssim"] = per_item("mean", pointer(recon_key, "ssim.npy", num_shards))
        if "lpips" in metrics and has_lpips:
            evidence["lpips"] = per_item("mean", pointer(recon_key, "lpips.npy", num_shards))
        if reference_key is not None:
            features = pointer(recon_key, "features.npy", num_shards)
            reference = reference_pointer(reference_key, count)
            for name, kind in (("rfid", "frechet"), ("kid", "kid")):
                if name in metrics:
                    evidence[name] = distance(kind, features, reference, paired=True)
        return evidence

    # ---- shards ------------------------------------------------------------------
    def _recon_shard(self, ctx: TaskContext, extractor, lpips_fn, ids: list[int], out: Path) -> None:
        import numpy as np
        import torch

        from tokbench.metrics.image_quality import psnr_uint8, ssim, to_uint8

        device = ctx.build.device
        columns: dict[str, list[np.ndarray]] = {"psnr": [], "ssim": [], "lpips": [], "features": []}
        preview: dict[str, list[np.ndarray]] = {"originals": [], "reconstructions": []}
        for images, _, _ in ctx.build.batches(ctx.dataset, self.params.batch_size, indices=ids):
            images = images.to(device)
            originals = images.float().div(255)
            with torch.no_grad():
                recon = ctx.tokenizer.reconstruct(originals.to(ctx.tokenizer.dtype)).float()
            recon_u8 = to_uint8(recon, rounding=self.params.rounding)
            if ids[0] == 0 and sum(len(p) for p in preview["originals"]) < PREVIEW_IMAGES:
                preview["originals"].append(images[:PREVIEW_IMAGES].permute(0, 2, 3, 1).cpu().numpy())
                preview["reconstructions"].append(recon_u8[:PREVIEW_IMAGES].permute(0, 2, 3, 1).cpu().numpy())
            columns["psnr"].append(psnr_uint8(images, recon_u8).cpu().numpy())
            columns["ssim"].append(ssim(originals, recon_u8.float().div(255)).cpu().numpy())
            if lpips_fn is not None:
                with torch.no_grad():
                    columns["lpips"].append(lpips_fn(originals, recon_u8.float().div(255)).cpu().numpy())
            if extractor is not None:
                columns["features"].append(extractor(recon_u8).cpu().numpy())
        for name, values in columns.items():
            if values:
                np.save(out / f"{name}.npy", np.concatenate(values).astype(np.float64))
        if preview["originals"]:  # the first images and their reconstructions, for the leaderboard's grid
            from tokbench.report.plots import PREVIEW_FILE

            np.savez(out / PREVIEW_FILE, **{k: np.concatenate(v)[:PREVIEW_IMAGES] for k, v in preview.items()})


def _key(inputs: dict[str, Any]) -> str:
    from tokbench.hashing import content_key

    return content_key(inputs)
