"""Intervals, ties and rank ranges on the cells of a table (torch-free).

``Verdicts`` wraps a :class:`tokbench.verdicts.engine.VerdictEngine` (which reads each
result's per-item evidence from the store) and the suite's ``report:`` settings. For every
column it gives each cell its confidence interval, tests every pair of cells that can be
compared, adjusts the p-values with Holm within the column, and marks the best cell and every
cell not significantly different from it (``tied_with_best``); ranks become ranges where the
tests cannot order cells. A cell whose result has no stored evidence (a plugin task that
keeps none, a record from an older tokbench) keeps its value, gets no interval, and is
never declared different from another: the table says so.
"""

from __future__ import annotations

import math
from typing import Iterator

from tokbench.report.metrics import MetricInfo
from tokbench.report.table_model import Cell, Column

#: metrics that are Fréchet distances: biased upward at small N (footnoted below this N)
FRECHET_METRICS = {"rfid", "gfid"}
FID_UNBIASED_N = 10_000


class Verdicts:
    def __init__(self, store, level: float = 0.95, resamples: int = 1000, seed: int = 0,
                 interval_style: str = "halfwidth"):
        from tokbench.stats import BootstrapSettings
        from tokbench.verdicts.engine import VerdictEngine

        self.settings = BootstrapSettings(level=level, resamples=resamples, seed=seed)
        self.engine = VerdictEngine(store, self.settings)
        self.interval_style = interval_style
        self.untested = False
        self._comparisons: dict[tuple[int, int], object] = {}

    @classmethod
    def from_config(cls, store, config) -> "Verdicts":
        """From a suite's ``report:`` section (``tokbench.config.suite.ReportConfig``)."""
        return cls(store, level=config.confidence, resamples=config.resamples, seed=config.seed,
                   interval_style=config.interval_style)

    @property
    def alpha(self) -> float:
        return 1.0 - self.settings.level

    # ---- one cell --------------------------------------------------------------------------------
    def interval(self, cell: Cell, info: MetricInfo | None = None) -> None:
        from tokbench.verdicts.engine import seed_interval
        from tokbench.verdicts.evidence import EvidenceError

        if cell.value is None:
            return
        if info is not None and info.exact:
            cell.ci_low = cell.ci_high = float(cell.value)
            cell.ci_method = "exact: a count, not an estimate from samples"
            return
        if cell.seed_values:
            found = seed_interval(cell.seed_values, self.settings.level)
        elif cell.evidence:
            try:
                found = self.engine.interval(cell.evidence, cell.value)
            except (EvidenceError, OSError, KeyError, ValueError) as error:
                cell.ci_method = f"no interval: evidence unreadable ({error})"
                return
        else:
            cell.ci_method = "no interval: the result stored no per-item evidence"
            return
        cell.ci_low, cell.ci_high, cell.ci_method = float(found.low), float(found.high), found.method

    def _compare(self, a: Cell, b: Cell, info: MetricInfo):
        """The test of ``a`` against ``b`` (memoised: a column asks for some pairs twice)."""
        key = (id(a), id(b))
        if key not in self._comparisons:
            self._comparisons[key] = self._test(a, b, info)
        return self._comparisons[key]

    def _test(self, a: Cell, b: Cell, info: MetricInfo):
        from tokbench.stats import Comparison, Interval
        from tokbench.verdicts.engine import compare_seed_groups
        from tokbench.verdicts.evidence import EvidenceError

        if info.exact:
            difference = a.value - b.value
            return Comparison(0.0 if difference else 1.0, difference, Interval(difference, difference, "exact"),
                              "exact values: any difference is real")
        if a.seed_values and b.seed_values:
            return compare_seed_groups(a.seed_values, b.seed_values)
        if a.evidence and b.evidence and not a.seed_values and not b.seed_values:
            try:
                return self.engine.compare(a.evidence, a.value, b.evidence, b.value)
            except (EvidenceError, OSError, KeyError, ValueError):
                pass
        self.untested = True
        nan = float("nan")
        return Comparison(1.0, a.value - b.value, Interval(nan, nan, "not tested"),
                          "not tested (no per-item evidence on both sides)")

    # ---- one column ------------------------------------------------------------------------------
    def judge_column(self, cells: list[Cell | None], info: MetricInfo, footnotes: dict[str, str],
                     marks: Iterator[str]) -> None:
        from tokbench.stats import column_verdict

        for cell in cells:
            if cell is not None:
                self.interval(cell, info)
        if info.higher_is_better is None:
            return
        contenders = [c for c in cells if c is not None and c.value is not None and not c.notes]
        if not contenders:
            return
        if len(contenders) == 1:
            contenders[0].tied_with_best, contenders[0].rank_range = True, (1, 1)
            return
        verdict = column_verdict([c.value for c in contenders], info.higher_is_better,
                                 lambda i, j: self._compare(contenders[i], contenders[j], info), alpha=self.alpha)
        best = contenders[verdict.best]
        for index, cell in enumerate(contenders):
            cell.tied_with_best = bool(verdict.tied_with_best[index])
            cell.rank_range = tuple(int(r) for r in verdict.rank_ranges[index])
            p_value = verdict.p_vs_best[index]
            cell.p_vs_best = None if p_value is None or math.isnan(p_value) else float(p_value)
            if cell is not best:
                cell.test = self._compare(cell, best, info).test

    def annotate_table(self, columns: list[Column], cells: dict, footnotes: dict[str, str], marks: Iterator[str]) -> None:
        """Footnote FID columns measured below 10,000 images."""
        for index, column in enumerate(columns):
            if column.metric not in FRECHET_METRICS:
                continue
            small = sorted({c.n for (r, k), c in cells.items() if k == index and c.n is not None and c.n < FID_UNBIASED_N})
            if not small:
                continue
            mark = next(marks)
            sizes = ", ".join(str(n) for n in small)
            footnotes[mark] = (f"{column.label} at N = {sizes}: FID is biased upward below {FID_UNBIASED_N:,} images "
                               "(Chong & Forsyth 2020); compare only values at equal N (KID is unbiased)")
            for (r, k), cell in cells.items():
                if k == index and cell.n is not None and cell.n < FID_UNBIASED_N:
                    cell.notes.append(mark)

    def settings_text(self) -> str:
        level = f"{self.settings.level:.0%}"
        text = (f"± / [ ]: {level} confidence intervals (bootstrap over the evaluated items, "
                f"{self.settings.resamples} resamples, seed {self.settings.seed}; Wilson for accuracies; "
                "t over seeds for seed means). Bold: the best cell and every cell not significantly different from it "
                f"at α = {self.alpha:.2g} (paired bootstrap over the same images, McNemar for accuracies, unpaired "
                "bootstrap for generated samples, Welch t between seed means; Holm-adjusted within each column); "
                "rank ranges where the tests cannot order cells.")
        if self.untested:
            text += " Cells without stored per-item evidence are not tested and count as tied."
        return text
