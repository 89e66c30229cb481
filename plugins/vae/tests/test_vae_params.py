"""VAEParams validation, planning hooks, registration and import lightness."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from tokbench.errors import MissingAssetError
from tokbench_vae.params import TinyTrainParams, VAEParams, looks_like_hub_id


def test_exactly_one_source():
    with pytest.raises(ValidationError, match="set one weight source.*pretrained.*preset: tiny"):
        VAEParams()
    with pytest.raises(ValidationError, match="both set; keep exactly one"):
        VAEParams(pretrained="stabilityai/sd-vae-ft-ema", preset="tiny")
    with pytest.raises(ValidationError, match="are all set; keep exactly one"):
        VAEParams(pretrained="a/b", checkpoint="va-vae-f16d32", preset="tiny")
    assert VAEParams(preset="tiny").preset == "tiny"
    assert VAEParams(pretrained="stabilityai/sd-vae-ft-ema").pretrained == "stabilityai/sd-vae-ft-ema"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"preset": "tiny", "colour": 1}, "Extra inputs are not permitted"),
        ({"preset": "tiny", "train": {"stepz": 3}}, "Extra inputs are not permitted"),
        ({"preset": "huge"}, "'tiny'"),
        ({"preset": "tiny", "precision": "fp16"}, "'fp32' or 'bf16'"),
        ({"preset": "tiny", "subfolder": "vae"}, "only apply to `pretrained`"),
        ({"pretrained": "a/b", "train": {"steps": 3}}, "`train` only applies to `preset: tiny`"),
        ({"pretrained": ""}, "at least 1 character"),
        ({"preset": "tiny", "train": {"block_out_channels": [12, 16], "norm_num_groups": 8}}, "divisible by norm_num_groups"),
        ({"preset": "tiny", "train": {"resolution": 30}}, "resolution 30 is not divisible"),
        ({"preset": "tiny", "train": {"crop_size": 128}}, "larger than resolution"),
        ({"preset": "tiny", "train": {"lpips_weight": -1}}, "greater than or equal to 0"),
    ],
)
def test_invalid_params_are_explained(params, message):
    with pytest.raises(ValidationError, match=message):
        VAEParams.model_validate(params)


@pytest.mark.parametrize("params", [{"preset": "tiny", "train": {"steps": 9}}, {"pretrained": "a/b", "subfolder": "vae"}])
def test_dumped_params_validate_again(params):
    model = VAEParams.model_validate(params)
    assert VAEParams.model_validate(model.model_dump(mode="json")) == model


def test_planning_hooks(tmp_path):
    assert VAEParams(preset="tiny").needs_preparation()
    assert VAEParams(preset="tiny").identity_files() == []
    assert not VAEParams(pretrained="stabilityai/sd-vae-ft-ema").needs_preparation()
    assert VAEParams(pretrained="stabilityai/sd-vae-ft-ema").identity_files() == []
    directory = tmp_path / "vae"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    (directory / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    (directory / "README.md").write_text("ignored")
    files = VAEParams(pretrained=str(directory)).identity_files()
    assert files == [str((directory / "config.json").resolve()), str((directory / "diffusion_pytorch_model.safetensors").resolve())]
    with pytest.raises(MissingAssetError, match=str(tmp_path / "gone")):
        VAEParams(pretrained=str(tmp_path / "gone")).identity_files()


def test_hub_ids_and_paths_are_told_apart():
    assert looks_like_hub_id("stabilityai/sd-vae-ft-ema") and looks_like_hub_id("gpt2")
    for path in ("/abs/vae", "./vae", "../vae", "~/vae", "a/b/c", "a\\b"):
        assert not looks_like_hub_id(path), path


def test_cache_inputs_ignore_compile():
    assert TinyTrainParams(compile=True).cache_inputs() == TinyTrainParams().cache_inputs()
    assert TinyTrainParams(steps=7).cache_inputs() != TinyTrainParams().cache_inputs()


def test_registers_the_vae_tokenizer():
    from tokbench.registry.plugins import resolve
    from tokbench_vae import plugin

    calls = {}
    plugin.tokbench_register_tokenizers(register=lambda name, **fields: calls.setdefault(name, fields))
    fields = calls["vae"]
    assert fields["capabilities"] == {"encode", "decode"} and fields["description"]
    assert resolve(fields["params"]) is VAEParams
    assert callable(resolve(fields["factory"]))


def test_plugin_and_params_do_not_import_torch_or_diffusers():
    code = (
        "import sys\n"
        "import tokbench_vae, tokbench_vae.plugin, tokbench_vae.params, tokbench_vae.presets\n"
        "p = tokbench_vae.params.VAEParams(preset='tiny'); p.identity_files(); p.needs_preparation()\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'lpips') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
