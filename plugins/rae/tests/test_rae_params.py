"""RAEParams: validation messages, planning hooks, the SSL-only encoder recipe, torch-free imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from tokbench.errors import MissingAssetError
from tokbench_rae.params import DecoderTrainParams, RAEParams


def test_exactly_one_source():
    with pytest.raises(ValidationError, match=r"set one weight source: `pretrained: <dinov2-b \| dinov2-b-512>`.*preset: tiny"):
        RAEParams()
    with pytest.raises(ValidationError, match="`pretrained` and `preset` are both set"):
        RAEParams(pretrained="dinov2-b", preset="tiny")
    with pytest.raises(ValidationError, match="`decoder` and `preset` are both set"):
        RAEParams(decoder="m.pt", preset="tiny")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"pretrained": "dinov2-l"}, r"pretrained\n.*'dinov2-b' or 'dinov2-b-512'"),
        ({"preset": "huge"}, r"preset\n.*'tiny'"),
        ({"preset": "tiny", "precision": "fp16"}, r"precision\n.*'fp32' or 'bf16'"),
        ({"preset": "tiny", "colour": 1}, r"colour\n.*Extra inputs are not permitted"),
        ({"preset": "tiny", "train": {"stepz": 3}}, r"train.stepz\n.*Extra inputs"),
        ({"preset": "tiny", "train": {"decoder_size": "ViT-H"}}, r"train.decoder_size\n.*'ViT-B', 'ViT-L', 'ViT-XL' or 'tiny'"),
        ({"preset": "tiny", "train": {"noise_tau": -0.1}}, r"train.noise_tau\n.*greater than or equal to 0"),
        ({"preset": "tiny", "train": {"resolution": 60}}, "resolution 60 is not a multiple of patch_size 8"),
        ({"preset": "tiny", "train": {"disc_start": 700}}, r"disc_start \(700\) is after gan_start \(600\)"),
        ({"preset": "tiny", "stats": "s.pt"}, "stats only apply to released/local weights"),
        ({"preset": "tiny", "encoder": "vit_small_patch14_dinov2"}, "encoder only apply"),
        ({"decoder": "m.pt", "train": {"steps": 3}}, "`train` only applies to `preset: tiny`"),
        ({"decoder": "m.pt", "encoder_recipe_overrides": {"steps": 3}}, "only apply to `preset: tiny`"),
        ({"decoder": "m.pt", "revision": "main"}, "`revision` only applies to a hub `pretrained`"),
        ({"pretrained": "dinov2-b", "encoder": "vit_large_patch14_reg4_dinov2"}, "was trained on vit_base_patch14_reg4"),
        ({"preset": "tiny", "encoder_recipe_overrides": {"stepz": 3}}, r"encoder_recipe_overrides.stepz: Extra inputs"),
        ({"preset": "tiny", "encoder_recipe_overrides": {"loss": {"clip": 1.0}}}, "self-supervised loss only"),
        ({"preset": "tiny", "encoder_recipe_overrides": {"crops": {"image_size": 32, "global_size": 32, "local_size": 16}}},
         r"crops.image_size \(32\) differs from train.resolution \(64\)"),
    ],
)
def test_invalid_params_name_the_field(params, message):
    with pytest.raises(ValidationError, match=message):
        RAEParams.model_validate(params)


@pytest.mark.parametrize("params", [{"preset": "tiny", "train": {"steps": 9, "warmup_steps": 2}},
                                    {"pretrained": "dinov2-b", "revision": "main"},
                                    {"decoder": "m.pt", "stats": "s.pt", "encoder_checkpoint": "e.safetensors"}])
def test_dumped_params_validate_again(params):
    model = RAEParams.model_validate(params)
    assert RAEParams.model_validate(model.model_dump(mode="json")) == model


def test_planning_hooks(tmp_path):
    assert RAEParams(preset="tiny").needs_preparation() and RAEParams(preset="tiny").identity_files() == []
    assert not RAEParams(pretrained="dinov2-b").needs_preparation()
    assert RAEParams(pretrained="dinov2-b").native_resolution == 256
    assert RAEParams(pretrained="dinov2-b-512").native_resolution == 512
    decoder, stats = tmp_path / "model.pt", tmp_path / "stat.pt"
    decoder.write_bytes(b"x")
    stats.write_bytes(b"y")
    files = RAEParams(decoder=str(decoder), stats=str(stats)).identity_files()
    assert files == [str(decoder.resolve()), str(stats.resolve())]
    with pytest.raises(MissingAssetError, match=r"encoder_checkpoint file .*gone.safetensors.*hf download timm/"):
        RAEParams(decoder=str(decoder), encoder_checkpoint=str(tmp_path / "gone.safetensors")).identity_files()
    with pytest.raises(MissingAssetError, match="hf download nyu-visionx/RAE-collections models/decoders/dinov2"):
        RAEParams(decoder=str(tmp_path / "missing.pt")).identity_files()


def test_tiny_encoder_recipe_is_ssl_only_and_overridable():
    recipe = RAEParams(preset="tiny").encoder_recipe()
    assert (recipe.loss.clip, recipe.loss.rec) == (0.0, 0.0) and recipe.loss.ssl > 0
    assert recipe.loss.dino > 0 and recipe.loss.ibot > 0
    assert not recipe.arch.with_text and not recipe.arch.with_decoder
    assert recipe.arch.patch_size == 8 and recipe.crops.image_size == 64  # 8x8 tokens at 64 px
    assert recipe.stage2.steps == 0
    longer = RAEParams(preset="tiny", encoder_recipe_overrides={"steps": 7}).encoder_recipe()
    assert longer.steps == 7 and longer.cache_inputs() != recipe.cache_inputs()
    assert RAEParams(pretrained="dinov2-b").encoder_recipe() is None


def test_train_cache_inputs_follow_the_settings():
    assert DecoderTrainParams().cache_inputs() == DecoderTrainParams().cache_inputs()
    assert DecoderTrainParams(noise_tau=0.0).cache_inputs() != DecoderTrainParams().cache_inputs()
    assert DecoderTrainParams().grid == 8


def test_registers_the_rae_tokenizer():
    from tokbench.registry.plugins import resolve
    from tokbench_rae import plugin

    calls = {}
    plugin.tokbench_register_tokenizers(register=lambda name, **fields: calls.setdefault(name, fields))
    fields = calls["rae"]
    assert fields["capabilities"] == {"encode", "decode", "image_features"}
    assert resolve(fields["params"]) is RAEParams and callable(resolve(fields["factory"]))


def test_plugin_and_params_do_not_import_torch():
    code = (
        "import sys\n"
        "import tokbench_rae, tokbench_rae.plugin, tokbench_rae.params, tokbench_rae.sizes\n"
        "p = tokbench_rae.params.RAEParams(preset='tiny'); p.identity_files(); p.needs_preparation(); p.encoder_recipe()\n"
        "print(sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_suite_validation_reports_rae_param_paths(tmp_path):
    from tokbench.config.suite import load_suite
    from tokbench.errors import SuiteError

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ndatasets: {d: {kind: shapes}}\n"
        "tokenizers: {r: {plugin: rae, params: {preset: tiny, train: {noise_taux: 0.5}}}}\n"
        "tasks: [{kind: reconstruction, dataset: d}]\n"
    )
    with pytest.raises(SuiteError) as info:
        load_suite(suite)
    assert "tokenizers.r.params.train.noise_taux: unknown field 'noise_taux'" in str(info.value)
    assert "(did you mean 'noise_tau'?)" in str(info.value)
