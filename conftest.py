"""Loaded by pytest before any test module (and torch): the same OpenMP spin limit as the
``tokbench`` command (see tokbench/cli/main.py), so tests stay fast on a CPU shared with other work."""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "3000")

_SECONDS_BY_FILE: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """Sum each test file's setup + call + teardown seconds (printed at the end of the run)."""
    path = report.nodeid.split("::", 1)[0]
    _SECONDS_BY_FILE[path] = _SECONDS_BY_FILE.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """Where the test command's time goes, by file (slowest 25): the figures docs/performance.md keeps."""
    if not _SECONDS_BY_FILE:
        return
    total = sum(_SECONDS_BY_FILE.values())
    terminalreporter.section("seconds by test file (slowest 25)")
    for path, seconds in sorted(_SECONDS_BY_FILE.items(), key=lambda item: -item[1])[:25]:
        terminalreporter.write_line(f"{seconds:8.1f} s  {100 * seconds / total:5.1f} %  {path}")
    terminalreporter.write_line(f"{total:8.1f} s  in {len(_SECONDS_BY_FILE)} files")
