"""Fixed result records for the report tests (the shape the runner writes)."""

from __future__ import annotations

import copy

PROVENANCE = {"git_commit": "0123456789ab", "torch": "2.15.0", "device": "cpu", "started": 1700000000.0, "seconds": 12.5}


def record(task: str, kind: str, protocol: str, tokenizer: str, label: str, metrics: dict, *, dataset: str = "val",
           evaluator: dict | None = None, unavailable: dict | None = None, task_params: dict | None = None,
           tokenizer_params: dict | None = None, key: str | None = None, details: dict | None = None,
           plugin: str = "vtp", suite: str = "golden", training_flops: float | None = None) -> dict:
    key = key or f"{task}-{tokenizer}-{dataset}-{protocol}".replace("_", "-")
    tokenizer_record = {"name": tokenizer, "label": label, "plugin": plugin, "params": tokenizer_params or {},
                        "fingerprint": f"fp-{tokenizer}"}
    if training_flops is not None:
        tokenizer_record["training_flops"] = training_flops
    return {
        "type": "result",
        "key": key,
        "label": f"{task}/{tokenizer}/{dataset}",
        "suite": {"name": suite, "digest": "d" * 20, "run": "20260101-000000-golden"},
        "tokenizer": tokenizer_record,
        "task": {"kind": kind, "name": task, "protocol_version": protocol, "params": task_params or {}},
        "dataset": {"name": dataset, "kind": "shapes", "fingerprint": f"ds-{dataset}"},
        "metrics": metrics,
        "unavailable": unavailable or {},
        "evaluator": evaluator or {"protocol": protocol},
        "artifacts": [],
        "details": {"num_images": 256, **(details or {})},
        "provenance": PROVENANCE,
    }


FID = {"protocol": "rfid-v1", "rounding": "round", "fid": {"weights_sha256": "7ff4a85c"}}
LPIPS_NA = {"lpips": "LPIPS unavailable: no VGG16 weights found"}


def golden_records() -> list[dict]:
    """Three tokenizers x reconstruction / zero-shot / probe, a probe with several probe
    seeds, two seeds of one unit (mean ± std) and a generation task with FLOPs."""
    records = [
        record("reconstruction", "reconstruction", "rfid-v1", "vae", "VAE tiny", {"rfid": 171.46, "psnr": 26.174, "ssim": 0.8191, "lpips": None},
               evaluator={**FID, "ssim": {"window": 11}}, unavailable=LPIPS_NA, plugin="vae", training_flops=2.0e13),
        record("reconstruction", "reconstruction", "rfid-v1", "vtp", "VTP tiny", {"rfid": 162.08, "psnr": 20.851, "ssim": 0.6307, "lpips": None},
               evaluator={**FID, "ssim": {"window": 11}}, unavailable=LPIPS_NA, training_flops=8.0e13),
        record("reconstruction", "reconstruction", "rfid-v1", "bicubic", "bicubic f4 & co_1", {"rfid": 152.99, "psnr": 26.93, "ssim": 0.8233, "lpips": None},
               evaluator={**FID, "ssim": {"window": 11}}, unavailable=LPIPS_NA, plugin="resample"),
        record("zero_shot", "zero_shot", "zero-shot-v1", "vtp", "VTP tiny", {"top1": 0.3575, "top5": 0.8317}, dataset="colours"),
        record("probe", "linear_probe", "linear-probe-v1", "vae", "VAE tiny",
               {"top1": 0.5875, "top5": 0.9375, "top1_best_on_val": 0.5875, "minival_top1": 0.6}, dataset="colours", plugin="vae"),
        record("probe", "linear_probe", "linear-probe-v1", "vtp", "VTP tiny",
               {"top1": 0.7725, "top5": 0.95, "top1_best_on_val": 0.79, "minival_top1": 0.8333, "top1_std": 0.012},
               dataset="colours", task_params={"seeds": [0, 1, 2]}),
        record("probe", "linear_probe", "linear-probe-v1", "bicubic", "bicubic f4 & co_1",
               {"top1": 0.6775, "top5": 0.9208, "top1_best_on_val": 0.6775, "minival_top1": 0.7}, dataset="colours", plugin="resample"),
    ]
    for seed, gfid in ((0, 41.0), (1, 43.0), (2, 42.5)):  # one measurement, three generator seeds
        records.append(record("generation", "generation", "gfid-v1", "vtp", "VTP tiny", {"gfid": gfid},
                              task_params={"seed": seed}, key=f"generation-vtp-seed{seed}",
                              details={"generator_training_flops": 1.0e15}, training_flops=8.0e13))
    records.append(record("generation", "generation", "gfid-v1", "vae", "VAE tiny", {"gfid": 55.25},
                          task_params={"seed": 0}, details={"generator_training_flops": 1.0e15}, plugin="vae", training_flops=2.0e13))
    return copy.deepcopy(records)
