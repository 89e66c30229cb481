"""Content-addressed store for artifacts and result records.

Layout under ``root``::

    objects/<k2>/<key>/      committed artifacts; MANIFEST.json is written last
    partial/<key>/shard-NNNNN/  committed shards of an unfinished sharded artifact
    results/<key>.json       result records (one JSON each, written atomically)
    runs/<run-id>/           resolved suite, plan and logs of each `tokbench run`
    tmp/                     work in progress; never read back
    locks/<key>.lock         advisory locks so two workers never produce one key twice
    log/commits.jsonl        one line per commit (what was computed, when, by whom)

Keys are hashes of *what produced* an artifact, never display names. Every
write goes to ``tmp/`` first and is renamed into place, so a killed process
leaves no half-written artifact visible; the next run simply redoes that unit.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from tokbench.errors import StoreError
from tokbench.hashing import sha256_file

MANIFEST = "MANIFEST.json"
STORE_FORMAT = 1


def default_store_root() -> Path:
    return Path(os.environ.get("TOKBENCH_STORE", "tokbench-store"))


def write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _manifest_for(directory: Path, key: str, kind: str, meta: dict[str, Any]) -> dict[str, Any]:
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[str(path.relative_to(directory))] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return {
        "format": STORE_FORMAT,
        "key": key,
        "kind": kind,
        "created": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "meta": meta,
        "files": files,
    }


@dataclass
class VerifyReport:
    checked: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        for sub in ("objects", "partial", "results", "runs", "tmp", "locks", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # ---- paths --------------------------------------------------------------
    def object_dir(self, key: str) -> Path:
        return self.root / "objects" / key[:2] / key

    def has(self, key: str) -> bool:
        return (self.object_dir(key) / MANIFEST).is_file()

    def path(self, key: str) -> Path:
        if not self.has(key):
            raise StoreError(f"artifact {key} is not in the store at {self.root}")
        return self.object_dir(key)

    def manifest(self, key: str) -> dict[str, Any]:
        return json.loads((self.path(key) / MANIFEST).read_text())

    def _tmp_dir(self, key: str) -> Path:
        path = self.root / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    # ---- locking ------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Exclusive advisory lock; released by the kernel if the holder dies."""
        lock_path = self.root / "locks" / f"{key}.lock"
        with open(lock_path, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{socket.gethostname()} {os.getpid()} {time.time()}\n")
                handle.flush()
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def is_locked(self, key: str) -> bool:
        lock_path = self.root / "locks" / f"{key}.lock"
        if not lock_path.exists():
            return False
        with open(lock_path, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False

    # ---- artifacts ----------------------------------------------------------
    def _commit_dir(self, tmp: Path, key: str, kind: str, meta: dict[str, Any]) -> Path:
        write_json_atomic(tmp / MANIFEST, _manifest_for(tmp, key, kind, meta))
        target = self.object_dir(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # a concurrent writer committed first: keep theirs
            shutil.rmtree(tmp)
            return target
        os.rename(tmp, target)
        self._log_commit(key, kind, meta)
        return target

    def _log_commit(self, key: str, kind: str, meta: dict[str, Any]) -> None:
        line = json.dumps({"key": key, "kind": kind, "time": time.time(), "pid": os.getpid(), "label": meta.get("label")})
        with open(self.root / "log" / "commits.jsonl", "a") as handle:
            handle.write(line + "\n")

    def get_or_create(
        self, key: str, producer: Callable[[Path], dict[str, Any] | None], kind: str, meta: dict[str, Any] | None = None,
        collective: bool = False,
    ) -> Path:
        """Return the artifact for ``key``, producing it once if it is missing.

        ``producer(directory)`` writes files into a private temporary directory
        and may return extra metadata for the manifest. ``collective`` marks a producer
        that every rank of a multi-rank unit runs together (DDP training); it matters only
        to :class:`tokbench.ranks.RankStore`.
        """
        if self.has(key):
            return self.object_dir(key)
        with self.lock(key):
            if self.has(key):
                return self.object_dir(key)
            return self._produce(key, producer, kind, meta)

    def _produce(self, key: str, producer: Callable[[Path], dict[str, Any] | None], kind: str,
                 meta: dict[str, Any] | None) -> Path:
        """Run ``producer`` into a temporary directory and commit it (the caller holds the lock)."""
        tmp = self._tmp_dir(key)
        try:
            extra = producer(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        extra = extra if isinstance(extra, dict) else {}
        return self._commit_dir(tmp, key, kind, {**(meta or {}), **extra})

    def sharded(self, key: str, kind: str, num_shards: int, meta: dict[str, Any] | None = None) -> "ShardedArtifact":
        return ShardedArtifact(self, key, kind, num_shards, meta or {})

    # ---- result records -------------------------------------------------------
    def result_path(self, key: str) -> Path:
        return self.root / "results" / f"{key}.json"

    def has_result(self, key: str) -> bool:
        return self.result_path(key).is_file()

    def put_result(self, key: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.result_path(key), {**record, "key": key})
        self._log_commit(key, "result", {"label": record.get("label")})

    def get_result(self, key: str) -> dict[str, Any]:
        try:
            return json.loads(self.result_path(key).read_text())
        except FileNotFoundError:
            raise StoreError(f"no result {key} in the store at {self.root}") from None

    def results(self) -> Iterator[dict[str, Any]]:
        for path in sorted((self.root / "results").glob("*.json")):
            yield json.loads(path.read_text())

    def commits(self) -> list[dict[str, Any]]:
        log = self.root / "log" / "commits.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    # ---- maintenance ----------------------------------------------------------
    def artifacts(self) -> Iterator[dict[str, Any]]:
        for manifest in sorted((self.root / "objects").glob(f"*/*/{MANIFEST}")):
            data = json.loads(manifest.read_text())
            data["size"] = sum(f["size"] for f in data["files"].values())
            yield data

    def verify(self) -> VerifyReport:
        """Re-hash every committed file; report missing, changed and stray entries."""
        problems: list[str] = []
        checked = 0
        for directory in sorted((self.root / "objects").glob("*/*")):
            manifest_path = directory / MANIFEST
            if not manifest_path.is_file():
                problems.append(f"{directory.name}: no manifest (incomplete artifact)")
                continue
            manifest = json.loads(manifest_path.read_text())
            for rel, info in manifest["files"].items():
                checked += 1
                file = directory / rel
                if not file.is_file():
                    problems.append(f"{directory.name}: missing file {rel}")
                elif file.stat().st_size != info["size"] or sha256_file(file) != info["sha256"]:
                    problems.append(f"{directory.name}: corrupt file {rel} (hash mismatch)")
        for path in sorted((self.root / "results").glob("*.json")):
            checked += 1
            try:
                json.loads(path.read_text())
            except json.JSONDecodeError as error:
                problems.append(f"result {path.stem}: unreadable JSON ({error})")
        return VerifyReport(checked, problems)

    def gc(self, dry_run: bool = False, unreferenced: bool = False) -> list[Path]:
        """Remove leftovers of interrupted work (tmp/, unlocked partial shards'
        temporaries) and, with ``unreferenced``, artifacts no result refers to."""
        removed: list[Path] = []
        for path in sorted((self.root / "tmp").iterdir()):
            key = path.name.split(".")[0]
            if not self.is_locked(key):
                removed.append(path)
        if unreferenced:
            referenced: set[str] = set()
            for record in self.results():
                referenced.update(record.get("artifacts", []))
            for directory in sorted((self.root / "objects").glob("*/*")):
                if directory.name not in referenced:
                    removed.append(directory)
        if not dry_run:
            for path in removed:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        return removed


class ShardedArtifact:
    """An artifact written shard by shard; each shard commits atomically, so an
    interrupted producer resumes at the first missing shard."""

    def __init__(self, store: Store, key: str, kind: str, num_shards: int, meta: dict[str, Any]):
        self.store, self.key, self.kind, self.num_shards, self.meta = store, key, kind, num_shards, meta
        self.partial = store.root / "partial" / key

    @staticmethod
    def shard_name(index: int) -> str:
        return f"shard-{index:05d}"

    @property
    def complete(self) -> bool:
        return self.store.has(self.key)

    def has_shard(self, index: int) -> bool:
        if self.complete:
            return True
        return (self.partial / self.shard_name(index) / MANIFEST).is_file()

    def missing(self) -> list[int]:
        return [i for i in range(self.num_shards) if not self.has_shard(i)]

    def todo(self) -> list[int]:
        """The missing shards this process should write (all of them; a share on one rank of many)."""
        return self.missing()

    def shard_dir(self, index: int) -> Path:
        base = self.store.object_dir(self.key) if self.complete else self.partial
        return base / self.shard_name(index)

    def write_shard(self, index: int, producer: Callable[[Path], None]) -> Path:
        if self.has_shard(index):
            return self.shard_dir(index)
        tmp = self.store._tmp_dir(f"{self.key}")
        try:
            producer(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        write_json_atomic(tmp / MANIFEST, _manifest_for(tmp, f"{self.key}/{index}", self.kind + "-shard", {}))
        self.partial.mkdir(parents=True, exist_ok=True)
        target = self.partial / self.shard_name(index)
        if target.exists():
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, target)
        return target

    def finalize(self) -> Path:
        """Commit the whole artifact once every shard is present."""
        if self.complete:
            return self.store.object_dir(self.key)
        missing = self.missing()
        if missing:
            raise StoreError(f"cannot finalize {self.key}: shards {missing[:5]} missing")
        with self.store.lock(self.key):
            if self.complete:
                return self.store.object_dir(self.key)
            meta = {**self.meta, "num_shards": self.num_shards}
            write_json_atomic(self.partial / MANIFEST, _manifest_for(self.partial, self.key, self.kind, meta))
            target = self.store.object_dir(self.key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.partial, target)
            self.store._log_commit(self.key, self.kind, meta)
            return target
