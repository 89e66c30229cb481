"""Two (or more) CPU ranks for tests: one gloo process group per ``torch.multiprocessing.spawn`` child.

gloo's teardown can abort a process (SIGABRT, "terminate called without an active exception")
when its peer has already exited: seen once in CI after all results were written. So a rank
that finished meets the others at a barrier and leaves with ``os._exit(0)``, skipping the
teardown; a rank that failed tears down normally, so its exception reaches the test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from typing import Iterator


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gloo_rank(rank: int, world: int, port: int, threads: int = 1) -> Iterator[None]:
    """Run the body as ``rank`` of ``world`` (one torch thread); exits the process when it succeeds."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        yield
        dist.barrier()  # nobody leaves while a peer may still talk to it
    except BaseException:
        dist.destroy_process_group()
        raise
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
