"""Suite schema, YAML loading, environment interpolation and CLI overrides.

Validation happens in two passes: the pydantic schema checks the structure,
then the registry checks names (plugins, task and dataset kinds, references)
and validates each ``params`` block with the model its plugin registered.
Every problem becomes one line: ``file: field.path: what is wrong; allowed: ...``.
No torch is imported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError

from tokbench.config.files import interpolate_env, pydantic_problems
from tokbench.config.resources import Resources
from tokbench.errors import SuiteError, unknown_choice
from tokbench.hashing import content_key
from tokbench.registry.plugins import Registry, get_registry, resolve


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreConfig(_Strict):
    root: str = Field("tokbench-store", description="store directory (relative to the working directory)")


class LauncherConfig(_Strict):
    backend: Literal["debug", "local", "slurm"] = "debug"
    max_workers: PositiveInt = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    loader_workers: NonNegativeInt | Literal["auto"] = Field(
        "auto", description="processes decoding images for extraction; auto: 0 on CPU runs, up to 8 on GPU"
    )
    tf32: bool = Field(False, description="TF32 matmuls/convolutions for tokenizers and training on GPU (faster fp32; "
                       "metric networks never use it; recorded in each result)")
    checkpoint_every: NonNegativeInt | None = Field(
        None, description="steps between the resume checkpoints of a prepare unit's training (tiny presets, VTP "
        "pretraining) in the store's partial/; 0: none; default: each trainer's own (100 steps for the tiny presets, "
        "the recipe's checkpoint_every for VTP); in no key: changing it reuses everything stored")
    timeout_min: PositiveInt = 24 * 60
    profile: str | None = Field(None, description="Slurm cluster profile name (slurm/profiles/<name>.yaml) or YAML path")
    resources: Resources | None = Field(None, description="Slurm resources of every unit (tasks and tokenizers refine them)")


class DatasetConfig(_Strict):
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)


class TokenizerConfig(_Strict):
    plugin: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    resources: Resources | None = Field(None, description="Slurm resources of this tokenizer's prepare unit (training)")


class TaskConfig(_Strict):
    kind: str
    name: str | None = None
    dataset: str
    train_dataset: str | None = Field(None, description="for tasks that train on one dataset and report on another (linear_probe)")
    tokenizers: list[str] | Literal["all"] = "all"
    params: dict[str, Any] = Field(default_factory=dict)
    resources: Resources | None = Field(None, description="Slurm resources of this task's units")

    @property
    def display_name(self) -> str:
        return self.name or self.kind


class ColumnSpec(_Strict):
    task: str = Field(description="task name in the suite (its `name`, else its kind)")
    metric: str
    dataset: str | None = Field(None, description="only this dataset (default: every dataset of the task)")
    label: str | None = Field(None, description="header text (default: the metric's label)")


class TableSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="file-safe name")
    title: str = ""
    columns: list[ColumnSpec] | None = Field(None, description="default: every metric of `tasks`")
    tasks: list[str] | None = Field(None, description="with columns unset: the tasks to show (default: all)")
    highlight: bool = Field(True, description="mark the best and second-best value of each column")
    group_rows_by: Literal["plugin"] | None = Field(None, description="group rows, e.g. by tokenizer family (plugin)")


class ReportConfig(_Strict):
    formats: list[str] = Field(
        default_factory=lambda: ["markdown", "latex", "csv", "json", "html"],
        description="exporters written to <store>/leaderboards/<suite>/ after a run (see `tokbench plugins`)",
    )
    tables: list[TableSpec] | None = Field(None, description="leaderboard tables (default: one per task)")
    plots: bool = Field(True, description="draw the plots the results allow (PNG + SVG, and in the HTML)")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="confidence level of every interval; ties are tested at 1 - confidence")
    resamples: int = Field(1000, ge=100, le=100_000, description="bootstrap resamples per interval and test")
    seed: int = Field(0, ge=0, description="seed of the bootstrap draws (fixed: the same store gives the same intervals)")
    interval_style: Literal["halfwidth", "bounds"] = Field(
        "halfwidth", description="how tables show intervals: value ± half-width, or value [low, high]")
    ladder_target_flops: float | None = Field(
        None, gt=0, description="budget ladders: predict at these training FLOPs (default: each task's own training_flops, "
                                "predicted from the rungs alone so the full-budget result checks it)")


class Suite(_Strict):
    name: str
    description: str = ""
    store: StoreConfig = Field(default_factory=StoreConfig)
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    datasets: dict[str, DatasetConfig]
    tokenizers: dict[str, TokenizerConfig]
    tasks: list[TaskConfig] = Field(min_length=1)
    report: ReportConfig = Field(default_factory=ReportConfig)

    def digest(self) -> str:
        return content_key(self.model_dump(mode="json"))

    def task_tokenizers(self, task: TaskConfig, registry: Registry | None = None) -> list[str]:
        """Tokenizer names a task runs on; ``all`` means those with the needed capabilities."""
        if task.tokenizers != "all":
            return list(task.tokenizers)
        registry = registry or get_registry()
        entry = registry.tasks[task.kind]
        requires = entry.requirements(resolve(entry.params).model_validate(task.params))
        return [
            name
            for name, cfg in self.tokenizers.items()
            if requires <= registry.tokenizers[cfg.plugin].capabilities
        ]


# ---- loading -------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise SuiteError([f"override {text!r}: expected key.path=value"])
    key, _, raw = text.partition("=")
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.0.c=value`` overrides. List items can be addressed by index
    or, for tasks, by their ``name``/``kind``."""
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                index = _list_index(node, part, where)
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise SuiteError([f"override {text!r}: {where} is not a mapping or list"])
    return data


