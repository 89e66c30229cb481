"""From nothing to a row on the leaderboard, offline: scaffold a plugin, install it into a
temporary environment, see it in `tokbench plugins`, run its conformance tests and a suite
with it beside an in-repo plugin. The example external plugin (examples/tokbench-jpeg)
goes through the same path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, run_cli

pytestmark = pytest.mark.slow


def install(package: Path, target: Path) -> dict[str, str]:
    """pip-install ``package`` (no dependencies, no network) into ``target``; the environment that sees it."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(package)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}


def run_pytest(tests: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                          capture_output=True, text=True, cwd=tests.parent, env={**os.environ, **env}, timeout=600)


def results_by_tokenizer(store: Path) -> dict[str, dict]:
    records = [json.loads(p.read_text()) for p in (store / "results").glob("*.json")]
    return {r["tokenizer"]["name"]: r for r in records if r["type"] == "result"}


def test_scaffolded_plugin_from_nothing_to_the_leaderboard(tmp_path):
    created = run_cli("plugin", "new", "dctok", "--dir", str(tmp_path))
    assert created.returncode == 0, created.stderr
    package = tmp_path / "tokbench-dctok"
    assert (package / "pyproject.toml").is_file() and (package / "tokbench_dctok" / "tokenizer.py").is_file()
    assert f"created {package}" in created.stdout

    env = install(package, tmp_path / "site")
    listed = run_cli("plugins", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "dctok 0.1.0 [entry point tokbench_dctok.plugin from tokbench-dctok 0.1.0]: ok" in listed.stdout
    assert "tokenizer:dctok [decode, encode]" in listed.stdout

    conformance = run_pytest(package / "tests", env)
    assert conformance.returncode == 0, conformance.stdout + conformance.stderr
    assert "10 passed, 2 skipped" in conformance.stdout  # image-features and text: not declared

    store = tmp_path / "store"
    ran = run_cli("run", str(package / "suites" / "dctok.yaml"), "--store", str(store), env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    found = results_by_tokenizer(store)
    assert set(found) == {"dctok", "bicubic-f4"}
    # 12 DCT coefficients per 4x4 patch keep more than bicubic's 3 pixel values: a better PSNR
    assert found["dctok"]["metrics"]["psnr"] > found["bicubic-f4"]["metrics"]["psnr"] > 15
    assert "| dctok" in ran.stdout and "leaderboard:" in ran.stdout


def test_example_external_plugin(tmp_path):
    package = tmp_path / "tokbench-jpeg"  # a copy: building must not litter the repository
    shutil.copytree(REPO / "examples" / "tokbench-jpeg", package, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env = install(package, tmp_path / "site")
    listed = run_cli("plugins", env=env)
    assert "jpeg 0.1.0 [entry point tokbench_jpeg.plugin from tokbench-jpeg 0.1.0]: ok" in listed.stdout
    conformance = run_pytest(package / "tests", env)
    assert conformance.returncode == 0, conformance.stdout + conformance.stderr
    store = tmp_path / "store"
    ran = run_cli("run", str(package / "suites" / "jpeg.yaml"), "--store", str(store), env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    found = results_by_tokenizer(store)
    assert set(found) == {"jpeg-f4-q75", "bicubic-f4"}
    assert found["jpeg-f4-q75"]["metrics"]["psnr"] > 15


def test_a_plugin_for_another_interface_version_is_refused_by_name(tmp_path):
    package = tmp_path / "tokbench-future"
    (package / "tokbench_future").mkdir(parents=True)
    (package / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "tokbench-future"
        version = "3.0.0"
        [project.entry-points.tokbench]
        future = "tokbench_future"
        [tool.setuptools]
        packages = ["tokbench_future"]
    """))
    (package / "tokbench_future" / "__init__.py").write_text("TOKBENCH_PLUGIN_API = 99\n")
    env = install(package, tmp_path / "site")
    listed = run_cli("plugins", env=env)
    assert listed.returncode == 0
    assert ("future 3.0.0 [entry point tokbench_future from tokbench-future 3.0.0]: error" in listed.stdout)
    assert "built for tokbench plugin API 99, but this tokbench provides API 1" in listed.stdout
    assert "vtp" in listed.stdout  # the others still load


def test_scaffold_refuses_bad_names_and_occupied_folders(tmp_path):
    bad = run_cli("plugin", "new", "My-Tok", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "use lowercase letters, digits and underscores" in bad.stderr
    assert run_cli("plugin", "new", "tok", "--dir", str(tmp_path)).returncode == 0
    again = run_cli("plugin", "new", "tok", "--dir", str(tmp_path))
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
