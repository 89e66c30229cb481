"""The docs cannot drift: every suite in docs/ validates against the code, every dataset a
tutorial suite uses is defined in it, and the tutorial's command blocks run (on its tiny
configurations) and print what docs/write-a-plugin.md shows (scripts/render_docs_outputs.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, run_cli
from test_plugin_scaffold import install

pytestmark = pytest.mark.slow

DOCS = sorted((REPO / "docs").glob("*.md"))
SUITE_SECTIONS = ("datasets", "tokenizers", "tasks")


def yaml_blocks():
    for doc in DOCS:
        for match in re.finditer(r"^```ya?ml\n(.*?)^```$", doc.read_text(), re.S | re.M):
            data = yaml.safe_load(match.group(1))
            if isinstance(data, dict) and any(section in data for section in SUITE_SECTIONS):
                yield doc.name, data


def as_suite(data: dict) -> dict:
    """A whole suite as is; a fragment (a few sections shown in prose) inside the smallest
    suite that gives its tasks what they need: its own datasets, else one shapes split; its
    own tokenizers, else the tiny VTP (which has every capability)."""
    if "name" in data:
        return data
    datasets = data.get("datasets") or {"doc-shapes": {"kind": "shapes", "params": {"num_images": 8}}}
    tokenizers = data.get("tokenizers") or {"doc-vtp": {"plugin": "vtp", "params": {"recipe": "tiny"}}}  # every capability
    tasks = [t for t in data.get("tasks") or [] if t.get("dataset") in datasets]
    return {"name": "doc-fragment", "datasets": datasets, "tokenizers": tokenizers,
            "tasks": tasks or [{"kind": "reconstruction", "dataset": next(iter(datasets))}]}


@pytest.fixture(scope="module")
def tutorial_plugins(tmp_path_factory):
    """The tutorial's two plugins (the scaffolded `mytok`, the patch-PCA example), installed."""
    root = tmp_path_factory.mktemp("doc-plugins")
    assert run_cli("plugin", "new", "mytok", "--dir", str(root)).returncode == 0
    site = root / "site"
    env = install(root / "tokbench-mytok", site)
    copy = root / "tokbench-patchpca"  # building must not litter the repository
    shutil.copytree(REPO / "examples" / "tokbench-patchpca", copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    install(copy, site)
    return env


def test_every_suite_in_the_docs_validates(tmp_path, tutorial_plugins):
    blocks = list(yaml_blocks())
    assert any(doc == "write-a-plugin.md" for doc, _ in blocks)
    for index, (doc, data) in enumerate(blocks):
        suite = tmp_path / f"{index}.yaml"
        suite.write_text(yaml.safe_dump(as_suite(data)))
        checked = run_cli("validate", str(suite), env=tutorial_plugins)
        assert checked.returncode == 0, f"{doc}: a suite block does not validate:\n{checked.stderr}"
        if doc == "write-a-plugin.md":  # the tutorial's suites are whole: every dataset defined in them
            assert "name" in data and set(data["datasets"]) >= {t["dataset"] for t in data["tasks"]}
            assert set(data["datasets"]) >= {t["train_dataset"] for t in data["tasks"] if "train_dataset" in t}


def test_a_tokenizer_train_dataset_is_checked_with_a_did_you_mean(tmp_path, tutorial_plugins):
    suite = tmp_path / "typo.yaml"
    text = (REPO / "examples" / "tokbench-patchpca" / "suites" / "patchpca.yaml").read_text()
    suite.write_text(text.replace("train_dataset: shapes-train", "train_dataset: shapes-trian"))
    checked = run_cli("validate", str(suite), env=tutorial_plugins)
    assert checked.returncode == 2
    assert ("tokenizers.patchpca.params.train_dataset: unknown dataset 'shapes-trian'; allowed: shapes-train, "
            "shapes-val (did you mean 'shapes-train'?)") in checked.stderr


def test_the_tutorial_runs_and_prints_what_the_doc_shows():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "render_docs_outputs.py"), "--check"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "every output matches" in done.stdout
