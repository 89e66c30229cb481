"""Reading released checkpoint files safely, and strict loading with named problems.

Released tokenizer checkpoints are often PyTorch-Lightning or argparse-laden pickles
(taming VQGAN ``last.ckpt``, VA-VAE ``.pt``, LlamaGen ``vq_ds16_c2i.pt``). torch's
``weights_only=True`` refuses them because they name globals such as
``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint`` or
``argparse.Namespace``. :func:`read_checkpoint` never falls back to an unrestricted
unpickler: it lists the foreign globals, registers an inert stand-in for each
(:class:`ForeignObject`, which only records its constructor arguments and state) and
loads again with ``weights_only=True``. Tensors come back exactly; no code from the file
runs.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from tokbench.errors import MissingAssetError, TokbenchError


class CheckpointFormatError(TokbenchError, ValueError):
    """A checkpoint file does not hold what its format promises (keys, shapes, layout)."""


class ForeignObject:
    """Inert stand-in for a class a checkpoint names but tokbench does not trust.

    Holds whatever the pickle handed it (``args``, ``kwargs``, ``state``); its
    ``qualified_name`` says which global it replaced."""

    qualified_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<foreign {self.qualified_name}>"


def _stand_in(qualified_name: str) -> tuple[type, str]:
    module, _, name = qualified_name.rpartition(".")
    stub = type(name or "Foreign", (ForeignObject,), {"qualified_name": qualified_name, "__module__": module or "foreign"})
    return stub, qualified_name


def read_checkpoint(path: str | Path, what: str = "checkpoint", how_to_get: str = "") -> Any:
    """The object stored in a ``.safetensors``, ``.pt``, ``.pth`` or ``.ckpt`` file (CPU tensors).

    Pickles are read with ``weights_only=True``; globals outside torch's allowlist become
    :class:`ForeignObject` stand-ins instead of running code. A missing file raises
    MissingAssetError naming ``what`` and ``how_to_get``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingAssetError(f"{what} {str(path)!r} does not exist" + (f"; {how_to_get}" if how_to_get else ""))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # noqa: BLE001 - every unreadable file gets the same message
            raise _unreadable(path, what, "a safetensors file (8-byte header length, JSON header, tensor bytes)", error) from error
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            foreign = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            if not foreign:
                raise
        with torch.serialization.safe_globals([_stand_in(name) for name in foreign]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every unreadable file gets the same message
        raise _unreadable(path, what, PICKLE_FORMAT, error) from error


PICKLE_FORMAT = "a PyTorch checkpoint (torch.save zip or legacy pickle: .pt, .pth, .ckpt)"


def _unreadable(path: Path, what: str, expected: str, error: BaseException) -> CheckpointFormatError:
    detail = (str(error).strip().splitlines() or [""])[0][:200]
    return CheckpointFormatError(f"{what} {str(path)!r} is not readable as {expected}: {type(error).__name__}: {detail}")


def read_training_state(path: str | Path, what: str = "resume checkpoint", map_location: Any = "cpu") -> Any:
    """A training checkpoint tokbench wrote (resume state: weights, optimizer, step, RNG state as
    tensors, history as plain data), read with ``weights_only=True``: a file that would need any
    other global (a planted pickle) is refused and nothing in it runs."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - named, with the format expected
        raise _unreadable(path, what, "a tokbench training checkpoint (torch.save of tensors, numbers, strings, lists "
                          "and dicts, read with weights_only=True)", error) from error


def write_training_state(state: Any, path: str | Path, label: str) -> Path:
    """Save a trainer's resume state to ``path`` atomically and seal it: its sha256 goes into the
    ``MANIFEST.json`` beside it (:func:`tokbench.storage.store.seal`), which ``store verify`` and
    :func:`read_resume_state` check. A crash at any point leaves the old or the new file, never one
    that fails its seal (the old seal is removed before the new file replaces the old one)."""
    from tokbench.storage.store import MANIFEST, seal

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:  # plain data only: the resume path reads it with weights_only=True
        torch.save(state, tmp)
        (path.parent / MANIFEST).unlink(missing_ok=True)
        os.replace(tmp, path)
        seal(path.parent, [path.name], label)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_resume_state(path: str | Path, what: str, map_location: Any = "cpu") -> dict[str, Any] | None:
    """The resume state :func:`write_training_state` saved at ``path``, checked against its seal (when
    there is one) and read with ``weights_only=True``. None when there is no file, or when it is
    damaged or is not a tokbench training state: then it is set aside as ``<name>.damaged-<time>``,
    with one line on stderr, and the trainer starts over."""
    from tokbench.storage.store import MANIFEST, check_directory

    path = Path(path)
    if not path.is_file():
        return None
    try:
        if (path.parent / MANIFEST).is_file():
            problem = check_directory(path.parent)
            if problem is not None:
                raise CheckpointFormatError(f"{what} {str(path)!r}: {problem[0]} {problem[1]}")
        state = read_training_state(path, what, map_location=map_location)
        if not isinstance(state, dict):
            raise CheckpointFormatError(f"{what} {str(path)!r} holds a {type(state).__name__}, not a dict")
    except CheckpointFormatError as error:
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        path.replace(aside)
        print(f"{error}; moved to {aside}, training from step 0", file=sys.stderr, flush=True)
        return None
    return state


def pick_state_dict(data: Any, prefer: Iterable[str] = ("ema", "model", "state_dict"), source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded checkpoint: the first of ``prefer`` that is present
    (training checkpoints nest it), else ``data`` itself when it is a flat tensor dict."""
    if isinstance(data, Mapping):
        for key in prefer:
            if isinstance(data.get(key), Mapping):
                return dict(data[key])
        if data and all(isinstance(value, torch.Tensor) for value in data.values()):
            return dict(data)
    found = sorted(data)[:10] if isinstance(data, Mapping) else type(data).__name__
    raise CheckpointFormatError(f"{source}: no state dict found (looked for {', '.join(prefer)}; found {found})")


def _listing(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" ... (+{len(names) - limit})" if len(names) > limit else "")


def strict_load(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` that names every missing, unexpected and
    mis-shaped key (the first few of each) in one CheckpointFormatError."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{key}: file {tuple(state[key].shape)} vs model {tuple(own[key].shape)}"
                  for key in own if key in state and tuple(state[key].shape) != tuple(own[key].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {_listing(mismatched, 4)}")
    if problems:
        raise CheckpointFormatError(f"{source} does not match the expected layout: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def read_latent_stats(path: str | Path, channels: int, hint: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std), each (1, C, 1, 1) float32, from a LightningDiT-style ``latents_stats.pt``
    (a dict with ``mean`` and ``std``; VA-VAE and VTP ship these), checked against the
    latent width ``channels``. ``hint`` says where the right file comes from."""
    suffix = f"; {hint}" if hint else ""
    try:
        stats = read_checkpoint(path, what="latent_stats file", how_to_get=hint)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise CheckpointFormatError(f"could not read latent_stats {str(path)!r}: {error}{suffix}") from error
    if not isinstance(stats, Mapping) or not {"mean", "std"} <= set(stats):
        found = sorted(stats) if isinstance(stats, Mapping) else type(stats).__name__
        raise CheckpointFormatError(f"latent_stats {str(path)!r} must hold a dict with `mean` and `std`, found {found}{suffix}")
    out = []
    for key in ("mean", "std"):
        value = torch.as_tensor(stats[key]).float()
        if value.numel() != channels:
            raise CheckpointFormatError(
                f"latent_stats {str(path)!r}: `{key}` has {value.numel()} values but this model's latent has "
                f"{channels} channels (stats of another model?)"
            )
        out.append(value.reshape(1, channels, 1, 1))
    if not bool((out[1] > 0).all()):
        raise CheckpointFormatError(f"latent_stats {str(path)!r}: `std` must be positive in every channel")
    return out[0], out[1]
