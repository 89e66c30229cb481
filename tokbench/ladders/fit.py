"""Curves through a ladder's rungs and what they predict at a target budget, with uncertainty.

Two models of a metric y against training compute C (x = ln(C / C_target)):

* ``power``: y = a·C^(−b) + c, written y = A·exp(−b·x) + c (A = a·C_target^(−b)), so the
  prediction at the target is A + c. For each exponent b on a fine log grid the weighted least
  squares in (A, c) is closed-form; the fit is the b with the least weighted residual. Needs 3
  rungs (4 to be compared by leave-one-out).
* ``loglinear``: y = α + β·x (the prediction at the target is α). Needs 2 rungs.

``fit_curve`` chooses between them by leave-one-rung-out prediction error (RMSE over the rungs,
each predicted from the others). ``predict`` refits the chosen model on every joint bootstrap
draw of the rungs (the replicates the verdicts engine draws for each rung's interval), which
gives the predicted value's interval and a band of curves; ``ranking_probability`` is the
fraction of joint draws in which the tokenizers' predictions fall in the predicted order.

The interval is the measurement noise of the rungs carried through the fit; it does not cover
the error of the curve family itself (docs/ladders.md measures that on held-out rungs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tokbench.stats import PERCENTILE, BootstrapSettings, Interval, interval_from_replicates

POWER = "power"
LOGLINEAR = "loglinear"
MODELS = (POWER, LOGLINEAR)
#: exponents b tried by the power law (log-spaced); the fit is the best of these
EXPONENTS = np.geomspace(0.01, 4.0, 240)


@dataclass(frozen=True)
class CurveFit:
    """One fitted curve; ``params`` are ``a, b, c`` (power: y = a·C^(−b) + c) or ``alpha, beta``
    (loglinear: y = alpha + beta·ln(C / reference_flops))."""

    model: str
    params: dict[str, float]
    reference_flops: float
    loo_rmse: dict[str, float] = field(default_factory=dict)

    def predict(self, flops) -> np.ndarray:
        x = np.log(np.asarray(flops, dtype=np.float64) / self.reference_flops)
        if self.model == POWER:
            amplitude = self.params["a"] * self.reference_flops ** (-self.params["b"])
            return amplitude * np.exp(-self.params["b"] * x) + self.params["c"]
        return self.params["alpha"] + self.params["beta"] * x


def _weights(sigma, count: int) -> np.ndarray:
    if sigma is None:
        return np.ones(count)
    sigma = np.asarray(sigma, dtype=np.float64)
    positive = sigma[sigma > 0]
    floor = positive.min() if positive.size else 1.0
    return 1.0 / np.maximum(sigma, floor) ** 2


def _line_fits(basis: np.ndarray, weights: np.ndarray, values: np.ndarray):
    """Weighted least squares y ≈ slope·f + intercept for every basis row f (B, K) and every column
    of ``values`` (K, R), in closed form: slopes, intercepts and residual sums of squares, each (B, R)."""
    sw = weights.sum()
    sf = basis @ weights  # (B,)
    sff = (basis**2) @ weights
    sy = weights @ values  # (R,)
    sfy = (basis * weights) @ values  # (B, R)
    syy = weights @ values**2
    det = sw * sff - sf**2
    det = np.where(np.abs(det) < 1e-300, 1e-300, det)
    slope = (sw * sfy - sf[:, None] * sy[None, :]) / det[:, None]
    intercept = (sy[None, :] - slope * sf[:, None]) / sw
    residual = syy[None, :] - slope * sfy - intercept * sy[None, :]
    return slope, intercept, residual


def _fit_many(model: str, x: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Parameters (R, 3) of ``model`` fitted to each column of ``values`` (K, R): (A, b, c) for the
    power law (A the value above c at x = 0), (alpha, beta, 0) for the log-linear model."""
    if model == LOGLINEAR:
        slope, intercept, _ = _line_fits(x[None, :], weights, values)
        return np.stack([intercept[0], slope[0], np.zeros(values.shape[1])], axis=1)
    slope, intercept, residual = _line_fits(np.exp(-EXPONENTS[:, None] * x[None, :]), weights, values)
    best = residual.argmin(axis=0)
    draws = np.arange(values.shape[1])
    theta = np.stack([slope[best, draws], EXPONENTS[best], intercept[best, draws]], axis=1)
    if values.shape[1] <= 8:  # a point fit: refine b between the grid's neighbours (draws keep the grid)
        for r in draws:
            index = best[r]
            fine = np.linspace(EXPONENTS[max(index - 1, 0)], EXPONENTS[min(index + 1, len(EXPONENTS) - 1)], 201)
            s, i, res = _line_fits(np.exp(-fine[:, None] * x[None, :]), weights, values[:, r : r + 1])
            k = int(res[:, 0].argmin())
            theta[r] = (s[k, 0], fine[k], i[k, 0])
    return theta


