"""One unit on several ranks (a multi-GPU Slurm job, torchrun): rank 0 commits, the others
compute and wait.

Every rank of the job runs the same unit code against a :class:`RankStore`, which applies
these rules to the store:

- Rank 0 (the leader) holds the unit's lock and writes every committed artifact, result and
  status. The other ranks (followers) never commit anything.
- A *collective* producer (``get_or_create(..., collective=True)``: DDP training) runs on every
  rank at once. The leader decides, under its lock, whether it runs at all and announces the
  decision; followers run it into scratch directories that are dropped.
- Any other producer runs on the leader alone; followers wait for its commit.
- Sharded artifacts are split across ranks: rank r writes shards r, r + W, r + 2W ... (each
  shard commits on its own, atomically), and the leader finalizes once all are in. Feature and
  latent extraction therefore use every GPU of the job.
- Nobody hangs on a dead rank: a rank that fails marks the attempt in the rendezvous
  directory, the leader marks it done when the unit ends, and a waiting rank stops with the
  other rank's error.

The rendezvous is a directory of small files on the store's shared file system, so waiting
has no collective time-out (rank 0 may extract features for hours while the others wait).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tokbench.errors import TokbenchError
from tokbench.storage.store import ShardedArtifact, Store, write_json_atomic


class RankFailed(TokbenchError):
    """Another rank of this unit failed; this one stops instead of waiting forever."""


class UnitSettled(Exception):
    """The leader finished the unit (e.g. found its result in the store) before this rank needed it."""


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    attempt: str = "single"  # the same on every rank of one attempt, new on every requeue

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def multi(self) -> bool:
        return self.world > 1


def agree_ranks() -> Ranks:
    """This process's place in the initialised process group, with an attempt id drawn by rank 0
    and broadcast to all (called by every rank at the same point, so it never waits long)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return Ranks()
    token = [f"{os.environ.get('SLURM_JOB_ID', 'job')}-{os.environ.get('SLURM_RESTART_COUNT', '0')}-{uuid.uuid4().hex[:8]}"]
    dist.broadcast_object_list(token, src=0)
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), token[0])


class Rendezvous:
    """Decisions and end marks of one attempt of one unit, shared through files."""

    def __init__(self, directory: Path, ranks: Ranks, poll_s: float = 0.5):
        self.directory, self.ranks, self.poll_s = Path(directory), ranks, poll_s
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sequence = 0

    def _next_decision(self) -> Path:
        # Numbered, not named by key: every rank makes the same collective calls in the same order,
        # and one key asked for twice gets two decisions.
        self._sequence += 1
        return self.directory / f"decision-{self._sequence:05d}.json"

    def announce(self, key: str, produce: bool) -> None:
        write_json_atomic(self._next_decision(), {"key": key, "produce": produce})

    def decision(self, key: str) -> bool:
        path = self._next_decision()
        self.wait(path.is_file, f"rank 0's decision on {key}")
        data = json.loads(path.read_text())
        if data["key"] != key:
            raise RankFailed(f"ranks diverged: rank 0 asked for artifact {data['key']}, rank {self.ranks.rank} for {key}")
        return bool(data["produce"])

    def fail(self, error: str) -> None:
        write_json_atomic(self.directory / f"failed-rank{self.ranks.rank}.json", {"error": error, "time": time.time()})

    def finish(self) -> None:
        write_json_atomic(self.directory / "done.json", {"time": time.time()})

    def wait(self, ready: Callable[[], bool], what: str) -> None:
        """Poll until ``ready()``; raise if another rank failed or the leader ended the unit."""
        while not ready():
            for marker in self.directory.glob("failed-rank*.json"):
                if marker.name != f"failed-rank{self.ranks.rank}.json":
                    error = json.loads(marker.read_text())["error"]
                    raise RankFailed(f"{marker.stem.split('-')[1]} failed while rank {self.ranks.rank} waited for {what}: {error}")
            if not self.ranks.leader and (self.directory / "done.json").is_file():
                if ready():
                    return
                raise UnitSettled(what)
            time.sleep(self.poll_s)


class RankStore(Store):
    """The store as one rank of a multi-rank unit sees it (see the module's rules)."""

    def __init__(self, root: str | os.PathLike, ranks: Ranks, rendezvous: Rendezvous):
        super().__init__(root)
        self.ranks, self.rendezvous = ranks, rendezvous
        self._solo_depth = 0  # > 0 while the leader runs a producer the followers do not run

    def lock(self, key: str):
        if self.ranks.leader:
            return super().lock(key)
        raise TokbenchError(f"rank {self.ranks.rank} asked for the lock of {key}: only rank 0 takes store locks")

    def get_or_create(self, key: str, producer: Callable[[Path], dict[str, Any] | None], kind: str,
                      meta: dict[str, Any] | None = None, collective: bool = False) -> Path:
        if collective and self._solo_depth:
            raise TokbenchError(f"{kind} ({key}) is trained by every rank together but was asked for inside a "
                                "producer that only rank 0 runs; ask for it before, at the unit's top level")
        if self.ranks.leader:
            if collective:
                with super().lock(key):
                    produce = not self.has(key)
                    self.rendezvous.announce(key, produce)
                    if produce:
                        return self._produce(key, producer, kind, meta)
                return self.object_dir(key)

            def solo(directory: Path):
                self._solo_depth += 1
                try:
                    return producer(directory)
                finally:
                    self._solo_depth -= 1

            return super().get_or_create(key, solo, kind, meta)
        if collective and self.rendezvous.decision(key):
            scratch = self._tmp_dir(key)
            try:
                producer(scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        self.rendezvous.wait(lambda: self.has(key), f"artifact {key} ({kind})")
        return self.object_dir(key)

    def put_result(self, key: str, record: dict[str, Any]) -> None:
        if self.ranks.leader:
            super().put_result(key, record)

    def sharded(self, key: str, kind: str, num_shards: int, meta: dict[str, Any] | None = None) -> ShardedArtifact:
        return RankShardedArtifact(self, key, kind, num_shards, meta or {})


class RankShardedArtifact(ShardedArtifact):
    store: RankStore

    def todo(self) -> list[int]:
        ranks = self.store.ranks
        return [i for i in self.missing() if i % ranks.world == ranks.rank]

    def finalize(self) -> Path:
        waiting_for = f"the shards of {self.key} ({self.kind})"
        if self.store.ranks.leader:
            self.store.rendezvous.wait(lambda: self.complete or not self.missing(), waiting_for)
            return super().finalize()
        self.store.rendezvous.wait(lambda: self.complete, waiting_for)
        return self.store.object_dir(self.key)
