"""Digests of the code that produces a result, taken at plan time.

A result's identity holds, for each plugin that computed it (the one that registered the
tokenizer, the task and the datasets), the plugin's distribution version and a digest of
its source files. A fix to a plugin therefore changes the keys of the units it affects and
the next ``tokbench run`` recomputes them, even when the version was not bumped.

What is hashed: every file of the top-level import package of the registered targets
(``tokbench_jpeg.tokenizer:build`` -> the folder of ``tokbench_jpeg``), found with
``importlib.util.find_spec`` and read from disk, plus the modules of tokbench's core and of
other ``tokbench_*`` plugins that those files import, transitively (found by reading the
``import`` lines, lazy ones included: :func:`import_closure`), so an edit to shared code
such as ``tokbench.training`` changes the digest of every plugin that calls it. Nothing is imported (no torch, no plugin
module). Skipped: ``__pycache__``/compiled files, ``tests`` folders and ``test_*.py``,
documentation (``*.md``, ``*.rst``). Data files (preset YAML, vocabularies) count: they
change what the code does.

Comment- and whitespace-only edits count. The digest is of the bytes: a rule with no
exceptions is one an author can predict, costs one read per file (no tokenizing), and cannot
be fooled (a "comment" inside a string literal, a docstring read at run time). A needless
recompute costs minutes; a missed one shows a number from code that no longer exists.

tokbench's own registrations (the built-in tasks, datasets and the resample baseline) are
digested over the ``tokbench`` package minus the modules that cannot change a number
(:data:`TOKBENCH_NON_COMPUTING`: the CLI, reports, launchers, scaffolding, test helpers).

Training code: a tokenizer's params model may declare ``training_code()``, the files of its
package (paths relative to the package folder, globs allowed) that produce its trained
weights. Trained checkpoints are keyed on those files only, so a fix to decode keeps the
checkpoint; without the declaration the whole package is training code and any edit
retrains (:func:`training_digest`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from tokbench.errors import PluginError

#: files of the ``tokbench`` package that never change a result (relative to tokbench/)
TOKBENCH_NON_COMPUTING = (
    "cli/*", "storage/code_digest.py", "storage/provenance.py", "errors.py",
    "report/*", "execution/launch/*", "config/resources.py", "testing/*",
)
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".md", ".rst")
_SKIPPED_DIRS = {"__pycache__", "tests", ".git", "build", "dist"}


@dataclass(frozen=True)
class CodeDigest:
    """The code of one plugin as it is installed now."""

    plugin: str
    #: the distribution's version (the plugin's declared version)
    version: str
    #: sha256 over (relative path, bytes) of every source file, hex
    digest: str
    #: the import package(s) hashed
    packages: tuple[str, ...]
    files: int

    def short(self) -> str:
        return self.digest[:12]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["packages"] = list(self.packages)
        return data


def top_package(target: str) -> str:
    """``"pkg.module:attr"`` -> ``"pkg"``."""
    return target.partition(":")[0].split(".")[0]


def package_root(package: str) -> Path:
    """The folder (or single module file) of a top-level import package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise PluginError(f"cannot find the source of package {package!r} (is the plugin installed?)")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin and os.path.isfile(spec.origin):
        return Path(spec.origin)
    raise PluginError(f"package {package!r} has no source files on disk (origin {spec.origin!r}); "
                      "install it from source so its code can be digested")


def source_files(package: str) -> list[tuple[str, Path]]:
    """``(relative path, absolute path)`` of the files that make up ``package``'s code, sorted."""
    root = package_root(package)
    if root.is_file():
        return [(root.name, root)]
    excluded = TOKBENCH_NON_COMPUTING if package == "tokbench" else ()
    found: list[tuple[str, Path]] = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in names:
            if name.endswith(_SKIPPED_SUFFIXES) or (name.startswith("test_") and name.endswith(".py")):
                continue
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if any(fnmatch.fnmatch(relative, pattern) for pattern in excluded):
                continue
            found.append((relative, path))
    return sorted(found)


def digest_files(files: Iterable[tuple[str, Path]]) -> tuple[str, int]:
    digest = hashlib.sha256()
    count = 0
    for relative, path in files:
        data = path.read_bytes()
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
        count += 1
    return digest.hexdigest(), count