def _evaluate(model: str, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Curves (R, len(x)) of parameters ``theta`` (R, 3) at ``x``."""
    if model == LOGLINEAR:
        return theta[:, :1] + theta[:, 1:2] * x[None, :]
    return theta[:, :1] * np.exp(-theta[:, 1:2] * x[None, :]) + theta[:, 2:3]


def _evaluate_draws(models: np.ndarray, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Curves (R, len(x)) of draws that each have their own model."""
    return np.where((models == POWER)[:, None], _evaluate(POWER, theta, x), _evaluate(LOGLINEAR, theta, x))


def _minimum_rungs(model: str) -> int:
    return 3 if model == POWER else 2


def _loo_many(model: str, x: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Leave-one-rung-out RMSE (R,) of ``model`` on each column of ``values`` (K, R)."""
    if len(x) - 1 < _minimum_rungs(model):
        return np.full(values.shape[1], np.inf)
    errors = np.zeros(values.shape[1])
    for k in range(len(x)):
        keep = np.arange(len(x)) != k
        theta = _fit_many(model, x[keep], values[keep], weights[keep])
        errors += (_evaluate(model, theta, x[k : k + 1])[:, 0] - values[k]) ** 2
    return np.sqrt(errors / len(x))


def loo_rmse(model: str, flops, values, sigma=None, reference_flops: float | None = None) -> float:
    """Root mean squared error of predicting each rung from the others with ``model``."""
    flops, values = np.asarray(flops, dtype=np.float64), np.asarray(values, dtype=np.float64)
    reference = float(reference_flops or flops.max())
    return float(_loo_many(model, np.log(flops / reference), values[:, None], _weights(sigma, len(flops)))[0])


def _validate(flops: np.ndarray, values: np.ndarray) -> None:
    if flops.ndim != 1 or flops.shape != values.shape[:1]:
        raise ValueError(f"one value per rung: got {flops.shape} budgets and {values.shape} values")
    if len(flops) < 2:
        raise ValueError(f"a curve needs at least 2 rungs, got {len(flops)}")
    if np.any(flops <= 0) or len(np.unique(flops)) != len(flops):
        raise ValueError(f"rung budgets must be positive and distinct, got {flops.tolist()}")
    if not np.all(np.isfinite(values)):
        raise ValueError("rung values contain NaN/inf")


def fit_curve(flops, values, sigma=None, model: str | None = None, reference_flops: float | None = None) -> CurveFit:
    """The curve through the rungs: ``model`` or, when None, the model with the smaller
    leave-one-rung-out RMSE (the log-linear one when there are too few rungs to compare).
    ``sigma``: each rung's standard error (weights 1/sigma²)."""
    flops, values = np.asarray(flops, dtype=np.float64), np.asarray(values, dtype=np.float64)
    _validate(flops, values)
    reference = float(reference_flops or flops.max())
    scores = {name: loo_rmse(name, flops, values, sigma, reference) for name in MODELS}
    if model is None:
        usable = [name for name in MODELS if len(flops) >= _minimum_rungs(name)]
        model = min(usable, key=lambda name: (scores[name], name != LOGLINEAR))
    elif model not in MODELS:
        raise ValueError(f"unknown curve model {model!r}; choose one of {', '.join(MODELS)}")
    if len(flops) < _minimum_rungs(model):
        raise ValueError(f"the {model} curve needs at least {_minimum_rungs(model)} rungs, got {len(flops)}")
    theta = _fit_many(model, np.log(flops / reference), values[:, None], _weights(sigma, len(flops)))[0]
    if model == POWER:
        params = {"a": float(theta[0] * reference ** theta[1]), "b": float(theta[1]), "c": float(theta[2])}
    else:
        params = {"alpha": float(theta[0]), "beta": float(theta[1])}
    return CurveFit(model, params, reference, scores)


@dataclass(frozen=True)
class WalkForward:
    """One rung predicted from the rungs below it (a small extrapolation whose answer is known)."""

    error: float  # the measured rung minus its prediction
    distance: float  # ln(rung FLOPs / largest FLOPs of the rungs it was predicted from)
    noise_var: float  # the error's variance from the rungs' sampling noise alone (over the bootstrap draws)


@dataclass(frozen=True)
class ModelError:
    """The curve family's extrapolation error: standard deviation ``scale`` per unit of
    ln(target / largest fitted rung), from walk-forward errors (``walk_forward``) with the sampling
    noise's share removed; ``dof`` errors back it, so draws are Student-t with ``dof`` degrees of
    freedom (few errors, heavy tails). ``dof`` 0: not estimable (too few rungs), no widening."""

    scale: float
    dof: int
    steps: tuple[WalkForward, ...] = ()

    def draws(self, distance: float, count: int, rng: np.random.Generator) -> np.ndarray:
        if self.dof == 0 or self.scale == 0.0 or distance <= 0.0:
            return np.zeros(count)
        return self.scale * distance * rng.standard_t(self.dof, count)

    def describe(self) -> str:
        if self.dof == 0:
            return "not estimable (no rung can be predicted from the rungs below it)"
        return f"{self.scale:.3g} per ln-FLOPs beyond the last rung (t, {self.dof} walk-forward errors)"


def walk_forward(flops, values, replicates, model: str) -> list[WalkForward]:
    """Each rung with enough rungs below it to fit ``model`` predicted from those rungs: the
    prediction error, the extrapolation distance and the error's variance from sampling noise
    (the same prefix fit on every joint bootstrap draw, minus the draw of the predicted rung)."""
    flops, values = np.asarray(flops, dtype=np.float64), np.asarray(values, dtype=np.float64)
    replicates = np.asarray(replicates, dtype=np.float64)
    order = np.argsort(flops)
    flops, values, replicates = flops[order], values[order], replicates[order]
    weights = _weights(replicates.std(axis=1, ddof=1), len(flops))
    steps = []
    for j in range(_minimum_rungs(model), len(flops)):
        x = np.log(flops[:j] / flops[j])  # the predicted rung at x = 0
        point = _evaluate(model, _fit_many(model, x, values[:j, None], weights[:j]), np.zeros(1))[0, 0]
        drawn = _evaluate(model, _fit_many(model, x, replicates[:j], weights[:j]), np.zeros(1))[:, 0]
        steps.append(WalkForward(float(values[j] - point), float(-x[-1]), float(np.var(drawn - replicates[j], ddof=1))))
    return steps


def model_error(steps) -> ModelError:
    """Pool walk-forward errors (of one ladder, or of the ladders of one task, which then share
    the estimate): scale² = Σ(error² − noise variance) / Σ distance², at least 0."""
    steps = tuple(steps)
    if not steps:
        return ModelError(0.0, 0)
    excess = sum(s.error**2 - s.noise_var for s in steps) / sum(s.distance**2 for s in steps)
    return ModelError(float(np.sqrt(max(excess, 0.0))), len(steps), steps)


@dataclass
class Prediction:
    """The metric predicted at ``target_flops`` from one tokenizer's rungs."""

    fit: CurveFit
    target_flops: float
    value: float
    interval: Interval
    draws: np.ndarray  # (R,) predictions of the joint bootstrap draws, each plus a draw of the model error
    draw_params: np.ndarray  # (R, 3) per-draw parameters (see _fit_many)
    draw_models: np.ndarray  # (R,) the model each draw chose by leave-one-out
    model_error: ModelError = field(default_factory=lambda: ModelError(0.0, 0))
    rungs: int = 0  # rungs the curve was fitted on
    largest_flops: float = 0.0  # the largest of them

    @property
    def extrapolation(self) -> float:
        """target / largest fitted rung."""
        return self.target_flops / self.largest_flops

    def band(self, flops, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise ``level`` band of the draws' curves at ``flops`` (percentiles), beyond the
        last rung widened by the model error as the prediction is (the same t draws, scaled by
        each point's distance from the last rung)."""
        flops = np.asarray(flops, dtype=np.float64)
        x = np.log(flops / self.fit.reference_flops)
        curves = _evaluate_draws(self.draw_models, self.draw_params, x)
        if self.model_error.dof and self.model_error.scale:
            unit = self.draws - _evaluate_draws(self.draw_models, self.draw_params, np.zeros(1))[:, 0]
            beyond = np.clip(np.log(flops / self.largest_flops), 0, None) / max(np.log(self.extrapolation), 1e-12)
            curves = curves + unit[:, None] * beyond[None, :]
        tail = (1 - level) / 2
        low, high = np.quantile(curves, [tail, 1 - tail], axis=0)
        return low, high


def predict(flops, values, replicates, target_flops: float, settings: BootstrapSettings | None = None,
            model: str | None = None, error: ModelError | None = None) -> Prediction:
    """The metric at ``target_flops``: the curve through ``values`` (one per rung) and its refits
    on every column of ``replicates`` (K rungs x R draws, centred on the values) for the interval.
    The point prediction uses the model chosen on the values (``fit_curve``); with ``model`` None
    and enough rungs each draw chooses again by leave-one-out, so the interval carries the
    uncertainty of the choice too. Each draw also gets a draw of the curve family's error at the
    target's distance beyond the last rung: ``error``, or when None the one estimated from these
    rungs' walk-forward errors (``model_error(walk_forward(...))``); pass ``ModelError(0, 0)`` for
    the sampling noise alone."""
    settings = settings or BootstrapSettings()
    flops, values = np.asarray(flops, dtype=np.float64), np.asarray(values, dtype=np.float64)
    replicates = np.asarray(replicates, dtype=np.float64)
    if replicates.ndim != 2 or replicates.shape[0] != len(flops) or replicates.shape[1] < 2:
        raise ValueError(f"replicates must be (rungs, draws) = ({len(flops)}, R>=2), got {replicates.shape}")
    sigma = replicates.std(axis=1, ddof=1)
    fit = fit_curve(flops, values, sigma, model, reference_flops=float(target_flops))
    x, weights = np.log(flops / target_flops), _weights(sigma, len(flops))
    models = np.full(replicates.shape[1], fit.model)
    if model is None and len(flops) > _minimum_rungs(POWER):  # each draw chooses its model as the values did
        models = np.where(_loo_many(POWER, x, replicates, weights) < _loo_many(LOGLINEAR, x, replicates, weights),
                          POWER, LOGLINEAR)
    theta = np.zeros((replicates.shape[1], 3))
    for name in set(models.tolist()):
        chosen = models == name
        theta[chosen] = _fit_many(name, x, replicates[:, chosen], weights)
    if error is None:
        error = model_error(walk_forward(flops, values, replicates, fit.model))
    # the model error's draws: their own stream per ladder (independent between tokenizers), reproducible
    rng = np.random.default_rng([settings.seed, *np.frombuffer(values.tobytes(), dtype=np.uint32).tolist()])
    draws = _evaluate_draws(models, theta, np.zeros(1))[:, 0]
    draws = draws + error.draws(float(np.log(target_flops / flops.max())), len(draws), rng)
    value = float(fit.predict([target_flops])[0])
    widened = f", plus the curve family's error ({error.describe()})" if error.dof else ""
    interval = interval_from_replicates(value, draws, settings, PERCENTILE,
                                        over=f"{replicates.shape[1]} joint draws of {len(flops)} rungs, {fit.model} refit{widened}")
    return Prediction(fit, float(target_flops), value, interval, draws, theta, models, error, len(flops), float(flops.max()))


def predict_group(ladders: dict[str, tuple], target_flops: float, settings: BootstrapSettings | None = None,
                  model: str | None = None, pool: bool = True) -> dict[str, Prediction]:
    """``predict`` for the ladders of one task (name -> (flops, values, replicates)), the curve
    family's error estimated once from all their walk-forward errors (``pool``; each ladder's own
    chosen model), or from each ladder's own (``pool`` False). Pooling assumes the tokenizers of
    one task, trained by the same generator recipe at the same budgets, share the error's scale."""
    if not pool:
        return {name: predict(*data, target_flops, settings, model) for name, data in ladders.items()}
    steps = []
    for flops, values, replicates in ladders.values():
        chosen = model or fit_curve(flops, values, np.asarray(replicates).std(axis=1, ddof=1)).model
        steps += walk_forward(flops, values, replicates, chosen)
    error = model_error(steps)
    return {name: predict(*data, target_flops, settings, model, error) for name, data in ladders.items()}


def predicted_ranking(predictions: dict[str, Prediction], higher_is_better: bool = False) -> tuple[list[str], float]:
    """The tokenizers best first by predicted value, and the fraction of joint bootstrap draws in
    which they fall in exactly that order (draw r of every tokenizer taken together; the rungs of
    different tokenizers were sampled independently, so any pairing of draws is a joint draw)."""
    names = sorted(predictions, key=lambda n: (-predictions[n].value if higher_is_better else predictions[n].value, n))
    if len(names) < 2:
        return names, 1.0
    count = min(len(predictions[n].draws) for n in names)
    draws = np.stack([predictions[n].draws[:count] for n in names])  # (T, R), predicted order
    steps = np.diff(draws, axis=0)
    held = np.all(steps < 0 if higher_is_better else steps > 0, axis=0)
    return names, float(held.mean())
