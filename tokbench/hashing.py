"""Content keys: canonical JSON hashing, file digests and weight fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

KEY_LENGTH = 20  # hex chars of sha256 used for store keys


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, paths and sets normalised."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_default, ensure_ascii=True)


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=canonical_json)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "value"):  # enums
        return obj.value
    raise TypeError(f"cannot hash object of type {type(obj).__name__}")


def content_key(obj: Any) -> str:
    """A short stable hash of a JSON-able description of what produced something."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:KEY_LENGTH]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_FILE_DIGEST_CACHE: dict[tuple[str, int, int, int], str] = {}


def file_identity(path: str | os.PathLike) -> str:
    """sha256 of a file, memoised per (path, inode, size, mtime) within the process."""
    stat = os.stat(path)
    cache_key = (str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if cache_key not in _FILE_DIGEST_CACHE:
        _FILE_DIGEST_CACHE[cache_key] = sha256_file(path)
    return _FILE_DIGEST_CACHE[cache_key]


def tree_identity(root: str | os.PathLike, patterns: Iterable[str] = ("*",)) -> str:
    """sha256 over the relative paths and contents of the files below ``root``."""
    root = Path(root)
    digest = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in root.rglob(pattern) if p.is_file()})
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(file_identity(path).encode())
    return digest.hexdigest()


def state_dict_fingerprint(state_dict: Any, extra: Any = None) -> str:
    """Hash of tensor names, shapes, dtypes and bytes (plus ``extra`` config)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(name.encode())
        # 0-d tensors cannot be viewed as bytes; hash them as one-element vectors (shape is hashed as ()).
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    if extra is not None:
        digest.update(canonical_json(extra).encode())
    return digest.hexdigest()[:KEY_LENGTH]
