"""Per-unit wall time by phase (tokbench.runtime.timing), its table (tokbench.report.timings) and the
unchanged-leaderboard check (tokbench.report.unchanged). Torch-free, a fake clock: no timing asserted."""

from __future__ import annotations

import json

import pytest

from tokbench.report.timings import timing_rows, timing_table
from tokbench.report.unchanged import leaderboard_digest, mark, unchanged
from tokbench.runtime import timing


@pytest.fixture
def clock(monkeypatch):
    """time.perf_counter as a counter the test advances; progress output on (the suite's
    conftest may turn it off)."""
    monkeypatch.delenv(timing.ENV_NO_PROGRESS, raising=False)
    now = [100.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    return now


def test_phases_are_exclusive_and_add_up(clock, capsys):
    with timing.recording() as times:
        with timing.phase("generator training", "dit"):
            clock[0] += 3
            with timing.phase("encoding"):  # nested: its time leaves the outer phase
                clock[0] += 2
            clock[0] += 1
        with timing.phase("generator training"):  # entered again: accumulates
            clock[0] += 4
        clock[0] += 0.5  # outside every phase
        record = timing.current_record()
    assert record == {"total": 10.5, "phases": {"generator training": 8.0, "encoding": 2.0}}
    assert times.seconds == {"generator training": 8.0, "encoding": 2.0}
    assert timing.current_record() is None  # the recording ended
    err = capsys.readouterr().err  # not a terminal: one line per start and end
    assert "  > generator training (dit)\n" in err and "  < generator training (dit): 6.0s\n" in err
    assert "  < encoding: 2.0s\n" in err


def test_phase_without_recording_only_reports(clock, capsys):
    with timing.phase("sampling"):
        clock[0] += 1
    assert timing.current_record() is None and "< sampling: 1.0s" in capsys.readouterr().err


def test_quiet_phases_and_no_progress(clock, capsys, monkeypatch):
    with timing.recording():
        with timing.phase("tokenizer loading", "vae", quiet_below=1.0):
            clock[0] += 0.2
        with timing.phase("tokenizer loading", "vtp", quiet_below=1.0):
            clock[0] += 2
        assert timing.current_record()["phases"] == {"tokenizer loading": pytest.approx(2.2)}
    assert capsys.readouterr().err == "  < tokenizer loading (vtp): 2.0s\n"  # no start line, fast one silent
    with timing.recording(progress=False):
        with timing.phase("sampling"):
            clock[0] += 1
    monkeypatch.setenv(timing.ENV_NO_PROGRESS, "1")
    with timing.phase("scoring"):
        pass
    assert capsys.readouterr().err == ""


def test_off_a_terminal_long_loops_print_a_line_with_their_eta_now_and_then(clock, capsys, monkeypatch):
    monkeypatch.setattr(timing, "LINE_EVERY_S", 30.0)
    seen = []
    for item in timing.progress([1, 2, 3, 4], "probe head grid", 4):  # pytest's stderr is not a terminal
        clock[0] += 20  # the line is due after the second item, then after the fourth
        seen.append(item)
    assert seen == [1, 2, 3, 4]
    assert capsys.readouterr().err.splitlines() == [
        "  . probe head grid: 2/4 its, 40.0s in, about 40.0s left",
        "  . probe head grid: 4/4 its, 1m20s in, about 0.0s left",
    ]
    bar = timing.progress_bar(300, "vtp pretraining", initial=100)  # resumed at step 100
    clock[0] += 10
    bar.update(20)
    assert capsys.readouterr().err == ""  # not due yet
    clock[0] += 20
    bar.update(20)
    bar.set_postfix(loss=1.0)
    bar.close()
    assert capsys.readouterr().err == "  . vtp pretraining: 140/300 steps, 30.0s in, about 2m00s left\n"
    assert not hasattr(bar, "n")  # no tqdm object behind it
    monkeypatch.setenv(timing.ENV_NO_PROGRESS, "1")
    items = [1, 2]
    assert timing.progress(items, "x", 2) is items


def test_format_seconds():
    assert [timing.format_seconds(s) for s in (0.04, 59.94, 61, 3600 + 125)] == ["0.0s", "59.9s", "1m01s", "1h02m"]


RECORDS = [
    {"key": "a", "label": "reconstruction/vae", "timings": {"total": 10.0, "phases": {"encoding": 6.0, "feature extraction": 3.0}}},
    {"key": "b", "label": "prepare vae", "timings": {"total": 90.0, "phases": {"tokenizer training": 90.0}}},
    {"key": "c", "label": "old record"},  # computed before timings existed: left out
    {"key": "d", "label": "generation/vae", "timings": {"total": 20.0, "phases": {"generator training": 12.0, "sampling": 4.0,
                                                                                   "scoring": 2.0}}},
]


def test_timing_rows_slowest_first_with_other():
    rows = timing_rows(RECORDS)
    assert [r["label"] for r in rows] == ["prepare vae", "generation/vae", "reconstruction/vae"]
    assert rows[2]["phases"]["other"] == pytest.approx(1.0) and "other" not in rows[0]["phases"]


def test_timing_table():
    lines = timing_table(RECORDS).splitlines()
    assert lines[0] == ("| unit | wall | share | tokenizer training | encoding | feature extraction | generator training "
                        "| sampling | scoring | other |")
    assert lines[2] == "| prepare vae | 1m30s | 75% | 1m30s |  |  |  |  |  |  |"
    assert lines[4] == "| reconstruction/vae | 10.0s | 8% |  | 6.0s | 3.0s |  |  |  | 1.0s |"
    assert lines[-1] == "| all 3 unit(s) | 2m00s | 100% | 1m30s | 6.0s | 3.0s | 12.0s | 4.0s | 2.0s | 3.0s |"
    limited = timing_table(RECORDS, limit=1).splitlines()
    assert limited[3].startswith("| (2 faster unit(s))") and limited[-1].startswith("| all 3 unit(s) | 2m00s")
    assert timing_table([{"label": "x"}]) == ""


def test_unchanged_leaderboard(tmp_path):
    records = [dict(r) for r in RECORDS]
    digest = leaderboard_digest(records, {"plots": True}, ["html"])
    assert digest == leaderboard_digest(list(reversed(records)), {"plots": True}, ["html"])  # order-free
    assert digest != leaderboard_digest(records, {"plots": False}, ["html"])
    assert digest != leaderboard_digest([*records[:3], {**records[3], "metrics": {"gfid": 1.0}}], {"plots": True}, ["html"])
    assert unchanged(tmp_path, digest) is None  # never written
    (tmp_path / "index.html").write_text("<html>")
    mark(tmp_path, digest, {"html": tmp_path / "index.html"}, "| table |")
    assert unchanged(tmp_path, digest) == ({"html": tmp_path / "index.html"}, "| table |")
    assert unchanged(tmp_path, "another digest") is None
    (tmp_path / "index.html").unlink()  # incomplete folder: rebuilt
    assert unchanged(tmp_path, digest) is None
    assert json.loads((tmp_path / ".inputs").read_text())["files"] == {"html": "index.html"}
