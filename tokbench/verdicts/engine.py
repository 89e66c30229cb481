"""Intervals and tests for the report, computed from the evidence records point to.

One ``VerdictEngine`` per report: it loads each row's per-item data once, draws its
bootstrap replicates once (cached in the store as a ``verdict-replicates`` artifact, so
the next report is instant), and answers

* ``interval(evidence, value)``: the confidence interval of one result;
* ``compare(a, b)``: the test between two results of one column: paired bootstrap when
  the rows saw the same items (every row with the same N draws the same image indices, so
  their replicates pair up), McNemar when both are 0/1 correctness on the same examples,
  an unpaired bootstrap for generated samples (each row's draws independent);
* ``seed_interval`` / ``compare_seed_groups`` for cells that average several seeds (a t
  interval over the seeds, Welch's test between two such cells).

Torch-free: numpy, scipy and ``tokbench.stats``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tokbench.errors import StoreError
from tokbench.hashing import content_key
from tokbench.stats import (
    FRECHET_INTERVAL,
    KID_INTERVAL,
    MEAN_INTERVAL,
    BootstrapSettings,
    Comparison,
    Interval,
    frechet_replicates,
    interval_from_replicates,
    kid_replicates,
    mcnemar_comparison,
    mean_replicates,
    paired_bootstrap_comparison,
    unpaired_bootstrap_comparison,
    wilson_interval,
)
from tokbench.verdicts.evidence import EvidenceError, array_length, load_array

#: bump when the replicates of the same evidence and settings would change
REPLICATES_VERSION = "verdict-replicates-v1"


@dataclass
class Material:
    """A row's bootstrap material: its estimate, replicates and (for 0/1 data) the items."""

    value: float
    replicates: np.ndarray
    n: int
    kind: str
    paired: bool
    items: np.ndarray | None = None


