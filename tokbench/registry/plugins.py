"""Plugin manager and the registry of tokenizers, tasks, datasets and exporters.

Entry points in the ``tokbench`` group are loaded one by one: a plugin that
fails to import or to register is recorded with its error and skipped, never
fatal. Targets are lazy ``"module:attr"`` strings resolved on first use.

Environment variables:
  TOKBENCH_PLUGINS          comma-separated entry-point names to load (default: all)
  TOKBENCH_DISABLE_PLUGINS  comma-separated entry-point names to skip
"""

from __future__ import annotations

import importlib
import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from tokbench import hookspecs
from tokbench.api import Capability
from tokbench.errors import PluginError, unknown_choice

ENTRY_POINT_GROUP = "tokbench"
BUILTIN_PLUGIN = "tokbench.registry.builtin"


@dataclass(frozen=True)
class TokenizerEntry:
    name: str
    factory: str
    params: str
    capabilities: frozenset[Capability]
    description: str
    plugin: str


TRAIN_DATASET_USES = ("none", "optional", "required")


@dataclass(frozen=True)
class TaskEntry:
    name: str
    task: str
    params: str
    requires: frozenset[Capability]
    description: str
    plugin: str
    #: whether the task reads a second, training dataset (``train_dataset:`` in a suite)
    train_dataset: str = "none"

    def __post_init__(self) -> None:
        if self.train_dataset not in TRAIN_DATASET_USES:
            raise PluginError(f"task {self.name!r}: train_dataset must be one of {', '.join(TRAIN_DATASET_USES)}")

    def requirements(self, params: Any = None) -> frozenset[Capability]:
        """Capabilities a tokenizer needs; validated params may add some (``required_capabilities``)."""
        extra = getattr(params, "required_capabilities", None)
        return self.requires | _capabilities(extra()) if callable(extra) else self.requires


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    dataset: str
    params: str
    description: str
    plugin: str


@dataclass(frozen=True)
class ExporterEntry:
    name: str
    exporter: str
    description: str
    plugin: str


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str
    error: str | None = None
    registered: list[str] = field(default_factory=list)
    #: where it comes from: "built in", or "entry point <module> from <distribution> <version>"
    source: str = ""


def resolve(target: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    if not attr:
        raise PluginError(f"invalid target {target!r}: expected 'module:attribute'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"{module_name} has no attribute {attr!r} (target {target!r})") from None


class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    def __init__(self) -> None:
        self.tokenizers: dict[str, TokenizerEntry] = {}
        self.tasks: dict[str, TaskEntry] = {}
        self.datasets: dict[str, DatasetEntry] = {}
        self.exporters: dict[str, ExporterEntry] = {}
        self.plugins: list[PluginInfo] = []
        self.manager = pluggy.PluginManager("tokbench")
        self.manager.add_hookspecs(hookspecs)

    # ---- registration callbacks (one per hook) ----------------------------
    def _registrar(self, kind: str, info: PluginInfo) -> Callable[..., None]:
        table: dict[str, Any] = getattr(self, kind)

        def register(name: str, **fields: Any) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"{kind} name must be a non-empty string, got {name!r}")
            if name in table:
                raise PluginError(f"{kind[:-1]} {name!r} is already registered by plugin {table[name].plugin!r}")
            entry = _ENTRY_BUILDERS[kind](name=name, plugin=info.name, **fields)
            table[name] = entry
            info.registered.append(f"{kind[:-1]}:{name}")

        return register

    def add_plugin(self, module: Any, info: PluginInfo) -> None:
        """Register ``module`` and run its registration hooks, isolating failures."""
        snapshot = {kind: dict(getattr(self, kind)) for kind in _ENTRY_BUILDERS}
        try:
            _check_api_version(module)
            self.manager.register(module, name=info.name)
            self.manager.check_pending()
            hooks = {
                "tokenizers": self.manager.hook.tokbench_register_tokenizers,
                "tasks": self.manager.hook.tokbench_register_tasks,
                "datasets": self.manager.hook.tokbench_register_datasets,
                "exporters": self.manager.hook.tokbench_register_exporters,
            }
            for kind, hook in hooks.items():
                impls = [impl for impl in hook.get_hookimpls() if impl.plugin is module]
                for impl in impls:
                    impl.function(register=self._registrar(kind, info))
        except (Exception, SystemExit) as error:  # a broken plugin (even one calling sys.exit) never breaks the others
            for kind, table in snapshot.items():
                setattr(self, kind, table)
            info.registered.clear()
            info.error = f"{type(error).__name__}: {error}"
            info.traceback = traceback.format_exc()  # type: ignore[attr-defined]
            if self.manager.is_registered(module):
                self.manager.unregister(module)
        self.plugins.append(info)

    # ---- lookups with did-you-mean -----------------------------------------
    def get(self, kind: str, name: str) -> Any:
        table: dict[str, Any] = getattr(self, kind)
        if name not in table:
            raise PluginError(unknown_choice(f"{kind[:-1]}", name, table))
        return table[name]

    @property
    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]


