"""Wall time by phase, and progress on long work (torch-free).

A unit runs inside :func:`recording`; any code below it (tasks, plugin trainers, the store's
producers) marks its phases with ``with phase("generator training"):`` and wraps long loops in
:func:`progress`. Phases nest: a phase's time excludes the phases inside it, so a unit's phases
add up to at most its wall time. The runner writes the result into the unit's store record as
``timings`` (``{"total": s, "phases": {name: s}}``); ``tokbench status`` and the leaderboard
(``timings.md``) show it.

Output goes to stderr. Progress bars (tqdm, with an ETA) appear only on a terminal; elsewhere (CI
logs, Slurm, subprocess workers) each phase prints one line when it starts and one when it ends,
and a long loop one line every :data:`LINE_EVERY_S` seconds with its count and ETA (the local
backend forwards its workers' lines to the terminal).
``TOKBENCH_NO_PROGRESS=1`` (or ``tokbench run --no-progress``) turns both off.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")

#: the phases tokbench itself marks, in the order a unit goes through them
PHASES = ("tokenizer training", "tokenizer loading", "encoding", "feature extraction", "probe training",
          "generator training", "sampling", "scoring")
ENV_NO_PROGRESS = "TOKBENCH_NO_PROGRESS"
#: seconds between two progress lines of one loop where no bar can be drawn
LINE_EVERY_S = 30.0


@dataclass
class PhaseTimes:
    """Exclusive wall seconds per phase name, accumulated (a phase entered twice adds up)."""

    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=lambda: time.perf_counter())
    _stack: list[list[float]] = field(default_factory=list)  # per open phase: [start, seconds of inner phases]

    def to_record(self) -> dict[str, Any]:
        return {"total": round(time.perf_counter() - self.started, 3),
                "phases": {name: round(value, 3) for name, value in self.seconds.items()}}


_ACTIVE: ContextVar[PhaseTimes | None] = ContextVar("tokbench_phase_times", default=None)
_PROGRESS: ContextVar[bool] = ContextVar("tokbench_progress", default=True)


def progress_enabled() -> bool:
    return _PROGRESS.get() and os.environ.get(ENV_NO_PROGRESS) != "1"


@contextlib.contextmanager
def recording(progress: bool = True) -> Iterator[PhaseTimes]:
    """Collect the phases of the code inside (one unit); ``progress``: bars and phase lines."""
    times = PhaseTimes()
    token, flag = _ACTIVE.set(times), _PROGRESS.set(progress)
    try:
        yield times
    finally:
        _ACTIVE.reset(token)
        _PROGRESS.reset(flag)


def current_record() -> dict[str, Any] | None:
    """The active recording as stored in a record (``None`` outside :func:`recording`)."""
    times = _ACTIVE.get()
    return times.to_record() if times is not None else None


@contextlib.contextmanager
def phase(name: str, detail: str = "", quiet_below: float | None = None) -> Iterator[None]:
    """Time the code inside as ``name`` in the active recording (if any); ``detail`` (e.g. the
    tokenizer) only goes into the start/end lines. ``quiet_below``: for phases that are usually
    instant (loading a stored tokenizer), no start line, and an end line only from that many seconds."""
    times = _ACTIVE.get()
    verbose = progress_enabled()
    text = f"{name}{f' ({detail})' if detail else ''}"
    if verbose and quiet_below is None:
        _say(f"  > {text}")
    frame = [time.perf_counter(), 0.0]
    if times is not None:
        times._stack.append(frame)
    try:
        yield
    finally:
        elapsed = time.perf_counter() - frame[0]
        if times is not None:
            times._stack.pop()
            times.seconds[name] = times.seconds.get(name, 0.0) + elapsed - frame[1]
            if times._stack:
                times._stack[-1][1] += elapsed
        if verbose and (quiet_below is None or elapsed >= quiet_below):
            _say(f"  < {text}: {format_seconds(elapsed)}")


def progress(iterable: Iterable[T], desc: str, total: int | None = None, initial: int = 0, unit: str = "it") -> Iterable[T]:
    """``iterable`` with a progress bar and ETA on stderr: a tqdm bar on a terminal, else a
    line every :data:`LINE_EVERY_S` seconds."""
    if not progress_enabled():
        return iterable
    if not _is_tty():
        return _counted(iterable, ProgressLines(total, desc, initial, unit))
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, initial=initial, unit=unit, leave=False, dynamic_ncols=True,
                file=sys.stderr)


def _counted(iterable: Iterable[T], lines: "ProgressLines") -> Iterator[T]:
    for item in iterable:
        yield item
        lines.update()


class _NoBar:
    """What :func:`progress_bar` returns when progress is off."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressLines(_NoBar):
    """A progress bar's stand-in where none can be drawn: ``desc: 120/300 steps, 1m10s in,
    about 1m45s left`` every :data:`LINE_EVERY_S` seconds."""

    def __init__(self, total: int | None, desc: str, initial: int = 0, unit: str = "step") -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.count = self.first = initial
        self.started = self.said = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.perf_counter()
        if now - self.said >= LINE_EVERY_S:
            self.said = now
            _say(f"  . {self.describe(now)}")

    def describe(self, now: float) -> str:
        elapsed, done = now - self.started, self.count - self.first
        if not self.total:
            return f"{self.desc}: {self.count} {self.unit}s, {format_seconds(elapsed)} in"
        left = (self.total - self.count) * elapsed / done if done else None
        eta = f", about {format_seconds(left)} left" if left is not None else ""
        return f"{self.desc}: {self.count}/{self.total} {self.unit}s, {format_seconds(elapsed)} in{eta}"


def progress_bar(total: int, desc: str, initial: int = 0, unit: str = "step", enabled: bool = True) -> Any:
    """A bar updated by hand (``update()``, ``close()``) for loops that are not ``for`` loops;
    shown as :func:`progress` is (``enabled``: e.g. on rank 0 only), else an object whose
    methods do nothing."""
    if not enabled or not progress_enabled():
        return _NoBar()
    if not _is_tty():
        return ProgressLines(total, desc, initial, unit)
    from tqdm.auto import tqdm

    return tqdm(desc=desc, total=total, initial=initial, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr)


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def _say(line: str) -> None:
    if _is_tty():  # above a live bar: tqdm's write keeps the bar intact
        try:
            from tqdm.auto import tqdm

            tqdm.write(line, file=sys.stderr)
            return
        except ImportError:  # pragma: no cover - tqdm is a dependency
            pass
    print(line, file=sys.stderr, flush=True)
