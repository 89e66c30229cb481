"""Where a run's time went: the ``timings`` each unit records (``tokbench.runtime.timing``), as a table
with the slowest units first. Shown by ``tokbench status`` and written beside the leaderboard
(``timings.md``). Torch-free."""

from __future__ import annotations

from typing import Any, Iterable

from tokbench.runtime.timing import PHASES, format_seconds

OTHER = "other"  # wall time outside every marked phase (loading, planning the unit, writing)


def timing_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{"label", "total", "phases": {name: s}}`` per record with timings, slowest first; the
    time outside the marked phases is the phase ``other``."""
    rows = []
    for record in records:
        timings = record.get("timings")
        if not timings:
            continue
        phases = dict(timings.get("phases", {}))
        outside = timings["total"] - sum(phases.values())
        if outside >= 0.05:
            phases[OTHER] = outside
        rows.append({"label": record.get("label", record.get("key", "?")), "total": float(timings["total"]), "phases": phases})
    return sorted(rows, key=lambda row: -row["total"])


def timing_table(records: Iterable[dict[str, Any]], limit: int | None = None) -> str:
    """A Markdown table: one row per unit (slowest first, at most ``limit``), its wall time, its
    share of the run, and seconds per phase; the last row sums the units. Empty without timings."""
    rows = timing_rows(records)
    if not rows:
        return ""
    present = {name for row in rows for name in row["phases"]}
    columns = [name for name in (*PHASES, *sorted(present - set(PHASES) - {OTHER}), OTHER) if name in present]
    grand = sum(row["total"] for row in rows)
    header = ["unit", "wall", "share", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]

    def cells(phases: dict[str, float]) -> list[str]:
        return [format_seconds(phases[name]) if name in phases else "" for name in columns]

    shown = rows if limit is None else rows[:limit]
    for row in shown:
        share = f"{100 * row['total'] / grand:.0f}%" if grand > 0 else ""
        lines.append("| " + " | ".join([row["label"], format_seconds(row["total"]), share, *cells(row["phases"])]) + " |")
    if len(shown) < len(rows):
        lines.append(f"| ({len(rows) - len(shown)} faster unit(s)) | | | " + " | ".join("" for _ in columns) + " |")
    totals = {name: sum(row["phases"].get(name, 0.0) for row in rows) for name in columns}
    lines.append("| " + " | ".join([f"all {len(rows)} unit(s)", format_seconds(grand), "100%", *cells(totals)]) + " |")
    return "\n".join(lines)
