"""Code digests (what counts as a plugin's code) and the report's split of stored results into
the installed code's and earlier ones. Fast, torch-free, on a package written to tmp_path."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

from tokbench.errors import PluginError
from tokbench.execution.freshness import code_change
from tokbench.report.current import InstalledCode, labelled_as_earlier, labelled_replaced
from tokbench.storage.code_digest import TOKBENCH_NON_COMPUTING, package_root, plugin_code, source_files, training_digest


@pytest.fixture
def package(tmp_path, monkeypatch):
    root = tmp_path / "src" / "digestpkg"
    (root / "tests").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "model.py").write_text("def decode(x):\n    return x + 1\n")
    (root / "train.py").write_text("STEPS = 10\n")
    (root / "presets.yaml").write_text("width: 8\n")
    (root / "README.md").write_text("docs\n")
    (root / "tests" / "test_model.py").write_text("def test(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    importlib.invalidate_caches()
    return root


def digest() -> str:
    return plugin_code("digestpkg", "1.0", ["digestpkg.model:decode"]).digest


def test_code_files_are_sources_and_data_not_tests_or_docs(package):
    assert [rel for rel, _ in source_files("digestpkg")] == ["__init__.py", "model.py", "presets.yaml", "train.py"]
    before = digest()
    (package / "README.md").write_text("other docs\n")
    (package / "tests" / "test_model.py").write_text("def test(): assert 1\n")
    assert digest() == before
    (package / "presets.yaml").write_text("width: 16\n")
    assert digest() != before


def test_tokbench_own_digest_leaves_out_only_what_cannot_change_a_number():
    """The CLI and scaffold, reports, launchers and cluster resources, provenance and test helpers
    are outside tokbench's own digest; the code that computes is inside. Each exclusion still
    names files, so a module moved without its pattern following fails here."""
    files = {relative for relative, _ in source_files("tokbench")}
    outside = {"cli/main.py", "cli/scaffold.py", "report/tables.py", "report/exporters/html.py",
               "execution/launch/slurm.py", "config/resources.py", "storage/provenance.py",
               "storage/code_digest.py", "errors.py", "testing/conformance.py"}
    inside = {"api.py", "hashing.py", "config/suite.py", "registry/builtin.py", "storage/store.py",
              "runtime/context.py", "execution/planner.py", "execution/runner.py", "tasks/reconstruction.py",
              "metrics/frechet.py", "nn/layers.py", "data/imagenet.py"}
    assert not files & outside
    assert inside <= files
    root = package_root("tokbench")
    assert all(any(root.glob(pattern)) for pattern in TOKBENCH_NON_COMPUTING), TOKBENCH_NON_COMPUTING


def test_comment_and_whitespace_edits_count(package):
    before = digest()
    (package / "model.py").write_text("def decode(x):\n    return x + 1  # fixed\n")
    commented = digest()
    (package / "model.py").write_text("def decode(x):\n    return x + 1  # fixed \n")
    assert len({before, commented, digest()}) == 3


def test_training_digest_covers_only_the_declared_files(package):
    trained, files = training_digest("digestpkg", ["train.py"])
    assert files == ["train.py"]
    (package / "model.py").write_text("def decode(x):\n    return x\n")
    assert training_digest("digestpkg", ["train.py"])[0] == trained
    (package / "train.py").write_text("STEPS = 20\n")
    assert training_digest("digestpkg", ["train.py"])[0] != trained
    with pytest.raises(PluginError, match="names 'trian.py', which matches no file"):
        training_digest("digestpkg", ["trian.py"])


def test_a_missing_package_is_named():
    with pytest.raises(PluginError, match="cannot find the source of package 'no_such_pkg_xyz'"):
        plugin_code("x", "1", ["no_such_pkg_xyz.mod:f"])


def test_digesting_imports_neither_torch_nor_the_plugin(package):
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(package.parent)!r})
        from tokbench.storage.code_digest import plugin_code
        plugin_code("digestpkg", "1", ["digestpkg.model:decode"])
        print(sorted(m for m in ("torch", "digestpkg", "digestpkg.model") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def record(plugin: str, version: str, digest_value: str, packages=("digestpkg",)) -> dict:
    code = {"plugin": plugin, "version": version, "digest": digest_value, "packages": list(packages)}
    return {"tokenizer": {"name": "tok", "label": "Tok"}, "provenance": {"code": {"tokenizer": code}}}


class _Registry:
    def __init__(self, versions):
        self.plugins = [type("Info", (), {"name": n, "version": v, "error": None})() for n, v in versions.items()]


def test_installed_code_tells_current_results_from_earlier_ones(package):
    installed = InstalledCode(_Registry({"digestpkg": "1.0"}))
    now = plugin_code("digestpkg", "1.0", ["digestpkg.model:decode"]).digest
    assert installed.difference(record("digestpkg", "1.0", now)) is None
    assert installed.difference(record("digestpkg", "1.0", "0" * 64)) == "plugin digestpkg code 000000000000 (installed code differs)"
    assert installed.difference(record("digestpkg", "0.9", now)) == "plugin digestpkg 0.9 (installed: 1.0)"
    assert installed.difference(record("gone", "1.0", now)) == "plugin gone is not installed"
    assert installed.difference({"tokenizer": {}}) == "computed before code digests were recorded"


def test_earlier_results_get_their_own_labelled_row():
    old = record("digestpkg", "1.0", "ab" * 32)
    labelled = labelled_as_earlier(old, "why")
    assert labelled["tokenizer"]["name"] == "tok [digestpkg 1.0 @abababababab]"
    assert labelled["tokenizer"]["label"] == "Tok [earlier: digestpkg 1.0 @abababababab]"
    assert old["tokenizer"]["name"] == "tok"  # a copy
    replaced = labelled_replaced([{**old, "suite": {"run": "20261206-run"}}])[0]
    assert replaced["tokenizer"]["name"] == "tok [replaced: 20261206-run, digestpkg 1.0 @abababababab]"


def test_the_stale_reason_names_the_plugin_that_changed():
    a = {"plugin": "jpeg", "version": "0.1.0", "digest": "a" * 64}
    assert code_change({"tokenizer": a}, {"tokenizer": {**a, "digest": "b" * 64}}) == (
        "code of plugin jpeg changed since the stored result (aaaaaaaaaaaa -> bbbbbbbbbbbb)")
    assert code_change({"tokenizer": a}, {"tokenizer": {**a, "version": "0.2.0"}}) == "plugin jpeg version changed (0.1.0 -> 0.2.0)"
    assert code_change({}, {"tokenizer": a}) == "the stored result predates code digests"


def test_core_code_a_plugin_imports_is_part_of_its_digest(tmp_path, monkeypatch):
    """A plugin that calls tokbench_<other> (and, the same way, tokbench's core) changes digest when
    that code changes, directly or through a chain of imports, lazy ones included; code it does
    not import does not count."""
    src = tmp_path / "src"
    core = src / "tokbench_sharedcore"
    (core / "training").mkdir(parents=True)
    (core / "__init__.py").write_text("")
    (core / "training" / "__init__.py").write_text("")
    (core / "training" / "loop.py").write_text("from tokbench_sharedcore.mathx import scale\nSTEPS = 10\n")
    (core / "mathx.py").write_text("def scale(x):\n    return 2 * x\n")
    (core / "unused.py").write_text("X = 1\n")
    plugin = src / "closurepkg"
    plugin.mkdir()
    (plugin / "__init__.py").write_text("")
    (plugin / "train.py").write_text("def fit():\n    from tokbench_sharedcore.training import loop\n    return loop.STEPS\n")
    (plugin / "model.py").write_text("def decode(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(src))
    importlib.invalidate_caches()

    def both() -> tuple[str, str]:
        return (plugin_code("closurepkg", "1", ["closurepkg.model:decode"]).digest,
                training_digest("closurepkg", ["train.py"])[0])

    before = both()
    assert "tokbench_sharedcore/mathx.py" in training_digest("closurepkg", ["train.py"])[1]
    (core / "unused.py").write_text("X = 2\n")
    assert both() == before
    (core / "mathx.py").write_text("def scale(x):\n    return 3 * x\n")  # two imports away
    after = both()
    assert after[0] != before[0] and after[1] != before[1]
    assert "sharedcore" not in str(sys.modules.get("tokbench_sharedcore", ""))  # nothing was imported
