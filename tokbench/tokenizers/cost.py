"""A tokenizer's own compute: encode and decode FLOPs and wall time per image.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one batch of images at the
run's resolution (and on the latents that batch encodes to): matmuls, convolutions and attention,
2 FLOPs per multiply-accumulate. It counts interpolation, normalisation and elementwise ops as 0,
so a tokenizer without weights (``resample``) records 0 FLOPs: its cost is its wall time. Wall
time is measured on the run's device after one warm-up call (CUDA synchronised), for the record
only: it depends on the machine and is never compared across results.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

COUNTER = "torch.utils.flop_counter.FlopCounterMode (matmul, conv, attention; interpolation and elementwise ops count 0)"


@dataclass(frozen=True)
class TokenizerCost:
    encode_flops_per_image: float
    decode_flops_per_image: float
    encode_seconds_per_image: float
    decode_seconds_per_image: float
    resolution: int
    batch_size: int
    device: str
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counter": COUNTER}


def measure_cost(tokenizer: Any, resolution: int, batch_size: int = 4, repeats: int = 3, seed: int = 0) -> TokenizerCost:
    """Encode and decode cost of ``tokenizer`` per image at ``resolution`` (images in [0, 1])."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device, dtype = tokenizer.device, tokenizer.dtype
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 3, resolution, resolution, generator=generator).to(device=device, dtype=dtype)
    with torch.no_grad():
        latents = tokenizer.encode(images)  # also the warm-up of encode
        tokenizer.decode(latents)

        def counted(fn: Callable[[], Any]) -> float:
            with FlopCounterMode(display=False) as counter:
                fn()
            return counter.get_total_flops() / batch_size

        def timed(fn: Callable[[], Any]) -> float:
            best = float("inf")
            for _ in range(repeats):
                _synchronize(device)
                started = time.perf_counter()
                fn()
                _synchronize(device)
                best = min(best, time.perf_counter() - started)
            return best / batch_size

        def encode() -> Any:
            return tokenizer.encode(images)

        def decode() -> Any:
            return tokenizer.decode(latents)

        return TokenizerCost(
            encode_flops_per_image=float(counted(encode)), decode_flops_per_image=float(counted(decode)),
            encode_seconds_per_image=timed(encode), decode_seconds_per_image=timed(decode),
            resolution=resolution, batch_size=batch_size, device=str(device), dtype=str(dtype).removeprefix("torch."),
        )


def _synchronize(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
