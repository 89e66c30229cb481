"""Skip rebuilding a leaderboard nothing has changed: a rerun of a finished suite prints the tables
it printed last time and keeps the folder it wrote (building the frame, the intervals and the plots
is most of a cached rerun's time).

The folder holds ``.inputs`` = a digest of what the leaderboard is made of: the records (their
files' bytes), the suite's report settings, the formats, and the source of ``tokbench.report``.
Plots read stored artifacts, which are content-addressed, so the records name them exactly.
Torch-free."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

MARKER = ".inputs"


def leaderboard_digest(records: Iterable[dict[str, Any]], settings: Any, formats: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.get("key", "")):
        digest.update(json.dumps(record, sort_keys=True, default=str).encode())
    dumped = settings.model_dump(mode="json") if hasattr(settings, "model_dump") else settings
    digest.update(json.dumps([dumped, sorted(formats)], sort_keys=True, default=str).encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):  # the code that draws it
        digest.update(path.read_bytes())
    return digest.hexdigest()


def unchanged(directory: Path, digest: str) -> tuple[dict[str, Path], str] | None:
    """(the files of ``directory``, the text printed with them) if it was written from ``digest``
    and is complete, else None."""
    marker = directory / MARKER
    try:
        stored = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    files = {name: directory / relative for name, relative in stored.get("files", {}).items()}
    if stored.get("digest") != digest or not all(path.is_file() for path in files.values()):
        return None
    return files, stored.get("printed", "")


def mark(directory: Path, digest: str, written: dict[str, Path], printed: str) -> None:
    """Record that ``directory`` now holds the leaderboard of ``digest`` (written last), and what
    was printed with it."""
    files = {name: str(path.relative_to(directory)) for name, path in written.items()}
    (directory / MARKER).write_text(json.dumps({"digest": digest, "files": files, "printed": printed}, indent=1))
