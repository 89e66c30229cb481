"""A TF32 guard for metric networks: full-precision float32 while they run on a GPU."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def no_tf32(device: torch.device) -> Iterator[None]:
    """Disable TF32 for cuDNN convolutions and CUDA matmuls while a metric net runs on a GPU.

    Restores the previous flags afterwards; a no-op on CPU. TF32 makes Inception features
    depend on the GPU and batch size (torch-fidelity#43, torchmetrics#1620).
    """
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
