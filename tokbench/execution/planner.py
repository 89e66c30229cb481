"""Suite -> plan: the units to run, each keyed by a hash of what produces it.

Two kinds of unit:
  prepare   build a tokenizer whose weights must be produced first (e.g. a tiny
            preset trained from scratch); evaluation units depend on it.
  evaluate  one task on one tokenizer and one dataset; produces a result record.

A unit's key covers the plugin and its version, the validated params (with
the content hash of any local weight file they name), the dataset fingerprint,
the task's params and protocol version, the evaluator identity, and a digest of
the code of every plugin that computes it (``tokbench.storage.code_digest``). Display
names never enter a key, so renaming a tokenizer in a suite reuses its results.

A unit's ``lineage`` is the same key without the code digests: a stored result of
the same lineage but another key is a result of earlier code ("stale").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tokbench.config.suite import Suite
from tokbench.hashing import content_key, file_identity, tree_identity
from tokbench.registry.plugins import Registry, get_registry, resolve
from tokbench.storage.code_digest import CodeDigest, plugin_code, top_package, training_digest


@dataclass(frozen=True)
class Unit:
    key: str
    action: Literal["prepare", "evaluate"]
    tokenizer: str
    label: str
    task_index: int | None = None
    deps: tuple[str, ...] = ()
    #: the key without code digests: shared by the results of every version of the code
    lineage: str = ""
    #: expected cost relative to other units (``Task.schedule_weight``): orders ready units only
    weight: float = 1.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Unit":
        return cls(**{**data, "deps": tuple(data.get("deps", ()))})


@dataclass
class Plan:
    suite_digest: str
    units: list[Unit] = field(default_factory=list)
    identities: dict[str, Any] = field(default_factory=dict)

    def unit(self, key: str) -> Unit:
        for unit in self.units:
            if unit.key == key:
                return unit
        raise KeyError(key)

    def waves(self) -> list[list[Unit]]:
        """Units grouped so every unit's dependencies are in an earlier wave."""
        placed: dict[str, int] = {}
        remaining = list(self.units)
        waves: list[list[Unit]] = []
        while remaining:
            ready = [u for u in remaining if all(d in placed for d in u.deps)]
            if not ready:
                raise RuntimeError("dependency cycle in plan: " + ", ".join(u.label for u in remaining))
            for unit in ready:
                placed[unit.key] = len(waves)
            waves.append(ready)
            remaining = [u for u in remaining if u.key not in placed]
        return waves

    def to_json(self) -> str:
        return json.dumps(
            {"suite_digest": self.suite_digest, "units": [asdict(u) for u in self.units], "identities": self.identities},
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        data = json.loads(text)
        return cls(data["suite_digest"], [Unit.from_dict(u) for u in data["units"]], data.get("identities", {}))


def _plugin_version(registry: Registry, plugin_name: str) -> str:
    for info in registry.plugins:
        if info.name == plugin_name:
            return info.version
    return "unknown"


def tokenizer_params(suite: Suite, name: str, registry: Registry):
    entry = registry.tokenizers[suite.tokenizers[name].plugin]
    return resolve(entry.params).model_validate(suite.tokenizers[name].params)


def entry_code(registry: Registry, kind: str, name: str, cache: dict[tuple, CodeDigest] | None = None) -> CodeDigest:
    """The code digest of the plugin that registered ``name`` in ``kind`` (tokenizers, tasks,
    datasets), over the packages of its targets (factory/task/dataset and params)."""
    entry = registry.get(kind, name)
    targets = [getattr(entry, field_name) for field_name in ("factory", "task", "dataset", "params") if hasattr(entry, field_name)]
    memo_key = (entry.plugin, tuple(sorted({top_package(t) for t in targets})))
    if cache is not None and memo_key in cache:
        return cache[memo_key]
    code = plugin_code(entry.plugin, _plugin_version(registry, entry.plugin), targets)
    if cache is not None:
        cache[memo_key] = code
    return code


def tokenizer_identity(suite: Suite, name: str, registry: Registry,
                       code_cache: dict[tuple, CodeDigest] | None = None) -> dict[str, Any]:
    """What determines a tokenizer's outputs, without building it: plugin, version, params,
    declared files, the code digest of its plugin, the training code digest that keys its
    trained checkpoint, and the fingerprint of the suite dataset it trains on (``train_dataset``)."""
    config = suite.tokenizers[name]
    entry = registry.tokenizers[config.plugin]
    params = tokenizer_params(suite, name, registry)
    files: dict[str, str] = {}
    for path in getattr(params, "identity_files", lambda: [])():
        path_obj = Path(path)
        files[str(path)] = tree_identity(path_obj) if path_obj.is_dir() else file_identity(path_obj)
    code = entry_code(registry, "tokenizers", config.plugin, code_cache)
    identity = {
        "plugin": config.plugin,
        "registered_by": entry.plugin,
        "version": _plugin_version(registry, entry.plugin),
        "params": params.model_dump(mode="json"),
        "files": files,
        "code": code.to_dict(),
        "training_code": _training_code(entry.factory, params, code),
    }
    train_name = getattr(params, "train_dataset", None)
    if isinstance(train_name, str) and train_name in suite.datasets:
        identity["train_dataset"] = build_dataset(suite, train_name, registry).fingerprint()
    return identity


def _training_code(factory: str, params: Any, code: CodeDigest) -> dict[str, Any]:
    """What keys a trained checkpoint: the files the params model declares as training code
    (``training_code()``), or the whole package (any edit retrains)."""
    declared = getattr(params, "training_code", None)
    if not callable(declared):
        return {"boundary": "whole package", "digest": code.digest}
    package = top_package(factory)
    digest, files = training_digest(package, declared())
    return {"boundary": "declared", "package": package, "files": files, "digest": digest}


def without_code(identity: dict[str, Any]) -> dict[str, Any]:
    """A tokenizer identity without its code digests and version: what stays the same across
    versions of the code (the lineage of a key)."""
    return {k: v for k, v in identity.items() if k not in ("code", "training_code", "version")}


def needs_preparation(suite: Suite, name: str, registry: Registry) -> bool:
    params = tokenizer_params(suite, name, registry)
    return bool(getattr(params, "needs_preparation", lambda: False)())


def build_dataset(suite: Suite, name: str, registry: Registry):
    config = suite.datasets[name]
    entry = registry.datasets[config.kind]
    params = resolve(entry.params).model_validate(config.params)
    return resolve(entry.dataset).from_params(params)


def build_task(suite: Suite, index: int, registry: Registry):
    config = suite.tasks[index]
    entry = registry.tasks[config.kind]
    params = resolve(entry.params).model_validate(config.params)
    return resolve(entry.task)(params)


def plan_suite(suite: Suite, registry: Registry | None = None) -> Plan:
    registry = registry or get_registry()
    plan = Plan(suite_digest=suite.digest())
    tokenizer_ids: dict[str, dict[str, Any]] = {}
    prepare_keys: dict[str, str] = {}
    dataset_fps: dict[str, str] = {}
    code_cache: dict[tuple, CodeDigest] = {}
    unit_code: dict[str, dict[str, Any]] = {}

    def identity(name: str) -> dict[str, Any]:
        if name not in tokenizer_ids:
            tokenizer_ids[name] = tokenizer_identity(suite, name, registry, code_cache)
        return tokenizer_ids[name]

    def dataset_code(dataset_name: str) -> dict[str, Any]:
        return entry_code(registry, "datasets", suite.datasets[dataset_name].kind, code_cache).to_dict()

    for index, task_config in enumerate(suite.tasks):
        task = build_task(suite, index, registry)
        for dataset_name in filter(None, (task_config.dataset, task_config.train_dataset)):
            if dataset_name not in dataset_fps:
                dataset_fps[dataset_name] = build_dataset(suite, dataset_name, registry).fingerprint()
        for name in suite.task_tokenizers(task_config, registry):
            deps: tuple[str, ...] = ()
            if needs_preparation(suite, name, registry):
                if name not in prepare_keys:
                    prepare_keys[name] = content_key({"prepare": identity(name)})
                    unit_code[prepare_keys[name]] = {"tokenizer": identity(name)["code"]}
                    plan.units.append(Unit(prepare_keys[name], "prepare", name, f"prepare/{name}",
                                           lineage=content_key({"prepare": without_code(identity(name))})))
                deps = (prepare_keys[name],)
            code = {
                "tokenizer": identity(name)["code"],
                "task": entry_code(registry, "tasks", task_config.kind, code_cache).to_dict(),
                "dataset": dataset_code(task_config.dataset),
                **({"train_dataset": dataset_code(task_config.train_dataset)} if task_config.train_dataset else {}),
            }
            inputs = {
                "task": task_config.kind,
                "protocol_version": type(task).protocol_version,
                "params": task.key_params(),
                "evaluator": task.key_inputs(),
                "tokenizer": identity(name),
                "dataset": dataset_fps[task_config.dataset],
                **({"train_dataset": dataset_fps[task_config.train_dataset]} if task_config.train_dataset else {}),
            }
            key = content_key({**inputs, "code": {role: c["digest"] for role, c in code.items()}})
            label = f"{task_config.display_name}/{name}/{task_config.dataset}"
            if any(unit.key == key for unit in plan.units):
                continue  # the same measurement asked for twice
            unit_code[key] = code
            plan.units.append(Unit(key, "evaluate", name, label, task_index=index, deps=deps,
                                   lineage=content_key({**inputs, "tokenizer": without_code(inputs["tokenizer"])}),
                                   weight=type(task).schedule_weight))
    plan.identities = {"tokenizers": tokenizer_ids, "datasets": dataset_fps, "code": unit_code}
    return plan
