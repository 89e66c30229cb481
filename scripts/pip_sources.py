"""Print, one per line, the uv options that name the package sources pip is configured with.

``scripts/setup.sh`` installs with uv, which reads neither pip.conf nor the ``PIP_*``
variables. Passing pip's own index URLs and find-links keeps the two installers on the same
sources (a mirror, a local wheelhouse); with none configured, uv uses PyPI, as pip does.
Precedence follows pip: the environment, then the ``install`` section, then ``global``; within
one, the later file wins.
"""
from __future__ import annotations

import ast
import subprocess
import sys

KEYS = ("index-url", "extra-index-url", "find-links")
PRIORITY = {"global": 0, "install": 1, ":env:": 2}


def configured(listing: str) -> dict[str, list[str]]:
    """``pip config list`` output -> {key: values} for the keys uv also understands."""
    chosen: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        name, sep, raw = line.partition("=")
        section, _, key = name.rpartition(".")
        if not sep or key not in KEYS or section not in PRIORITY:
            continue
        if key not in chosen or PRIORITY[section] >= chosen[key][0]:
            chosen[key] = (PRIORITY[section], ast.literal_eval(raw))
    return {key: value.split() for key, (_, value) in chosen.items()}


def uv_options(settings: dict[str, list[str]]) -> list[str]:
    options: list[str] = []
    for key in KEYS:
        values = settings.get(key, [])
        if key == "index-url":
            values = values[:1]
        for value in values:
            options += [f"--{key}", value]
    return options


def main() -> None:
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                             capture_output=True, text=True, check=True).stdout
    sys.stdout.write("".join(f"{option}\n" for option in uv_options(configured(listing))))


if __name__ == "__main__":
    main()
