"""Plugin loading: entry points, broken plugins reported, torch-free listing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tokbench.hookspecs import hookimpl
from tokbench.registry.plugins import PluginInfo, Registry

from conftest import REPO, run_cli


def make_dist(root, name, version, module_source):
    """A minimal installed distribution with a `tokbench` entry point."""
    (root / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[tokbench]\n{name} = {name}\n")


def test_in_repo_plugins_register_through_entry_points():
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["plugin_api"] == 1
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert plugins["builtin"]["status"] == "ok" and plugins["builtin"]["source"] == "built in"
    assert plugins["vae"]["status"] == "ok", plugins["vae"]["error"]
    assert "tokenizer:vae [decode, encode]" in plugins["vae"]["registered"]
    assert "task:zero_shot (needs image_features, text)" in plugins["builtin"]["registered"]
    assert plugins["vae"]["module"] == "tokbench_vae.plugin"
    assert plugins["vae"]["source"].startswith("entry point tokbench_vae.plugin from tokbench ")
    assert plugins["vae"]["source"].endswith("(in-repo plugin)")


def test_broken_plugin_is_reported_and_never_breaks_other_commands(tmp_path):
    make_dist(tmp_path, "brokenplug", "1.2.3", "raise ImportError('needs libfoo')\n")
    make_dist(
        tmp_path, "goodplug", "0.4.0",
        """
        from tokbench.hookspecs import hookimpl

        @hookimpl
        def tokbench_register_tokenizers(register):
            register("extra", factory="goodplug:build", params="goodplug:Params", capabilities={"encode", "decode"})
        """,
    )
    env = {"PYTHONPATH": str(tmp_path)}
    listing = run_cli("plugins", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "brokenplug 1.2.3 [entry point brokenplug from brokenplug 1.2.3]: error" in listing.stdout
    assert "ImportError: needs libfoo" in listing.stdout
    assert "goodplug 0.4.0 [entry point goodplug from goodplug 0.4.0]: ok" in listing.stdout
    assert "tokenizer:extra [decode, encode]" in listing.stdout
    validated = run_cli("validate", str(REPO / "suites" / "quickstart.yaml"), env=env)
    assert validated.returncode == 0, validated.stderr


def test_disable_and_select_plugins_by_environment(tmp_path):
    make_dist(tmp_path, "brokenplug", "1.0", "raise RuntimeError('boom')\n")
    env = {"PYTHONPATH": str(tmp_path), "TOKBENCH_DISABLE_PLUGINS": "brokenplug"}
    assert "brokenplug" not in run_cli("plugins", env=env).stdout
    env = {"PYTHONPATH": str(tmp_path), "TOKBENCH_PLUGINS": "vae"}
    listing = run_cli("plugins", env=env).stdout
    assert "brokenplug" not in listing and "vae" in listing


class _HookFails:
    @staticmethod
    @hookimpl
    def tokbench_register_tasks(register):
        register("half-registered", task="x:y", params="x:Z")
        raise RuntimeError("registration crashed")


class _Duplicate:
    @staticmethod
    @hookimpl
    def tokbench_register_tasks(register):
        register("dup", task="x:y", params="x:Z")


def test_failing_hook_rolls_back_its_registrations():
    registry = Registry()
    registry.add_plugin(_HookFails, PluginInfo("fails", "m", "1"))
    assert "half-registered" not in registry.tasks
    assert registry.broken[0].error == "RuntimeError: registration crashed"


def test_duplicate_name_is_an_error_of_the_second_plugin():
    registry = Registry()
    registry.add_plugin(_Duplicate, PluginInfo("first", "m", "1"))
    registry.add_plugin(type("Again", (), {"tokbench_register_tasks": _Duplicate.tokbench_register_tasks}), PluginInfo("second", "m", "1"))
    assert registry.tasks["dup"].plugin == "first"
    assert "already registered by plugin 'first'" in registry.broken[0].error


def test_light_commands_import_no_torch(tmp_path):
    """Listing plugins, validating suites and exporting tables never import torch."""
    code = textwrap.dedent(
        f"""
        import sys
        from tokbench.cli.main import main
        for argv in (["plugins"], ["validate", {str(REPO / 'suites' / 'quickstart.yaml')!r}],
                     ["export", "--store", {str(tmp_path / 'store')!r}], ["export", "--store", {str(tmp_path / 'store')!r}, "--format", "csv"],
                     ["export", "--store", {str(tmp_path / 'store')!r}, "--format", "html"],
                     ["export", "--store", {str(tmp_path / 'store')!r}, "--format", "latex"],
                     ["store", "ls", "--store", {str(tmp_path / 'store')!r}]):
            try:
                main(argv)
            except SystemExit as exit:
                assert not exit.code, (argv, exit.code)
        heavy = sorted(m for m in ("torch", "torchvision", "diffusers", "timm", "open_clip") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    (tmp_path / "store").mkdir()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
