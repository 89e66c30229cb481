"""Content-addressed store for artifacts and result records.

Layout under ``root``::

    objects/<k2>/<key>/      committed artifacts; MANIFEST.json is written last
    partial/<key>/shard-NNNNN/  committed shards of an unfinished sharded artifact
    results/<key>.json       result records (one JSON each, written atomically)
    runs/<run-id>/           resolved suite, plan and logs of each `tokbench run`
    tmp/                     work in progress; never read back
    locks/<key>.lock         advisory locks so two workers never produce one key twice
    locks/lease/<name>       leases: a live process holds these on what it writes or uses
    quarantine/              damaged entries moved aside (``store verify --fix`` and reads)
    log/commits.jsonl        one line per commit (what was computed, when, by whom)
    log/quarantine.jsonl     one line per quarantined entry

Keys are hashes of *what produced* an artifact, never display names. Every
write goes to ``tmp/`` first and is renamed into place, so a killed process
leaves no half-written artifact visible; the next run simply redoes that unit.

Every read is checked: an artifact against the sha256 of each file in its manifest
(once per process; files are re-hashed when their inode, size or mtime change), a
result record against the sha256 it carries. A damaged entry is moved to
``quarantine/`` with one line on stderr naming the key, the file and the action, and
is then missing, so the run that wanted it recomputes it. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from tokbench.errors import StoreError
from tokbench.hashing import canonical_json, file_identity, sha256_file

MANIFEST = "MANIFEST.json"
STORE_FORMAT = 1
#: the field of a result record holding the sha256 of the rest of the record
RECORD_HASH = "record_sha256"
SUBDIRS = ("objects", "partial", "results", "runs", "tmp", "locks", "log", "quarantine")


class DiskFullError(StoreError, OSError):
    """A write ran out of space (or quota); the message names the path and the space."""


def default_store_root() -> Path:
    return Path(os.environ.get("TOKBENCH_STORE", "tokbench-store"))


def _directory_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


#: what a full disk looks like without an errno: torch.save ("file write failed"), numpy's
#: ``tofile`` ("16384 requested and 12784 written")
_DISK_FULL_TEXT = ("No space left", "file write failed", "requested and")


def is_disk_full(error: BaseException, path: Path | None = None) -> bool:
    """Whether ``error`` (or what caused it) is the file system running out of space or quota:
    ENOSPC/EDQUOT, the texts torch and numpy use instead, or (``path`` given) an I/O error
    while the file system of ``path`` has less than 1 MB free."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, DiskFullError) or (isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT)):
            return True
        if isinstance(seen, (OSError, RuntimeError)) and any(text in str(seen) for text in _DISK_FULL_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    if path is not None and isinstance(error, (OSError, RuntimeError)):
        with contextlib.suppress(OSError, StopIteration):
            probe = path if path.exists() else next(p for p in path.parents if p.exists())
            return shutil.disk_usage(probe).free < 1_000_000
    return False


def disk_full_message(error: BaseException, path: Path | None, written: int | None = None, what: str = "") -> str:
    """One line: which path filled up, how much was being written, how much is free."""
    named = getattr(error, "filename", None) or path
    if named is None:  # e.g. pathlib's write_text: say where in the code instead
        import traceback

        frames = [f for f in traceback.extract_tb(error.__traceback__) if "tokbench" in f.filename] or \
            traceback.extract_tb(error.__traceback__)
        where = f" (in {frames[-1].name} at {Path(frames[-1].filename).name}:{frames[-1].lineno}; the path was not reported)" if frames else ""
        return f"no space left on a device{where}; free space (e.g. `tokbench store gc`) or point the store elsewhere"
    target = Path(named)
    probe = target if target.exists() else next((p for p in target.parents if p.exists()), Path("/"))
    try:
        usage = shutil.disk_usage(probe)
        space = f"{usage.free / 1e6:.1f} MB free of {usage.total / 1e6:.1f} MB"
    except OSError:
        space = "free space unknown"
    needed = f"; it needed more than the {written / 1e6:.1f} MB written so far" if written else ""
    return (f"no space left writing {what + ' ' if what else ''}{target} ({space} on that file system{needed}); "
            "free space (e.g. `tokbench store gc`) or point the store elsewhere, then run again")


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temporary file and rename it into place; the temporary file never
    outlives a failure (a full disk leaves nothing behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if is_disk_full(error, path) and not isinstance(error, DiskFullError):
            raise DiskFullError(errno.ENOSPC, disk_full_message(error, path)) from error
        raise


def record_digest(record: dict[str, Any]) -> str:
    """sha256 of a result record as stored (JSON round trip), without its own hash field."""
    plain = json.loads(json.dumps({k: v for k, v in record.items() if k != RECORD_HASH}, default=str))
    return hashlib.sha256(canonical_json(plain).encode()).hexdigest()


def check_directory(directory: Path, key: str | None = None) -> tuple[str, str] | None:
    """``None`` when every file the directory's manifest lists is there with its size and
    sha256 (hashes memoised per inode/size/mtime); else ``(file, problem)``."""
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        return MANIFEST, "missing (an incomplete or damaged entry)"
    except (OSError, ValueError) as error:
        return MANIFEST, f"unreadable ({type(error).__name__}: {error})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return MANIFEST, "has no file list"
    if key is not None and manifest.get("key") != key:
        return MANIFEST, f"belongs to key {manifest.get('key')!r}"
    for rel, info in files.items():
        path = directory / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return rel, "missing"
        if size != info.get("size"):
            return rel, f"is {size} bytes, the manifest says {info.get('size')}"
        if file_identity(path) != info.get("sha256"):
            return rel, "sha256 differs from the manifest (damaged or modified)"
    return None


def seal(directory: Path, names: list[str] | tuple[str, ...], label: str = "") -> None:
    """Record the sha256 of ``names`` in ``directory``/MANIFEST.json, for files that live
    outside committed artifacts (resume checkpoints in ``partial/``); :func:`check_directory`
    verifies them."""
    files = {name: {"sha256": sha256_file(directory / name), "size": (directory / name).stat().st_size} for name in names}
    write_json_atomic(directory / MANIFEST, {"format": STORE_FORMAT, "key": None, "kind": "sealed", "label": label,
                                              "created": time.time(), "files": files})


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
    #: damaged entries as (kind, key, path): what ``repair`` moves to quarantine
    damaged: list[tuple[str, str, Path]] = field(default_factory=list)
    #: not damage, but worth knowing (records written before records carried a hash)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"the store {self.root} is a file, not a directory; point --store or TOKBENCH_STORE "
                             "at a directory (it is created if missing)")
        for sub in SUBDIRS:
            try:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"cannot create the store directory {self.root / sub}: {error.strerror or error}; "
                                 "point --store or TOKBENCH_STORE at a directory you can write") from None
        self._verified: dict[str, tuple[int, int, int]] = {}  # object dir -> its manifest's (inode, size, mtime)
        self._records: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        self._leases: dict[str, Any] = {}
        self._used: set[str] = set()
        self._work_dirs: list[Path] = []

    def require_writable(self) -> None:
        """Raise one line when this process cannot write the store (a run needs to)."""
        for sub in ("objects", "results", "runs", "tmp", "locks"):
            if not os.access(self.root / sub, os.W_OK | os.X_OK):
                raise StoreError(f"the store {self.root} is read-only for this user ({self.root / sub} is not writable); "
                                 "run with --store or TOKBENCH_STORE pointing at a store you can write")

    # ---- paths --------------------------------------------------------------
    def object_dir(self, key: str) -> Path:
        return self.root / "objects" / key[:2] / key

    def has(self, key: str) -> bool:
        """Whether ``key`` is committed and intact. Verified on first use in this process
        (and again whenever its manifest changes); a damaged artifact is quarantined, so
        it reads as missing and the caller recomputes it."""
        if not self._intact(self.object_dir(key), key, "artifact", key):
            return False
        self._used.add(key)
        self._hold(f"use-{key}")
        return True

    def _intact(self, directory: Path, memo: str, kind: str, key: str | None) -> bool:
        """``directory`` matches its manifest (checked once per manifest version in this
        process); a damaged one is quarantined."""
        stat = _manifest_stat(directory)
        if stat is None:
            if not directory.exists():
                return False
            stat = _manifest_stat(directory)  # another writer's atomic rename may have landed in between
        if stat is not None and self._verified.get(memo) == (stat.st_ino, stat.st_size, stat.st_mtime_ns):
            return True
        problem = check_directory(directory, key)
        if problem is None:
            if stat is not None:  # (None: the manifest appeared during the check; it is verified again next time)
                self._verified[memo] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            return True
        self.quarantine(directory, kind, memo, f"{problem[0]} {problem[1]}")
        return False

    def path(self, key: str) -> Path:
        if not self.has(key):
            raise StoreError(f"artifact {key} is not in the store at {self.root}")
        return self.object_dir(key)

    def manifest(self, key: str) -> dict[str, Any]:
        return json.loads((self.path(key) / MANIFEST).read_text())

    def _tmp_dir(self, key: str) -> Path:
        """A private temporary directory, leased (``gc`` leaves it alone) while this process lives."""
        path = self.root / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._hold(f"tmp-{path.name}")
        path.mkdir(parents=True)
        return path

    def _discard(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        self._release(f"tmp-{tmp.name}")

    # ---- quarantine -----------------------------------------------------------
    def quarantine(self, path: Path, kind: str, key: str, problem: str) -> Path | None:
        """Move a damaged entry to ``quarantine/`` and say so in one line (stderr and
        ``log/quarantine.jsonl``). Returns where it went (``None`` if it could not move)."""
        self._verified.pop(key, None)
        self._records.pop(str(path), None)
        target = self.root / "quarantine" / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{path.name}-{uuid.uuid4().hex[:6]}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)
            action = f"moved to {target}; it will be recomputed"
        except FileNotFoundError:
            target, action = None, "already moved aside by another process"
        except OSError as error:
            target, action = None, f"could not be moved ({error.strerror or error}); ignored, run `tokbench store repair`"
        print(f"store: damaged {kind} {key}: {path} {problem}; {action}", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            line = json.dumps({"time": time.time(), "kind": kind, "key": key, "path": str(path), "problem": problem,
                               "moved_to": str(target) if target else None, "host": socket.gethostname(), "pid": os.getpid()})
            with open(self.root / "log" / "quarantine.jsonl", "a") as handle:
                handle.write(line + "\n")
        return target

    # ---- leases ---------------------------------------------------------------
    def _lease_path(self, name: str) -> Path:
        return self.root / "locks" / "lease" / name

    def _hold(self, name: str) -> None:
        """A shared lease on ``name`` for as long as this process lives (or until released):
        ``gc`` removes nothing a live process holds. Released by the kernel if it dies."""
        if name in self._leases:
            return
        path = self._lease_path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")
        except OSError:  # a read-only store: nothing this process holds can be collected by it anyway
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        self._leases[name] = handle

    def close(self) -> None:
        """Release every lease this Store holds (they also end with the process)."""
        for name in list(self._leases):
            self._release(name)

    def _release(self, name: str) -> None:
        handle = self._leases.pop(name, None)
        if handle is not None:
            handle.close()

    def is_leased(self, name: str) -> bool:
        return name in self._leases or _is_held(self._lease_path(name))

    def work_dir(self, key: str) -> Path:
        """``partial/<key>``: a persistent, leased scratch directory (resumable training);
        removed once the artifact being produced by this process commits."""
        path = self.root / "partial" / key
        self._hold(f"partial-{key}")
        path.mkdir(parents=True, exist_ok=True)
        self._work_dirs.append(path)
        return path

    # ---- inputs ---------------------------------------------------------------
    def begin_unit(self) -> None:
        """Start recording which artifacts this process uses (a unit's inputs)."""
        self._used = set()

    def used(self) -> list[str]:
        """Every artifact key found or produced since :meth:`begin_unit`."""
        return sorted(self._used)

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
        return _is_held(self.root / "locks" / f"{key}.lock")

    # ---- artifacts ----------------------------------------------------------
    def _commit_dir(self, tmp: Path, key: str, kind: str, meta: dict[str, Any]) -> Path:
        write_json_atomic(tmp / MANIFEST, _manifest_for(tmp, key, kind, meta))
        target = self.object_dir(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.has(key):  # a concurrent writer committed first: keep theirs
            self._discard(tmp)
            return target
        # (a damaged entry at ``target`` was quarantined by ``has``)
        _rename_into_place(tmp, target)
        self._release(f"tmp-{tmp.name}")
        self._used.add(key)
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
        to :class:`tokbench.runtime.ranks.RankStore`.
        """
        if self.has(key):
            return self.object_dir(key)
        with self.lock(key):
            if self.has(key):
                return self.object_dir(key)
            return self._produce(key, producer, kind, meta)

    def _produce(self, key: str, producer: Callable[[Path], dict[str, Any] | None], kind: str,
                 meta: dict[str, Any] | None) -> Path:
        """Run ``producer`` into a temporary directory and commit it (the caller holds the lock).
        On any failure the temporary directory is removed; a full disk says where and how much."""
        tmp = self._tmp_dir(key)
        opened = len(self._work_dirs)
        try:
            extra = producer(tmp)
            extra = extra if isinstance(extra, dict) else {}
            target = self._commit_dir(tmp, key, kind, {**(meta or {}), **extra})
        except BaseException as error:
            written = _directory_size(tmp)
            self._discard(tmp)
            if is_disk_full(error, tmp) and not isinstance(error, DiskFullError):
                raise DiskFullError(errno.ENOSPC, disk_full_message(error, tmp, written, f"{kind} {key} into")) from error
            raise
        # the producer's resumable scratch (training checkpoints) is of no use once its artifact exists
        for work in self._work_dirs[opened:]:
            shutil.rmtree(work, ignore_errors=True)
            self._release(f"partial-{work.name}")
        del self._work_dirs[opened:]
        return target

    def sharded(self, key: str, kind: str, num_shards: int, meta: dict[str, Any] | None = None) -> "ShardedArtifact":
        return ShardedArtifact(self, key, kind, num_shards, meta or {})

    # ---- result records -------------------------------------------------------
    def result_path(self, key: str) -> Path:
        return self.root / "results" / f"{key}.json"

    def has_result(self, key: str) -> bool:
        """Whether an intact record of ``key`` exists (a damaged one is quarantined)."""
        return self._read_record(self.result_path(key), key) is not None

    def put_result(self, key: str, record: dict[str, Any]) -> None:
        record = {k: v for k, v in record.items() if k != RECORD_HASH}
        record["key"] = key
        record[RECORD_HASH] = record_digest(record)
        write_json_atomic(self.result_path(key), record)
        self._log_commit(key, "result", {"label": record.get("label")})

    def get_result(self, key: str) -> dict[str, Any]:
        record = self._read_record(self.result_path(key), key)
        if record is None:
            raise StoreError(f"no result {key} in the store at {self.root}")
        return record

    def results(self) -> Iterator[dict[str, Any]]:
        """Every intact record (damaged ones are quarantined with a line on stderr)."""
        for path in sorted((self.root / "results").glob("*.json")):
            record = self._read_record(path, path.stem)
            if record is not None:
                yield record

    def _read_record(self, path: Path, key: str) -> dict[str, Any] | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._records.get(str(path))
        if cached is not None and cached[0] == signature:
            return json.loads(json.dumps(cached[1]))  # a copy: callers may edit theirs
        record, problem = _parse_record(path, key)
        if problem is not None:
            self.quarantine(path, "result", key, problem)
            return None
        self._records[str(path)] = (signature, record)  # type: ignore[assignment]
        return json.loads(json.dumps(record))

    def commits(self) -> list[dict[str, Any]]:
        log = self.root / "log" / "commits.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    # ---- maintenance ----------------------------------------------------------
    def artifacts(self) -> Iterator[dict[str, Any]]:
        for manifest in sorted((self.root / "objects").glob(f"*/*/{MANIFEST}")):
            try:
                data = json.loads(manifest.read_text())
                data["size"] = sum(f["size"] for f in data["files"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                print(f"store: unreadable manifest {manifest} ({type(error).__name__}); "
                      "`tokbench store verify` lists it, `tokbench store repair` moves it aside", file=sys.stderr)
                continue
            yield data

    def verify(self) -> VerifyReport:
        """Re-hash every committed file, every result record and every shard and sealed
        resume checkpoint in ``partial/``; report missing, changed and incomplete entries."""
        report = VerifyReport(0, [])

        def damaged(kind: str, key: str, path: Path, problem: str) -> None:
            report.problems.append(f"{kind} {key}: {path.relative_to(self.root)} {problem}")
            report.damaged.append((kind, key, path))

        for directory in sorted((self.root / "objects").glob("*/*")):
            report.checked += 1
            problem = _check_fresh(directory, directory.name)
            if problem is not None:
                damaged("artifact", directory.name, directory / problem[0], problem[1])
        for path in sorted((self.root / "results").glob("*.json")):
            report.checked += 1
            record, problem = _parse_record(path, path.stem)
            if problem is not None:
                damaged("result", path.stem, path, problem)
            elif record is not None and RECORD_HASH not in record:
                report.warnings.append(f"result {path.stem}: no {RECORD_HASH} (written by an older tokbench; "
                                       "cannot be checked)")
        for entry in sorted((self.root / "partial").glob("*")):
            for directory in sorted(p for p in entry.glob("shard-*") if p.is_dir()):
                report.checked += 1
                problem = _check_fresh(directory, None)
                if problem is not None:
                    damaged("shard", f"{entry.name}/{directory.name}", directory / problem[0], problem[1])
            if (entry / MANIFEST).is_file():  # a sealed resume checkpoint
                report.checked += 1
                problem = _check_fresh(entry, None)
                if problem is not None:
                    damaged("partial", entry.name, entry / problem[0], problem[1])
        return report

    def repair(self, report: VerifyReport | None = None) -> list[Path]:
        """Move every damaged entry of ``report`` (a fresh :meth:`verify` by default) to
        ``quarantine/``; the next run recomputes them. Returns the entries moved."""
        report = report or self.verify()
        moved = []
        for kind, key, path in report.damaged:
            entry = _entry_of(self.root, kind, path)
            if entry.exists() and self.quarantine(entry, kind, key, "failed verification") is not None:
                moved.append(entry)
        return moved

    def gc(self, dry_run: bool = False, unreferenced: bool = False, older_than_days: float = 7.0,
           keep_legacy: bool = False) -> list[Path]:
        """Remove leftovers of interrupted work and, with ``unreferenced``, artifacts no result
        depends on. Never touches what a live process holds (unit locks, leases on temporary,
        partial and used entries).

        - ``tmp/``: every entry no live process holds;
        - ``partial/``: entries of finished artifacts, and entries nobody holds that have not
          changed for ``older_than_days`` (abandoned resume checkpoints and shards);
        - ``quarantine/``: entries older than ``older_than_days``;
        - ``unreferenced``: artifacts that no record lists as an input or output. Records
          written before records listed their inputs make this refuse (``keep_legacy``:
          keep every artifact older than the newest such record instead)."""
        removed: list[Path] = []
        now = time.time()
        for path in sorted((self.root / "tmp").iterdir()):
            key = path.name.split(".")[0]
            if not self.is_leased(f"tmp-{path.name}") and not self.is_locked(key):
                removed.append(path)
        for path in sorted((self.root / "partial").iterdir()):
            if self.is_leased(f"partial-{path.name}") or self.is_locked(path.name):
                continue
            finished = (self.object_dir(path.name) / MANIFEST).is_file()
            if finished or now - _newest_mtime(path) > older_than_days * 86400:
                removed.append(path)
        for path in sorted((self.root / "quarantine").iterdir()):
            if now - _newest_mtime(path) > older_than_days * 86400:
                removed.append(path)
        if unreferenced:
            referenced: set[str] = set()
            legacy_before = 0.0
            legacy = []
            for record in self.results():
                referenced.update(record.get("artifacts", []))
                if "inputs" in record:
                    referenced.update(record["inputs"])
                else:
                    legacy.append(record["key"])
                    legacy_before = max(legacy_before, float(record.get("provenance", {}).get("started", now)))
            if legacy and not keep_legacy:
                raise StoreError(
                    f"{len(legacy)} result record(s) (e.g. {legacy[0]}) were written before records listed all their "
                    "inputs, so gc cannot tell which artifacts they depend on; pass --keep-legacy to keep every "
                    "artifact as old as they are, or rerun their suites after removing those records")
            for directory in sorted((self.root / "objects").glob("*/*")):
                key = directory.name
                if key in referenced or self.is_locked(key) or self.is_leased(f"use-{key}"):
                    continue
                if legacy and _newest_mtime(directory) <= legacy_before + 1:
                    continue
                removed.append(directory)
        if not dry_run:
            for path in removed:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        return removed


def _manifest_stat(directory: Path) -> os.stat_result | None:
    try:
        return (directory / MANIFEST).stat()
    except FileNotFoundError:
        return None


def _is_held(path: Path) -> bool:
    """Whether a live process holds a flock on ``path`` (locks and leases)."""
    try:
        handle = open(path, "r")
    except OSError:  # absent, or not ours to open (a read-only store)
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def _rename_into_place(tmp: Path, target: Path) -> bool:
    """Rename ``tmp`` to ``target``; if another writer got there first, keep theirs."""
    try:
        os.rename(tmp, target)
        return True
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def _check_fresh(directory: Path, key: str | None) -> tuple[str, str] | None:
    """:func:`check_directory` re-hashing every file (``store verify`` trusts no memo)."""
    from tokbench import hashing

    hashing._FILE_DIGEST_CACHE.clear()
    return check_directory(directory, key)


def _entry_of(root: Path, kind: str, path: Path) -> Path:
    """What to quarantine for a damaged file: the record, or its artifact, shard or scratch directory."""
    if kind == "result":
        return path
    depth = {"artifact": 3, "shard": 3, "partial": 2}[kind]  # objects/<k2>/<key>, partial/<key>/shard-N, partial/<key>
    return root.joinpath(*path.relative_to(root).parts[:depth])


def _newest_mtime(path: Path) -> float:
    try:
        newest = path.stat().st_mtime
        if path.is_dir():
            for child in path.rglob("*"):
                with contextlib.suppress(OSError):
                    newest = max(newest, child.stat().st_mtime)
        return newest
    except OSError:
        return time.time()


def _parse_record(path: Path, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) for an intact record file, else (None, what is wrong with it)."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as error:
        return None, f"is not readable JSON ({type(error).__name__}: {error})"
    if not isinstance(record, dict):
        return None, f"holds a JSON {type(record).__name__}, not a record"
    if record.get("key") != key:
        return None, f"says key {record.get('key')!r}"
    if RECORD_HASH in record and record[RECORD_HASH] != record_digest(record):
        return None, f"does not match its {RECORD_HASH} (edited or damaged)"
    return record, None


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
        """Whether shard ``index`` is committed and intact (a damaged shard is quarantined)."""
        if self.complete:
            return True
        return self.store._intact(self.partial / self.shard_name(index), f"{self.key}/{index}", "shard", None)

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
        self.store._hold(f"partial-{self.key}")  # gc keeps the partial shards while this process writes
        tmp = self.store._tmp_dir(f"{self.key}")
        try:
            producer(tmp)
            write_json_atomic(tmp / MANIFEST, _manifest_for(tmp, f"{self.key}/{index}", self.kind + "-shard", {}))
            self.partial.mkdir(parents=True, exist_ok=True)
            target = self.partial / self.shard_name(index)
            _rename_into_place(tmp, target)  # a concurrent writer of the same shard: keep theirs
        except BaseException as error:
            written = _directory_size(tmp)
            self.store._discard(tmp)
            if is_disk_full(error, tmp) and not isinstance(error, DiskFullError):
                raise DiskFullError(errno.ENOSPC, disk_full_message(
                    error, tmp, written, f"shard {index} of {self.kind} {self.key} into")) from error
            raise
        self.store._release(f"tmp-{tmp.name}")
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
            self.store._release(f"partial-{self.key}")
            self.store._used.add(self.key)
            self.store._log_commit(self.key, self.kind, meta)
            return target
