"""scripts/setup.sh installs with uv from the sources pip is configured with (scripts/pip_sources.py)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pip_sources.py"


def _module():
    spec = importlib.util.spec_from_file_location("pip_sources", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pip_precedence_and_lists_become_uv_options():
    sources = _module()
    listing = "\n".join([
        "global.index-url='https://mirror.example/simple'",
        "global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'",
        "global.timeout='60'",
        "install.index-url='https://install.example/simple'",
        ":env:.find-links='/opt/wheels'",
        "global.find-links='/ignored/by/the/environment'",
    ])
    assert sources.uv_options(sources.configured(listing)) == [
        "--index-url", "https://install.example/simple",
        "--extra-index-url", "file:///opt/a/simple", "--extra-index-url", "file:///opt/b/simple",
        "--find-links", "/opt/wheels",
    ]


def _printed(tmp_path, **variables) -> str:
    """The script's output with no pip configuration but ``variables``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path), **variables)
    return subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, check=True).stdout


def test_no_configuration_prints_nothing(tmp_path):
    assert _printed(tmp_path) == ""


def test_the_environment_reaches_uv(tmp_path):
    printed = _printed(tmp_path, PIP_EXTRA_INDEX_URL="file:///x/simple file:///y/simple")
    assert printed.splitlines() == ["--extra-index-url", "file:///x/simple", "--extra-index-url", "file:///y/simple"]
