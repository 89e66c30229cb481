"""The docs match the tree: every relative link in README.md, docs/*.md and the plugin READMEs
resolves (file and, for ``#anchor``, heading), and every code path a doc names in backticks exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "plugins").glob("*/README.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: a backticked path into the tree: a top-level code folder, then a path with no wildcard or placeholder
CODE_PATH = re.compile(r"`((?:tokbench|plugins|benchmarks|tests|scripts|suites|examples|slurm|docs)/[\w./-]+)`")


#: docs/write-a-plugin.md walks through the package ``tokbench plugin new mytok`` generates
SCAFFOLD_DOC, SCAFFOLD_NAME = "write-a-plugin.md", "mytok"


def _generated_paths() -> set[str]:
    from tokbench.cli.scaffold import FILES

    return {path.format(name=SCAFFOLD_NAME) for path in FILES}


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target} (no {path.relative_to(REPO) if path.is_relative_to(REPO) else path})")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{doc.relative_to(REPO)}: broken links: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_named_code_paths_exist(doc):
    missing = []
    generated = _generated_paths() if doc.name == SCAFFOLD_DOC else set()
    for named in CODE_PATH.findall(doc.read_text()):
        path = named.rstrip(".")
        if "<" in path or "*" in path or "{" in path:
            continue
        if not (REPO / path).exists() and path not in generated:
            missing.append(path)
    assert not missing, f"{doc.relative_to(REPO)} names paths that do not exist: {sorted(set(missing))}"


def test_the_checks_catch_a_broken_doc(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("see [gone](nowhere.md) and `tokbench/no_such_module.py`\n")
    assert LINK.findall(doc.read_text()) == ["nowhere.md"]
    assert CODE_PATH.findall(doc.read_text()) == ["tokbench/no_such_module.py"]
    assert _anchor("Defaults for what the paper leaves open") == "defaults-for-what-the-paper-leaves-open"