def _as_spec(evidence: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if evidence is None or (isinstance(evidence, float) and math.isnan(evidence)):
        return None
    return json.loads(evidence) if isinstance(evidence, str) else evidence


class VerdictEngine:
    def __init__(self, store, settings: BootstrapSettings | None = None):
        self.store = store
        self.settings = settings or BootstrapSettings()
        self._materials: dict[str, Material] = {}
        self._arrays: dict[str, np.ndarray] = {}

    # ---- loading -------------------------------------------------------------------------------
    def _array(self, ptr: dict[str, Any]) -> np.ndarray:
        key = json.dumps(ptr, sort_keys=True)
        if key not in self._arrays:
            self._arrays[key] = load_array(self.store, ptr)
        return self._arrays[key]

    def _row_settings(self, spec: dict[str, Any]) -> BootstrapSettings:
        """Paired rows share the seed (same draws of the same items); unpaired rows get their own."""
        if spec.get("paired", True):
            return self.settings
        salt = int(content_key({"unpaired": spec})[:8], 16)
        return replace(self.settings, seed=(self.settings.seed + salt) % (2**31))

    def material(self, evidence: str | dict[str, Any], value: float) -> Material:
        spec = _as_spec(evidence)
        if spec is None:
            raise EvidenceError("no per-item evidence")
        cache_key = json.dumps({"spec": spec, "value": value}, sort_keys=True)
        if cache_key in self._materials:
            return self._materials[cache_key]
        kind = spec["kind"]
        settings = self._row_settings(spec)
        items = None
        if kind in ("mean", "proportion"):
            items = np.asarray(self._array(spec["values"]), dtype=np.float64).reshape(-1)
            if spec.get("inf_as") is not None:  # e.g. identical images' PSNR, counted as 100 dB in the mean
                items = np.where(np.isinf(items), float(spec["inf_as"]), items)
            n = len(items)
        else:
            n = array_length(self.store, spec["features"])
        replicates = self._replicates(spec, settings, items)
        material = Material(float(value), replicates, n, kind, bool(spec.get("paired", True)), items)
        self._materials[cache_key] = material
        return material

    def _replicates(self, spec: dict[str, Any], settings: BootstrapSettings, items: np.ndarray | None) -> np.ndarray:
        if spec["kind"] in ("mean", "proportion"):  # cheap: no need to store
            return mean_replicates(items, settings)
        # the level only reads the replicates: changing it reuses them
        key = content_key({"kind": REPLICATES_VERSION, "spec": spec, "settings": [settings.resamples, settings.seed]})

        def produce(out) -> None:
            features = np.asarray(self._array(spec["features"]), dtype=np.float64)
            reference = np.asarray(self._array(spec["reference"]), dtype=np.float64)
            if spec["kind"] == "recall":
                from tokbench.stats.manifold import recall_replicates

                replicates = recall_replicates(features, reference, settings, k=int(spec.get("k", 3)))
            else:
                draw = frechet_replicates if spec["kind"] == "frechet" else kid_replicates
                replicates = draw(features, reference, settings, paired_reference=bool(spec.get("paired")))
            np.save(out / "replicates.npy", replicates)

        if self.store is None:
            raise EvidenceError("no store to read evidence from")
        try:
            directory = self.store.get_or_create(key, produce, kind="verdict-replicates",
                                                 meta={"label": f"bootstrap replicates ({spec['kind']})"})
        except (OSError, StoreError):  # a read-only or full store: draw them, but do not keep them
            import tempfile

            with tempfile.TemporaryDirectory(prefix="tokbench-replicates-") as scratch:
                produce(Path(scratch))
                return np.load(Path(scratch) / "replicates.npy")
        return np.load(directory / "replicates.npy")

    # ---- answers -------------------------------------------------------------------------------
    def interval(self, evidence: str | dict[str, Any], value: float) -> Interval:
        material = self.material(evidence, value)
        if material.kind == "proportion":
            successes = int(round(float(material.items.sum())))
            return wilson_interval(successes, material.n, self.settings.level)
        from tokbench.stats.manifold import RECALL_INTERVAL

        construction = {"mean": MEAN_INTERVAL, "frechet": FRECHET_INTERVAL, "kid": KID_INTERVAL,
                        "recall": RECALL_INTERVAL}[material.kind]
        over = f"{material.n} items"
        if material.kind == "recall":
            over = f"{material.n} generated samples (their manifold rebuilt per resample; real samples fixed)"
        elif material.kind in ("frechet", "kid"):
            over += "; reference resampled with the same indices" if material.paired else "; reference fixed"
        return interval_from_replicates(material.value, material.replicates, self.settings, construction, over=over)

    def compare(self, a: str | dict[str, Any], value_a: float, b: str | dict[str, Any], value_b: float) -> Comparison:
        first, second = self.material(a, value_a), self.material(b, value_b)
        paired = first.paired and second.paired and first.n == second.n and first.kind == second.kind
        if paired and first.kind == "proportion" and second.kind == "proportion":
            return mcnemar_comparison(first.items > 0.5, second.items > 0.5)
        if paired:
            return paired_bootstrap_comparison(first.value, first.replicates, second.value, second.replicates, self.settings)
        return unpaired_bootstrap_comparison(first.value, first.replicates, second.value, second.replicates, self.settings)


def precompute(store, evidence: dict[str, Any] | None, metrics: dict[str, Any], settings: BootstrapSettings) -> list[str]:
    """Draw (and store) the bootstrap replicates of every metric of one result, so the report only
    reads them. Called by the unit that measured the metrics, where the features were just
    computed: on a cluster this runs in parallel on the compute nodes, not on the login node that
    builds the leaderboard. Returns the metrics whose replicates could not be drawn (the report
    will try again and say why)."""
    engine = VerdictEngine(store, settings)
    failed = []
    for name, spec in (evidence or {}).items():
        value = metrics.get(name)
        if value is None:
            continue
        try:
            engine.material(spec, float(value))
        except (EvidenceError, OSError, ValueError) as error:
            failed.append(f"{name}: {error}")
    return failed


def seed_interval(values: list[float], level: float) -> Interval:
    """t interval of the mean over seeds (the spread between seeds, not within one evaluation)."""
    from scipy import stats

    n = len(values)
    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))
    return Interval(mean - half, mean + half, f"t interval over {n} seeds")


def compare_seed_groups(a: list[float], b: list[float]) -> Comparison:
    """Welch's t test between two cells that each average several seeds."""
    from scipy import stats

    result = stats.ttest_ind(a, b, equal_var=False)
    difference = float(np.mean(a) - np.mean(b))
    interval = result.confidence_interval(0.95)
    return Comparison(float(result.pvalue), difference, Interval(float(interval.low), float(interval.high), "Welch t"),
                      f"Welch's t test over seeds ({len(a)} vs {len(b)})")
