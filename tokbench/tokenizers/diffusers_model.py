"""Glue shared by tokenizers that wrap one diffusers model (the vae and vqgan plugins): moving it
without diffusers' per-cast warnings, channels-last on GPU, inputs on the model's device and dtype,
bf16 autocast on CUDA when ``params.precision`` asks for it (CPU always runs the model's dtype)."""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch

from tokbench.api import Tokenizer


class DiffusersModelTokenizer(Tokenizer):
    """A tokenizer around ``self.model`` (a diffusers ``ModelMixin``) whose ``self.params`` has a
    ``precision`` field (``fp32`` or ``bf16``); the subclass sets both in its ``__init__`` and then
    calls :meth:`_channels_last_on_gpu`."""

    model: torch.nn.Module
    params: Any

    def modules(self) -> Sequence[torch.nn.Module]:
        return [self.model]

    def to(self, device=None, dtype=None) -> "DiffusersModelTokenizer":
        # torch's Module.to: diffusers' override logs a warning on every dtype cast.
        kwargs = {name: value for name, value in (("device", device), ("dtype", dtype)) if value is not None}
        if kwargs:
            torch.nn.Module.to(self.model, **kwargs)
        self._channels_last_on_gpu()
        return self

    def placed(self, context) -> "DiffusersModelTokenizer":
        """In eval mode, on the device of ``context`` (a task context; None: where it is)."""
        if context is not None:
            self.to(context.device)
        return self.eval()

    def _channels_last_on_gpu(self) -> None:
        if self.device.type == "cuda":
            torch.nn.Module.to(self.model, memory_format=torch.channels_last)

    def _prepare(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on the model's device and dtype (channels-last on GPU)."""
        tensor = tensor.to(device=self.device, dtype=self.dtype)
        if tensor.device.type == "cuda":
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def _autocast(self):
        if self.params.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()
