"""The ladder's part of a report: a curve per tokenizer through its rungs, the metric predicted
at a target budget with an interval, the probability that the predicted ranking holds, the
ladder plot, and the "predicted at <budget>" table (Markdown, kept apart from the measured
tables: a prediction never enters a measured column). Torch-free.

The default target is each task's full budget, predicted from the rungs alone, so the
measured full-budget result (when there is one) is a held-out check shown beside it. With a
larger ``target_flops`` the fit uses the rungs and the full-budget result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from tokbench.ladders.data import Ladder, Point, centred_replicates, collect, engine_for
from tokbench.ladders.fit import Prediction, predict_group, predicted_ranking
from tokbench.report.figure import new_figure, to_plot
from tokbench.stats import BootstrapSettings

TABLE_FILE = "predicted.md"


@dataclass
class LadderGroup:
    """The ladders of one (suite, task, dataset) and what they predict at ``target_flops``."""

    suite: str | None
    task: str
    dataset: str
    target_flops: float
    ladders: list[Ladder]
    seed: int | None = None
    points: dict[str, list[Point]] = field(default_factory=dict)  # what each fit used
    data: dict[str, tuple] = field(default_factory=dict)  # tokenizer -> (flops, values, replicates) of those points
    predictions: dict[str, Prediction] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # tokenizer -> why no prediction
    errors: dict[str, np.ndarray] = field(default_factory=dict)  # tokenizer -> (2, rungs) interval below/above each rung
    ranking: list[str] = field(default_factory=list)
    probability: float | None = None


def ladder_groups(records: Iterable[dict[str, Any]], store, settings: BootstrapSettings | None = None,
                  target_flops: float | None = None, metric: str = "gfid") -> list[LadderGroup]:
    """Fit every ladder in ``records`` and predict at ``target_flops`` (default: the task's budget)."""
    settings = settings or BootstrapSettings()
    engine = engine_for(store, settings)
    groups: dict[tuple, LadderGroup] = {}
    for ladder in collect(records, metric):
        key = (ladder.suite, ladder.task, ladder.dataset, ladder.seed)
        target = float(target_flops or ladder.budget)
        group = groups.setdefault(key, LadderGroup(ladder.suite, ladder.task, ladder.dataset, target, [], ladder.seed))
        group.ladders.append(ladder)
        points = [p for p in ladder.rungs if p.flops < target]
        # the full result is data below a larger target; at the task's own budget it is held out (its
        # achieved FLOPs fall short of the budget by up to half a step)
        if ladder.full is not None and target > ladder.budget * 1.001 and ladder.full.flops < target * 0.999:
            points.append(ladder.full)
        group.points[ladder.tokenizer] = points
        try:
            tail = (1 - settings.level) / 2
            bounds = np.array([np.quantile(centred_replicates(engine, p), [tail, 1 - tail]) for p in ladder.rungs])
            values = np.array([p.value for p in ladder.rungs])
            group.errors[ladder.tokenizer] = np.clip(np.stack([values - bounds[:, 0], bounds[:, 1] - values]), 0, None)
        except Exception:  # noqa: BLE001 - no interval: the rungs are drawn without bars
            pass
        if len(points) < 2:
            group.problems[ladder.tokenizer] = f"{len(points)} rung(s) below the target: a curve needs 2"
            continue
        try:
            replicates = np.stack([centred_replicates(engine, p) for p in points])
            group.data[ladder.tokenizer] = ([p.flops for p in points], [p.value for p in points], replicates)
        except Exception as error:  # noqa: BLE001 - evidence unreadable: said in the table
            group.problems[ladder.tokenizer] = f"{type(error).__name__}: {error}"
    for group in groups.values():
        try:  # the curve family's error is estimated once per task, from all its ladders' walk-forward errors
            group.predictions = predict_group(group.data, group.target_flops, settings)
        except Exception as error:  # noqa: BLE001 - a degenerate fit: said in the table
            group.problems.update({name: f"{type(error).__name__}: {error}" for name in group.data})
        if group.predictions:
            group.ranking, group.probability = predicted_ranking(group.predictions)
    return list(groups.values())


def _flops(value: float) -> str:
    return f"{value:.3g}"


def prediction_table(groups: list[LadderGroup], metric: str = "gfid") -> str:
    """Markdown: per group, each tokenizer's predicted metric with its interval, the curve, the
    measured value at the target where one exists (held out of the fit), and the ranking's probability."""
    if not groups:
        return ""
    lines = []
    for group in groups:
        level = next(iter(group.predictions.values())).interval.method.split("%")[0] + "%" if group.predictions else ""
        seed = f" (generator seed {group.seed})" if group.seed is not None and len(groups) > 1 else ""
        error = next(iter(group.predictions.values())).model_error if group.predictions else None
        widened = (f"plus a draw of the curve family's error, estimated from the task's walk-forward errors (each rung "
                   f"predicted from the rungs below it): {error.describe()}" if error is not None and error.dof else
                   "the curve family's error is NOT included: no rung can be predicted from the rungs below it (add rungs)")
        lines += [f"## PREDICTED at {_flops(group.target_flops)} training FLOPs: {group.task} / {group.dataset}{seed}", "",
                  f"Extrapolated from each tokenizer's ladder rungs, not measured. Interval: {level} bootstrap of the rungs "
                  f"carried through the refit, {widened} (docs/ladders.md).",
                  "", f"| rank | tokenizer | predicted {metric} | interval | curve | rungs | fitted on (FLOPs) | extrapolation "
                  f"| leave-one-out RMSE | measured at target (held out) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for rank, name in enumerate(group.ranking, 1):
            prediction = group.predictions[name]
            fit = prediction.fit
            curve = (f"power: {fit.params['a']:.3g}·C^-{fit.params['b']:.3g} + {fit.params['c']:.3g}" if fit.model == "power"
                     else f"loglinear: {fit.params['alpha']:.3g} {fit.params['beta']:+.3g}·ln(C/target)")
            ladder = next(l for l in group.ladders if l.tokenizer == name)
            held = ("—" if ladder.full is None or abs(ladder.full.flops / group.target_flops - 1) > 0.01
                    else f"{ladder.full.value:.4g}")
            used = ", ".join(_flops(p.flops) for p in group.points[name])
            loo = ", ".join(f"{m} {v:.3g}" for m, v in fit.loo_rmse.items() if np.isfinite(v)) or "—"
            lines.append(f"| {rank} | {name} | {prediction.value:.4g} | [{prediction.interval.low:.4g}, "
                         f"{prediction.interval.high:.4g}] | {curve} | {prediction.rungs} | {used} | "
                         f"{prediction.extrapolation:.3g}x | {loo} | {held} |")
        for ladder in group.ladders:
            if ladder.stopped:
                lines.append(f"| — | {ladder.tokenizer} | stopped | | {ladder.stopped.get('reason', '')} | | | | | |")
        for name, problem in group.problems.items():
            lines.append(f"| — | {name} | no prediction | | {problem} | | | | | |")
        if group.probability is not None and len(group.ranking) > 1:
            lines += ["", f"Probability that the predicted ranking ({' < '.join(group.ranking)}) holds: "
                          f"**{group.probability:.2f}** (fraction of joint draws, model error included, in that order; "
                          "the tokenizers' model errors are drawn independently)."]
        lines.append("Extrapolation: the target over the largest budget fitted; the model error's share grows with its logarithm.")
        saved = sum(l.stopped.get("flops_saved", 0.0) for l in group.ladders if l.stopped)
        if saved:
            lines.append(f"Successive halving saved {saved:.3g} training FLOPs in this task.")
        lines.append("")
    return "\n".join(lines)


def ladder_plots(groups: list[LadderGroup], metric: str = "gfid") -> list:
    """One plot per group: each tokenizer's rungs with their intervals, the fitted curve, and the
    band of the bootstrap refits (with the model error beyond the last rung) out to the target
    budget (log FLOPs); the measured full-budget
    result, when held out, as an open marker."""
    plots = []
    for index, group in enumerate(groups):
        if not group.ladders:
            continue
        fig, ax = new_figure(6.5, 4.2)
        colors = iter(["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"] * 4)
        for ladder in group.ladders:
            color = next(colors)
            points = ladder.rungs
            values = np.array([p.value for p in points])
            flops = np.array([p.flops for p in points])
            prediction = group.predictions.get(ladder.tokenizer)
            ax.errorbar(flops, values, yerr=group.errors.get(ladder.tokenizer), fmt="o", color=color, capsize=3,
                        label=ladder.tokenizer + (" (stopped)" if ladder.stopped else ""))
            if ladder.full is not None:
                ax.plot([ladder.full.flops], [ladder.full.value], "s", mfc="none", color=color, markersize=8)
            if prediction is not None:
                grid = np.geomspace(min(flops.min(), group.target_flops), group.target_flops, 60)
                ax.plot(grid, prediction.fit.predict(grid), "-", color=color, lw=1.2)
                low, high = prediction.band(grid)
                ax.fill_between(grid, low, high, color=color, alpha=0.15, lw=0)
        ax.axvline(group.target_flops, color="0.5", ls=":", lw=1)
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("generator training FLOPs")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
        title = f"{metric} ladder: {group.task} / {group.dataset}" + (f", seed {group.seed}" if len(groups) > 1 else "")
        if group.probability is not None and len(group.ranking) > 1:
            title += f" (P(predicted ranking) = {group.probability:.2f})"
        ax.set_title(title, fontsize=9)
        name = "ladder" if len(groups) == 1 else f"ladder_{group.task}_seed{group.seed}_{index}"
        plots.append(to_plot(fig, name, title, "dots: rungs with their intervals; lines: fitted curves; bands: bootstrap refits "
                           "out to the target (dotted); open squares: measured full-budget results (held out of the fit)"))
    return plots
