"""The package installs anywhere: a wheel built from the checkout and installed into a folder
outside it holds every module and every preset, and works with the checkout off ``sys.path``;
provenance then records the installed version; removing one in-repo plugin from that install
breaks neither the CLI nor the other plugins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGINS = sorted(p.name for p in (REPO / "plugins").iterdir() if (p / "__init__.py").is_file())
pytestmark = pytest.mark.slow


def _pip(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
                   cwd=cwd, check=True, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip wheel . && pip install --target``, offline, from a copy of the checkout (so the build
    writes nothing into it and no stale build folder can leak into the wheel)."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    for name in ("tokbench", "plugins"):
        shutil.copytree(REPO / name, source / name, ignore=skip)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "wheels"), ".", cwd=source)
    (wheel,) = (root / "wheels").glob("tokbench-*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", str(root / "site"), str(wheel), cwd=root)
    return root / "site"


def _run_installed(target: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Python with ``target`` and the dependencies' site-packages on the path, nothing else: ``-S``
    skips the ``.pth`` files, so the editable install's finder cannot reach the checkout."""
    dependencies = list(dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "TOKBENCH_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(target), *dependencies]), PYTHONNOUSERSITE="1",
               HF_HUB_OFFLINE="1", TOKBENCH_NO_PROGRESS="1", TOKBENCH_CACHE=str(cwd / "cache"))
    return subprocess.run([sys.executable, "-S", "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _json_of(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_folder_of_modules_is_a_package():
    """setup.py ships regular packages only: a folder of modules without ``__init__.py`` imports from
    a checkout (as a namespace package) but would be left out of the wheel."""
    folders = {p.parent for root in (REPO / "tokbench", REPO / "plugins") for p in root.rglob("*.py")
               if "tests" not in p.relative_to(REPO).parts}
    missing = sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file())
    assert not missing, f"add an __init__.py to {', '.join(missing)}: without one a wheel leaves the folder out"


def test_wheel_holds_every_package_and_data_file(installed):
    expected = {Path("tokbench") / p.relative_to(REPO / "tokbench") for p in (REPO / "tokbench").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    for plugin in PLUGINS:
        folder = REPO / "plugins" / plugin
        expected |= {Path(f"tokbench_{plugin}") / p.relative_to(folder) for p in folder.rglob("*")
                     if p.is_file() and not {"__pycache__", "tests"} & set(p.relative_to(folder).parts)
                     and p.suffix != ".pyc"}
    shipped = {p.relative_to(installed) for p in installed.rglob("*") if p.is_file()}
    assert not expected - shipped, f"missing from the wheel: {sorted(map(str, expected - shipped))}"
    assert any(p.suffix == ".yaml" for p in expected), "the presets are package data"
    assert not [p for p in shipped if "tests" in p.parts], "plugin tests do not ship"


def test_installed_package_imports_every_module_and_loads_every_preset(installed, tmp_path):
    result = _run_installed(installed, f"""
        import importlib, json, pkgutil, sys
        from pathlib import Path
        target = Path({str(installed)!r})
        assert not any(Path(p or ".").resolve() == Path({str(REPO)!r}) for p in sys.path)
        names = ["tokbench", *("tokbench_" + p for p in {PLUGINS!r})]
        modules = []
        for name in names:
            package = importlib.import_module(name)
            modules.append(package)
            for info in pkgutil.walk_packages(package.__path__, name + "."):
                modules.append(importlib.import_module(info.name))
        outside = [m.__name__ for m in modules if target not in Path(m.__file__).resolve().parents]

        from tokbench.registry.plugins import get_registry, resolve
        registry = get_registry()
        broken = [(p.name, p.error) for p in registry.plugins if p.error]
        params = {{name: resolve(entry.params) for name, entry in registry.tokenizers.items()}}
        from tokbench_vae.presets import PRESETS as VAE_PRESETS
        from tokbench_vqgan.presets import PRESETS as VQGAN_PRESETS, RELEASED
        from tokbench_vtp.pretrain.recipe import preset_names
        vtp = {{name: params["vtp"](recipe=name).recipe_config().steps for name in preset_names()}}
        rae = params["rae"](preset="tiny").encoder_recipe().steps
        vae = [params["vae"](preset=name).preset for name in VAE_PRESETS]
        vqgan = [params["vqgan"](preset=name, **({{"checkpoint": "/nowhere.ckpt"}} if name in RELEASED else {{}})).preset
                 for name in VQGAN_PRESETS]

        import torch
        resample = resolve(registry.tokenizers["resample"].factory)(params["resample"]())
        image = torch.rand(1, 3, 32, 32)
        decoded = resample.decode(resample.encode(image))

        from tokbench.storage import provenance
        print(json.dumps({{"modules": len(modules), "outside": outside, "broken": broken,
                          "tokenizers": sorted(registry.tokenizers), "vtp": vtp, "rae": rae, "vae": vae,
                          "vqgan": vqgan, "resample": list(decoded.shape),
                          "source": provenance.collect("cpu")["source"]}}))
    """, tmp_path)
    found = _json_of(result)
    assert found["outside"] == [] and found["modules"] > 100
    assert found["broken"] == []
    assert {"resample", *PLUGINS} <= set(found["tokenizers"])
    assert set(found["vtp"]) >= {"tiny", "small", "base", "large"} and all(found["vtp"].values())
    assert found["rae"] > 0 and found["vae"] == ["tiny"] and "tiny" in found["vqgan"]
    assert found["resample"] == [1, 3, 32, 32]
    assert found["source"] == {"kind": "installed package", "distribution": "tokbench", "version": "0.1.0"}


CLI = "import sys; from tokbench.cli.main import main; main(sys.argv[1:])"


def _without_plugin(installed: Path, plugin: str, root: Path) -> Path:
    """A copy of the install with one in-repo plugin uninstalled: its package and its entry point gone."""
    target = root / f"without-{plugin}"
    shutil.copytree(installed, target)
    shutil.rmtree(target / f"tokbench_{plugin}")
    (entry_points,) = target.glob("tokbench-*.dist-info/entry_points.txt")
    lines = entry_points.read_text().splitlines()
    kept = [line for line in lines if not line.startswith(f"{plugin} = ")]
    assert len(kept) == len(lines) - 1
    entry_points.write_text("\n".join(kept) + "\n")
    return target


SUITE = """
name: one-plugin-gone
store: {{root: store}}
datasets:
  shapes: {{kind: shapes, params: {{split: val, num_images: 8, resolution: 32}}}}
tokenizers:
{tokenizers}
tasks:
  - {{kind: reconstruction, dataset: shapes, params: {{num_images: 8, metrics: [psnr]}}}}
"""
TOKENIZER_PARAMS = {"resample": "{factor: 4}", "vae": "{preset: tiny}", "vqgan": "{preset: tiny}",
                    "vtp": "{recipe: tiny}", "rae": "{preset: tiny}"}


def _suite(path: Path, families: list[str]) -> Path:
    rows = "\n".join(f"  {family}-t: {{plugin: {family}, params: {TOKENIZER_PARAMS[family]}}}" for family in families)
    path.write_text(SUITE.format(tokenizers=rows))
    return path


@pytest.mark.parametrize("gone", PLUGINS)
def test_uninstalling_one_plugin_breaks_neither_the_cli_nor_the_others(installed, tmp_path, gone):
    target = _without_plugin(installed, gone, tmp_path)
    listing = _run_installed(target, CLI.replace("sys.argv[1:]", "['plugins', '--json']"), tmp_path)
    assert listing.returncode == 0, listing.stderr[-3000:]
    plugins = {row["name"]: row for row in json.loads(listing.stdout)["plugins"]}
    assert gone not in plugins and set(plugins) == {"builtin", *PLUGINS} - {gone}
    assert all(row["status"] == "ok" for row in plugins.values()), plugins

    # the others need nothing of the one gone, except RAE's tiny preset, which is VTP-pretrained
    needs_gone = {"vtp": {"rae"}}.get(gone, set())
    others = ["resample", *(p for p in PLUGINS if p != gone and p not in needs_gone)]
    suite = _suite(tmp_path / "others.yaml", others)
    valid = _run_installed(target, CLI.replace("sys.argv[1:]", f"['validate', {str(suite)!r}]"), tmp_path)
    assert valid.returncode == 0 and f"{len(others)} tokenizer(s)" in valid.stdout, valid.stderr[-3000:]

    for family in needs_gone:
        suite = _suite(tmp_path / f"{family}.yaml", [family])
        refused = _run_installed(target, CLI.replace("sys.argv[1:]", f"['validate', {str(suite)!r}]"), tmp_path)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
        assert f"tokbench_{gone}" in refused.stderr and "pip install" in refused.stderr
