"""Package discovery (the metadata lives in pyproject.toml).

``tokbench/`` ships as it is; each in-repo plugin folder ``plugins/<name>/`` ships as the package
``tokbench_<name>`` (the names its entry point in pyproject.toml uses), with its sub-packages but
not its tests. Every non-Python file inside a package folder (presets, templates) ships as package
data, so a wheel or ``pip install .`` holds what an editable install reads from the checkout.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
PLUGIN_FOLDER = "plugins"
NOT_SHIPPED = ("tests", "tests.*")


def _packages() -> tuple[list[str], dict[str, str]]:
    packages = find_packages(where=str(ROOT), include=["tokbench", "tokbench.*"])
    package_dir = {"tokbench": "tokbench"}
    for folder in sorted((ROOT / PLUGIN_FOLDER).iterdir()):
        if not (folder / "__init__.py").is_file():
            continue
        name = f"tokbench_{folder.name}"
        package_dir[name] = f"{PLUGIN_FOLDER}/{folder.name}"
        packages += [name, *(f"{name}.{sub}" for sub in find_packages(where=str(folder), exclude=NOT_SHIPPED))]
    return packages, package_dir


def _package_data(packages: list[str], package_dir: dict[str, str]) -> dict[str, list[str]]:
    data: dict[str, list[str]] = {}
    for package in packages:
        top, _, rest = package.partition(".")
        folder = ROOT / package_dir[top] / rest.replace(".", "/")
        files = [path.relative_to(folder) for path in sorted(folder.rglob("*")) if path.is_file()]
        shipped = [path.as_posix() for path in files if path.suffix not in (".py", ".pyc") and _data_of(folder, path)]
        if shipped:
            data[package] = shipped
    return data


def _data_of(folder: Path, relative: Path) -> bool:
    """Whether the file ``folder/relative`` is data of the package in ``folder``: not hidden, not a
    cache, not in tests or in a sub-package (which ships its own)."""
    for part in relative.parent.parts:
        if part.startswith(".") or part in ("__pycache__", "tests"):
            return False
    if relative.name.startswith("."):
        return False
    return not any((folder / parent / "__init__.py").is_file() for parent in relative.parents if parent != Path("."))


PACKAGES, PACKAGE_DIR = _packages()
setup(packages=PACKAGES, package_dir=PACKAGE_DIR, package_data=_package_data(PACKAGES, PACKAGE_DIR))
