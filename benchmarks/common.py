"""What every benchmark script shares: device synchronisation and recording results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).parent / "results"


def sync(device: Any) -> None:
    """Wait for queued GPU work so wall-clock timings are real."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def record(name: str, result: dict[str, Any], save: bool = True) -> None:
    """Print ``result`` and append it to ``benchmarks/results/<name>.jsonl``."""
    print(json.dumps(result, indent=2))
    if save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        with open(RESULTS_DIR / f"{name}.jsonl", "a") as handle:
            handle.write(json.dumps(result) + "\n")
