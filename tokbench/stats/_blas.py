"""Run many small linear-algebra calls on one BLAS thread.

A bootstrap does ~1000 eigenvalue problems of a few hundred rows each. Multi-threaded
OpenBLAS spends more time waking and synchronising threads than computing on matrices that
small, and on a loaded 2-core machine it was 5-10x slower than one thread (measured: a
162 x 162 ``eigvalsh`` took 4.6 ms with the default threads, 0.9 ms with one). OpenBLAS's
``openblas_set_num_threads_local`` sets the count for the calling thread only, so this is safe
beside other threads. Libraries are found among the loaded shared objects; with another
BLAS (or off Linux) this is a no-op.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator


@lru_cache(maxsize=1)
def _openblas_libraries() -> tuple[ctypes.CDLL, ...]:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return ()
    paths = sorted({line.split()[-1] for line in maps.splitlines()
                    if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    libraries = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
            setter = library.openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        libraries.append(library)
    return tuple(libraries)


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """Within the block, OpenBLAS calls from this thread use one thread (restored afterwards)."""
    import numpy  # noqa: F401  (make sure numpy's BLAS is loaded before looking for it)
    import scipy.linalg  # noqa: F401

    libraries = _openblas_libraries()
    previous = [library.openblas_set_num_threads_local(1) for library in libraries]
    try:
        yield
    finally:
        for library, count in zip(libraries, previous):
            library.openblas_set_num_threads_local(count)