def _check_api_version(module: Any) -> None:
    from tokbench.api import PLUGIN_API_VERSION

    declared = getattr(module, "TOKBENCH_PLUGIN_API", None)
    if declared is not None and declared != PLUGIN_API_VERSION:
        raise PluginError(
            f"built for tokbench plugin API {declared}, but this tokbench provides API {PLUGIN_API_VERSION}; "
            f"install a release of the plugin for API {PLUGIN_API_VERSION}, or a tokbench that provides API {declared}"
        )


def _capabilities(values: Any) -> frozenset[Capability]:
    return frozenset(Capability(v) for v in (values or ()))


_ENTRY_BUILDERS: dict[str, Callable[..., Any]] = {
    "tokenizers": lambda name, plugin, factory, params, capabilities=(), description="": TokenizerEntry(
        name, factory, params, _capabilities(capabilities), description, plugin
    ),
    "tasks": lambda name, plugin, task, params, requires=(), description="", train_dataset="none": TaskEntry(
        name, task, params, _capabilities(requires), description, plugin, train_dataset
    ),
    "datasets": lambda name, plugin, dataset, params, description="": DatasetEntry(
        name, dataset, params, description, plugin
    ),
    "exporters": lambda name, plugin, exporter, description="": ExporterEntry(name, exporter, description, plugin),
}


def _selected(name: str) -> bool:
    only = os.environ.get("TOKBENCH_PLUGINS")
    disabled = {n.strip() for n in os.environ.get("TOKBENCH_DISABLE_PLUGINS", "").split(",") if n.strip()}
    if name in disabled:
        return False
    if only is None:
        return True
    return name in {n.strip() for n in only.split(",")}


def build_registry() -> Registry:
    registry = Registry()
    from tokbench.registry import builtin

    registry.add_plugin(builtin, PluginInfo("builtin", BUILTIN_PLUGIN, _own_version(), source="built in"))
    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        if not _selected(entry_point.name):
            continue
        version = entry_point.dist.version if entry_point.dist else "unknown"
        distribution = f"{entry_point.dist.name} {version}" if entry_point.dist else "an unknown distribution"
        in_repo = entry_point.dist is not None and entry_point.dist.name == "tokbench"
        source = f"entry point {entry_point.value} from {distribution}" + (" (in-repo plugin)" if in_repo else "")
        info = PluginInfo(entry_point.name, entry_point.value, version, source=source)
        try:
            module = entry_point.load()
        except (Exception, SystemExit) as error:  # sys.exit at import is isolated like an exception
            info.error = f"{type(error).__name__}: {error}"
            info.traceback = traceback.format_exc()  # type: ignore[attr-defined]
            registry.plugins.append(info)
            continue
        registry.add_plugin(module, info)
    return registry


def _own_version() -> str:
    from tokbench import __version__

    return __version__


_REGISTRY: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        _REGISTRY = build_registry()
    return _REGISTRY
