"""Which stored results come from the code installed now.

Every result records, per role (tokenizer, task, dataset, train_dataset), the plugin that
computed it, its version and a digest of its source files (``provenance.code``; see
``tokbench.storage.code_digest``). A leaderboard shows by default only the results whose every
plugin is installed now with the same version and digest: a number from code that no longer
exists is never shown as current. ``all_versions`` keeps the others as separate rows, their
tokenizer labelled with the version and digest they came from (so neither a table nor a
person can take them for, or average them with, the current ones).

Torch-free: the digests are of files on disk.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

from tokbench.errors import PluginError
from tokbench.storage.code_digest import plugin_code


@dataclass
class VersionSplit:
    current: list[dict[str, Any]] = field(default_factory=list)
    #: (record, why it is not current)
    earlier: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def record_code(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``role -> {plugin, version, digest, packages}`` as the record stored it ({} for records
    from before code digests)."""
    return (record.get("provenance") or {}).get("code") or {}


class InstalledCode:
    """The digests of the installed plugins, computed once per (plugin, packages)."""

    def __init__(self, registry: Any = None) -> None:
        if registry is None:
            from tokbench.registry.plugins import get_registry

            registry = get_registry()
        self.versions = {info.name: info.version for info in registry.plugins if not info.error}
        self._memo: dict[tuple[str, tuple[str, ...]], str | None] = {}

    def digest(self, plugin: str, packages: Iterable[str]) -> str | None:
        """The digest of ``plugin``'s packages now (None: not installed)."""
        memo_key = (plugin, tuple(sorted(packages)))
        if memo_key not in self._memo:
            try:
                code = plugin_code(plugin, self.versions.get(plugin, ""), [f"{p}:_" for p in memo_key[1]])
                self._memo[memo_key] = code.digest
            except PluginError:
                self._memo[memo_key] = None
        return self._memo[memo_key]

    def difference(self, record: dict[str, Any]) -> str | None:
        """Why ``record`` is not a result of the installed code (None: it is)."""
        code = record_code(record)
        if not code:
            return "computed before code digests were recorded"
        reasons: list[str] = []
        for role, stored in sorted(code.items()):
            plugin = stored.get("plugin", "?")
            if plugin not in self.versions:
                reasons.append(f"plugin {plugin} is not installed")
            elif stored.get("version") != self.versions[plugin]:
                reasons.append(f"plugin {plugin} {stored.get('version')} (installed: {self.versions[plugin]})")
            elif stored.get("digest") != self.digest(plugin, stored.get("packages") or ()):
                reasons.append(f"plugin {plugin} code {str(stored.get('digest'))[:12]} (installed code differs)")
        return "; ".join(dict.fromkeys(reasons)) or None


def split_by_code(records: Iterable[dict[str, Any]], registry: Any = None) -> VersionSplit:
    """Results of the installed code, and the others with the reason."""
    installed = InstalledCode(registry)
    split = VersionSplit()
    for record in records:
        why = installed.difference(record)
        if why is None:
            split.current.append(record)
        else:
            split.earlier.append((record, why))
    return split


def version_label(record: dict[str, Any]) -> str:
    """``jpeg 0.1.0 @1a2b3c4d5e6f``: the tokenizer plugin's version and code digest of a record."""
    code = record_code(record).get("tokenizer")
    if not code:
        return "code not recorded"
    return f"{code.get('plugin')} {code.get('version')} @{str(code.get('digest'))[:12]}"


def labelled_as_earlier(record: dict[str, Any], reason: str, tag: str | None = None) -> dict[str, Any]:
    """A copy of ``record`` whose tokenizer name and label say which code it came from, or
    ``tag`` (its own row, never merged with the current code's)."""
    labelled = copy.deepcopy(record)
    tokenizer = labelled.setdefault("tokenizer", {})
    tag = tag or version_label(record)
    tokenizer["name"] = f"{tokenizer.get('name', '?')} [{tag}]"
    tokenizer["label"] = f"{tokenizer.get('label') or tokenizer.get('name', '?')} [earlier: {tag}]"
    labelled.setdefault("provenance", {})["not_current"] = reason
    return labelled


def select_versions(records: Iterable[dict[str, Any]], all_versions: bool = False,
                    registry: Any = None) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """The records a leaderboard shows, and those it leaves out (with the reason). By default
    the results of the installed code; with ``all_versions`` every record, earlier ones
    relabelled (:func:`labelled_as_earlier`)."""
    split = split_by_code(records, registry)
    if all_versions:
        return split.current + [labelled_as_earlier(r, why) for r, why in split.earlier], []
    return split.current, split.earlier


def labelled_replaced(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records ``run --recompute`` replaced, each on its own row labelled with its run (the same
    code as a current result, so never averaged with it as a seed)."""
    return [labelled_as_earlier(r, "replaced by run --recompute",
                                f"replaced: {(r.get('suite') or {}).get('run', '?')}, {version_label(r)}") for r in records]
