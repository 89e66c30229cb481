"""Keep freed memory in the process, so that the next batch's tensors do not fault in new pages.

glibc hands a block above its mmap threshold straight back to the kernel when it is freed, and
trims the heap's free top above its trim threshold. A model that allocates and frees the same
activations at every step (an Inception batch's are hundreds of MB; a training step's come
and go) then pays a page fault and the zeroing of a fresh page for every 4 KiB, at every step.
On CPU that is system time taken from the computation (docs/performance.md, "Freed memory kept
in the process"). The allocator settings below serve every block from the heap and keep what is
freed for the next allocation. They change where memory comes from, never what is computed.

PyTorch's own guidance for CPU runs is the same effect through jemalloc or tcmalloc (LD_PRELOAD);
``mallopt`` gets it from the allocator already loaded, without a preload or another package.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

DISABLE_VARIABLE = "TOKBENCH_KEEP_FREED_MEMORY"
_glibc: ctypes.CDLL | None = None  # set once the settings are in force


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never trim it (glibc on Linux; elsewhere a no-op).

    Idempotent; returns whether the settings are in force. ``TOKBENCH_KEEP_FREED_MEMORY=0``
    leaves the allocator as it is."""
    global _glibc
    if _glibc is not None:
        return True
    if os.environ.get(DISABLE_VARIABLE, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only: musl's mallopt does nothing
        return False
    libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success
    if libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1):
        _glibc = libc
    return _glibc is not None


def release_freed_memory() -> None:
    """Give the heap's free memory back to the kernel (between two units of a persistent worker,
    so that one unit's peak is not held for the next)."""
    if _glibc is not None:
        _glibc.malloc_trim(ctypes.c_size_t(0))


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` is in force in this process (recorded with benchmarks)."""
    return _glibc is not None
