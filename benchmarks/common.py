"""What every benchmark script shares: options, timing, the machine record and the result format.

A result is one JSON line in ``benchmarks/results/<name>.jsonl``::

    {"benchmark": name, "machine": {...}, "settings": {...}, "figures": {...},
     "comparisons": [{"what", "ours", "baseline", "baseline_value", "unit"}, ...]}

``comparisons`` pair each measured path with the baseline timed in the same process;
``run_all.py`` turns them into the Markdown summary (ratio > 1: tokbench is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import torch

from tokbench.runtime.memory import freed_memory_kept, keep_freed_memory

RESULTS_DIR = Path(__file__).parent / "results"


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to benchmarks/results/")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's allocator as it is (tokbench's units keep freed memory: tokbench/runtime/memory.py)")


def setup(args: argparse.Namespace) -> torch.device:
    if not args.default_allocator:  # as every tokbench unit runs
        keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)


def sync(device: Any) -> None:
    """Wait for queued GPU work so wall-clock timings are real."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_seconds(fn: Callable[[], Any], device: Any, repeats: int = 3, warmup: int = 1) -> float:
    """Best wall-clock seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_memory_mb(device: Any) -> float:
    """Peak GPU memory allocated since the last reset, or the process's peak RSS on CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine(device: Any) -> dict[str, Any]:
    device = torch.device(device)
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "freed_memory_kept": freed_memory_kept(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "commit": _git_commit(),
    }
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def comparison(what: str, ours: float, baseline: str, baseline_value: float, unit: str) -> dict[str, Any]:
    """One measured path beside its baseline; ``unit`` ending in ``/s`` means higher is better."""
    return {"what": what, "ours": ours, "baseline": baseline, "baseline_value": baseline_value, "unit": unit}


def speedup(row: dict[str, Any]) -> float:
    """How many times faster tokbench's path is than the baseline (> 1: faster)."""
    ours, base = row["ours"], row["baseline_value"]
    return ours / base if row["unit"].endswith("/s") else base / ours


def record(name: str, settings: dict[str, Any], figures: dict[str, Any], comparisons: list[dict[str, Any]],
           device: Any, save: bool = True) -> dict[str, Any]:
    """Print the result and append it to ``benchmarks/results/<name>.jsonl``; returns it."""
    result = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(device),
              "settings": settings, "figures": _rounded(figures), "comparisons": _rounded(comparisons)}
    print(json.dumps(result, indent=2))
    for row in comparisons:
        print(f"{row['what']}: {row['ours']:.4g} {row['unit']} vs {row['baseline']} {row['baseline_value']:.4g} "
              f"-> x{speedup(row):.2f}")
    if save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        with open(RESULTS_DIR / f"{name}.jsonl", "a") as handle:
            handle.write(json.dumps(result) + "\n")
    return result


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