def _list_index(items: list[Any], part: str, where: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if -len(items) <= index < len(items):
            return index % len(items)
        raise SuiteError([f"override: {where}: index {index} out of range (0..{len(items) - 1})"])
    names = [item.get("name") or item.get("kind") for item in items if isinstance(item, dict)]
    if part in names:
        return names.index(part)
    raise SuiteError([f"override: {where}: {unknown_choice('list item', part, [n for n in names if n])}"])


def load_suite_data(path: str | os.PathLike, overrides: list[str] | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SuiteError([f"{path}: suite file not found"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SuiteError([f"{path}: not valid YAML: {error}".replace("\n", " ")]) from None
    if not isinstance(data, dict):
        raise SuiteError([f"{path}: a suite must be a mapping with name, datasets, tokenizers and tasks"])
    problems: list[str] = []
    data = interpolate_env(data, "", problems, str(path))
    if problems:
        raise SuiteError(problems)
    return apply_overrides(data, list(overrides or []))


def load_suite(
    path: str | os.PathLike, overrides: list[str] | None = None, registry: Registry | None = None
) -> Suite:
    """Load, interpolate, override and fully validate a suite file."""
    data = load_suite_data(path, overrides)
    return validate_suite(data, source=str(path), registry=registry)


# ---- validation -----------------------------------------------------------------


def validate_params(model_target: str, params: dict[str, Any], source: str, prefix: str) -> tuple[BaseModel | None, list[str]]:
    try:
        model = resolve(model_target)
    except Exception as error:  # a broken plugin: say which, never a traceback
        return None, [f"{source}: {prefix}: cannot load the params model {model_target!r}: {type(error).__name__}: {error}"]
    try:
        return model.model_validate(params), []
    except ValidationError as error:
        return None, pydantic_problems(error, model, source, prefix)


def validate_suite(data: dict[str, Any], source: str = "<suite>", registry: Registry | None = None) -> Suite:
    try:
        suite = Suite.model_validate(data)
    except ValidationError as error:
        raise SuiteError(pydantic_problems(error, Suite, source)) from None
    registry = registry or get_registry()
    problems: list[str] = []
    resolved: dict[str, Any] = suite.model_dump(mode="json")

    for name, dataset in suite.datasets.items():
        where = f"datasets.{name}"
        if dataset.kind not in registry.datasets:
            problems.append(f"{source}: {where}.kind: {unknown_choice('dataset kind', dataset.kind, registry.datasets)}")
            continue
        params, issues = validate_params(registry.datasets[dataset.kind].params, dataset.params, source, f"{where}.params")
        problems += issues
        if params is not None:
            resolved["datasets"][name]["params"] = params.model_dump(mode="json")

    for name, tokenizer in suite.tokenizers.items():
        where = f"tokenizers.{name}"
        if tokenizer.plugin not in registry.tokenizers:
            problems.append(
                f"{source}: {where}.plugin: {unknown_choice('tokenizer plugin', tokenizer.plugin, registry.tokenizers)}"
                + _broken_hint(registry, tokenizer.plugin)
            )
            continue
        params, issues = validate_params(
            registry.tokenizers[tokenizer.plugin].params, tokenizer.params, source, f"{where}.params"
        )
        problems += issues
        if params is not None:
            resolved["tokenizers"][name]["params"] = params.model_dump(mode="json")
            train_name = getattr(params, "train_dataset", None)  # a tokenizer that learns from a suite dataset
            if isinstance(train_name, str) and train_name not in suite.datasets:
                problems.append(f"{source}: {where}.params.train_dataset: "
                                f"{unknown_choice('dataset', train_name, suite.datasets)} (define it under 'datasets:')")

    for index, task in enumerate(suite.tasks):
        where = f"tasks.{index}"
        if task.kind not in registry.tasks:
            problems.append(f"{source}: {where}.kind: {unknown_choice('task kind', task.kind, registry.tasks)}")
            continue
        entry = registry.tasks[task.kind]
        params, issues = validate_params(entry.params, task.params, source, f"{where}.params")
        problems += issues
        if params is not None:
            resolved["tasks"][index]["params"] = params.model_dump(mode="json")
        requires = entry.requirements(params)
        if task.dataset not in suite.datasets:
            problems.append(
                f"{source}: {where}.dataset: {unknown_choice('dataset', task.dataset, suite.datasets)}"
                " (define it under 'datasets:')"
            )
        problems += _train_dataset_problems(suite, task, entry, f"{source}: {where}.train_dataset")
        if task.tokenizers != "all":
            for name in task.tokenizers:
                if name not in suite.tokenizers:
                    problems.append(
                        f"{source}: {where}.tokenizers: {unknown_choice('tokenizer', name, suite.tokenizers)}"
                    )
                    continue
                plugin = suite.tokenizers[name].plugin
                if plugin in registry.tokenizers:
                    lacking = requires - registry.tokenizers[plugin].capabilities
                    if lacking:
                        problems.append(
                            f"{source}: {where}.tokenizers: tokenizer {name!r} ({plugin}) lacks "
                            f"{', '.join(sorted(c.value for c in lacking))} needed by task {task.kind!r}"
                            + (" with these params" if requires != entry.requires else "")
                        )
        elif all(cfg.plugin in registry.tokenizers for cfg in suite.tokenizers.values()) and not any(
            requires <= registry.tokenizers[cfg.plugin].capabilities for cfg in suite.tokenizers.values()
        ):
            problems.append(
                f"{source}: {where}.tokenizers: no tokenizer in this suite has "
                f"{', '.join(sorted(c.value for c in requires))}, needed by task {task.kind!r}"
            )
    for i, fmt in enumerate(suite.report.formats):
        if fmt not in registry.exporters:
            problems.append(f"{source}: report.formats.{i}: {unknown_choice('exporter', fmt, registry.exporters)}")
    names = [t.display_name for t in suite.tasks]
    for t, table in enumerate(suite.report.tables or []):
        for c, column in enumerate(table.columns or []):
            if column.task not in names:
                problems.append(f"{source}: report.tables.{t}.columns.{c}.task: {unknown_choice('task', column.task, names)}")
        for k, task_name in enumerate(table.tasks or []):
            if task_name not in names:
                problems.append(f"{source}: report.tables.{t}.tasks.{k}: {unknown_choice('task', task_name, names)}")
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{source}: tasks: two tasks are named {duplicate!r}; give each a unique 'name'")

    problems += _launcher_problems(suite, source)

    if problems:
        raise SuiteError(problems)
    return Suite.model_validate(resolved)


def _launcher_problems(suite: Suite, source: str) -> list[str]:
    """The Slurm profile exists and every unit's resources fit it (no-op for other backends)."""
    if suite.launcher.backend != "slurm":
        return []
    from tokbench.config.resources import check_fits, load_profile
    from tokbench.errors import TokbenchError

    if not suite.launcher.profile:
        return [f"{source}: launcher.profile: the slurm backend needs a cluster profile "
                "(slurm/profiles/<name>.yaml, e.g. profile: local for the test cluster); see docs/slurm.md"]
    try:
        profile = load_profile(suite.launcher.profile)
    except TokbenchError as error:
        return [f"{source}: {line}" for line in str(error).splitlines()]
    base = (suite.launcher.resources or Resources()).over(profile.resources)
    problems = check_fits(profile, base, f"{source}: launcher.resources")
    for index, task in enumerate(suite.tasks):
        problems += check_fits(profile, (task.resources or Resources()).over(base), f"{source}: tasks.{index}.resources")
    for name, tokenizer in suite.tokenizers.items():
        problems += check_fits(profile, (tokenizer.resources or Resources()).over(base), f"{source}: tokenizers.{name}.resources")
    return problems


def _train_dataset_problems(suite: Suite, task: TaskConfig, entry: Any, where: str) -> list[str]:
    if task.train_dataset is None:
        if entry.train_dataset == "required":
            return [f"{where}: task {task.kind!r} trains on a second dataset; name one of: "
                    f"{', '.join(suite.datasets)} (define it under 'datasets:')"]
        return []
    if entry.train_dataset == "none":
        return [f"{where}: task {task.kind!r} does not use a training dataset; remove this field"]
    if task.train_dataset not in suite.datasets:
        return [f"{where}: {unknown_choice('dataset', task.train_dataset, suite.datasets)} (define it under 'datasets:')"]
    if task.train_dataset == task.dataset:
        return [f"{where}: the training and evaluation datasets are both {task.dataset!r}; "
                "train on a separate split (e.g. shapes with split: train)"]
    return []


def _broken_hint(registry: Registry, name: str) -> str:
    for plugin in registry.broken:
        if plugin.name == name:
            return f" -- plugin {name!r} is installed but failed to load: {plugin.error}"
    return ""


def suite_to_yaml(suite: Suite) -> str:
    return yaml.safe_dump(suite.model_dump(mode="json"), sort_keys=False)