#: ``import tokbench.x.y`` / ``from tokbench_vtp.api import z``, at any indentation (lazy imports count)
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(tokbench\w*(?:\.\w+)*)[ \t]+import[ \t]+([\w, \t()]+)"
                     r"|import[ \t]+(tokbench\w*(?:\.\w+)*))", re.MULTILINE)


def _module_files(module: str) -> list[Path]:
    """The source file(s) of a dotted module name inside an installed package: ``a.b`` ->
    ``a/b.py`` or ``a/b/__init__.py`` (and every package ``__init__`` on the way)."""
    parts = module.split(".")
    try:
        root = package_root(parts[0])
    except PluginError:
        return []
    if root.is_file():
        return [root]
    found = [root / "__init__.py"]
    for depth in range(1, len(parts) + 1):
        base = root.joinpath(*parts[1:depth])
        for candidate in (base.with_suffix(".py") if depth > 1 else None, base / "__init__.py"):
            if candidate is not None and candidate.is_file():
                found.append(candidate)
    return [f for f in found if f.is_file()]


def import_closure(files: Iterable[tuple[str, Path]], own: Iterable[str] = ()) -> list[tuple[str, Path]]:
    """The files of other tokbench packages (the core ``tokbench`` and ``tokbench_*`` plugins) that
    ``files`` import, directly or through each other, read as text (nothing is imported). A plugin's
    results depend on the core code it calls (``tokbench.training``, ``tokbench.nn.layers``, ...), so an
    edit there must change its digest too. ``own``: packages already digested whole."""
    own = set(own)
    seen: dict[Path, str] = {}
    queue = [path for _, path in files]
    visited: set[Path] = set()
    while queue:
        path = queue.pop()
        if path in visited or path.suffix != ".py":
            continue
        visited.add(path)
        text = path.read_text(errors="replace")
        for match in _IMPORT.finditer(text):
            module = match.group(1) or match.group(3)
            names = [n.strip() for n in (match.group(2) or "").replace("(", " ").replace(")", " ").split(",")]
            if module.split(".")[0] in own:
                continue
            modules = [module] + [f"{module}.{n.split()[0]}" for n in names if n and n.split()[0].isidentifier()]
            for name in modules:
                for found in _module_files(name):
                    if found in seen:
                        continue
                    package = name.split(".")[0]
                    root = package_root(package)
                    relative = found.relative_to(root).as_posix() if root.is_dir() else found.name
                    if package == "tokbench" and any(fnmatch.fnmatch(relative, p) for p in TOKBENCH_NON_COMPUTING):
                        continue
                    seen[found] = f"{package}/{relative}"
                    queue.append(found)
    return sorted(((label, path) for path, label in seen.items()), key=lambda item: item[0])


def plugin_code(plugin: str, version: str, targets: Iterable[str]) -> CodeDigest:
    """The digest of the packages that hold ``targets`` (the ``module:attr`` strings a plugin
    registered) and of the tokbench code they import (:func:`import_closure`)."""
    packages = tuple(sorted({top_package(t) for t in targets}))
    files = [(f"{package}/{relative}", path) for package in packages for relative, path in source_files(package)]
    files += import_closure(files, own=packages)
    digest, count = digest_files(files)
    return CodeDigest(plugin, version, digest, packages, count)


def training_digest(package: str, patterns: Iterable[str]) -> tuple[str, list[str]]:
    """The digest of the files of ``package`` matching ``patterns`` (a plugin's declared training
    code) and their relative paths. A pattern that matches nothing is an error: a typo must not
    silently leave a checkpoint keyed on no code."""
    files = source_files(package)
    patterns = list(patterns)
    chosen = [(rel, path) for rel, path in files if any(fnmatch.fnmatch(rel, p) for p in patterns)]
    for pattern in patterns:
        if not any(fnmatch.fnmatch(rel, pattern) for rel, _ in files):
            raise PluginError(f"training_code() of package {package!r} names {pattern!r}, which matches no file of "
                              f"{package_root(package)}; name files relative to that folder, e.g. 'train.py'")
    imported = import_closure(chosen)  # the core training code it calls, and its own modules it imports
    digest, _ = digest_files(chosen + imported)
    return digest, [rel for rel, _ in chosen] + [label for label, _ in imported]
