"""Freed memory stays in the process (tokbench/runtime/memory.py): a model's activations, freed
and allocated again at every batch, are served from the heap instead of fresh pages, so the page
faults do not repeat batch after batch and the process does not keep growing; what the heap holds
goes back to the kernel on request (between two units of a worker)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

BATCHES = 12
BLOCK_PAGES = 32 * 2**20 // 4096  # one 32 MiB activation in 4 KiB pages

PROBE = f"""
import resource, sys
import torch
from tokbench.runtime.memory import keep_freed_memory, release_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.set_num_threads(1)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def rss_mib():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3, padding=1))
x = torch.rand(4, 3, 256, 256)   # 32 MiB activations: above glibc's largest mmap threshold
with torch.inference_mode():
    for _ in range(4):  # the heap's first growths
        net(x).sum().item()
    before, warm = faults(), rss_mib()
    for _ in range({BATCHES}):
        net(x).sum().item()
refaulted, grown, held = faults() - before, rss_mib() - warm, rss_mib()
release_freed_memory()
print(applied, refaulted, grown, held - rss_mib())
"""


def _probe(mode: str) -> tuple[bool, int, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2]), int(out[3])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_activations_are_reused_without_page_faults_and_released_between_units():
    applied, refaulted, grown, released_mib = _probe("keep")
    assert applied
    # The heap may still grow once or twice while its free blocks settle into a layout that fits
    # a batch (0, 1 or 2 blocks of 32 MiB, varying from run to run with the address layout); after
    # that every batch is served from it. glibc's default faults in every block of every batch.
    assert refaulted < 2 * BLOCK_PAGES + 2_000, f"{refaulted} page faults over {BATCHES} batches"
    assert grown <= 2 * 32 + 16, f"the process grew by {grown} MiB over {BATCHES} identical batches"
    assert released_mib > 32, "release_freed_memory gave nothing back"
    untouched, refaulted_by_default, _, _ = _probe("default")
    assert not untouched
    assert refaulted_by_default > BATCHES * BLOCK_PAGES
    assert refaulted_by_default > 5 * refaulted


def test_switched_off_by_the_environment():
    out = subprocess.run([sys.executable, "-c", "from tokbench.runtime.memory import keep_freed_memory as k; print(k())"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "TOKBENCH_KEEP_FREED_MEMORY": "0"}).stdout
    assert out.strip() == "False"
