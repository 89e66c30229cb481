"""Where a metric network's local weights file is: an explicit path, else an environment
variable, else the metric's default place (a pip package's data file, the torch-hub cache).
Torch-free; each metric supplies its own names, default and how-to-get-it advice."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class LocatedFile:
    path: Path
    origin: str  # "argument", "env:<VARIABLE>" or the default's name


def locate_weights_file(
    explicit: str | os.PathLike[str] | None,
    *,
    env_var: str,
    what: str,
    how_to_get: Callable[[], str],
    error: type[Exception],
    default: Callable[[], LocatedFile | None],
    missing: str,
) -> LocatedFile:
    """``explicit`` > ``$env_var`` > ``default()``; a path that is not a file, or nothing found,
    raises ``error`` naming ``what`` and ending with ``how_to_get()``. ``default`` may raise
    itself (a corrupt or wrong-version file)."""
    if explicit is not None:
        candidate = Path(explicit).expanduser()
        if not candidate.is_file():
            raise error(f"{what} {candidate} does not exist. {how_to_get()}")
        return LocatedFile(candidate, "argument")
    env_value = os.environ.get(env_var)
    if env_value:
        candidate = Path(env_value).expanduser()
        if not candidate.is_file():
            raise error(f"{env_var}={env_value} does not point to a file; fix or unset it. {how_to_get()}")
        return LocatedFile(candidate, f"env:{env_var}")
    found = default()
    if found is None:
        raise error(f"{missing} {how_to_get()}")
    return found
