"""VQGANParams validation, planning hooks, registration and import lightness (no torch needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from tokbench.errors import MissingAssetError
from tokbench_vqgan.params import TinyTrainParams, VQGANParams


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "set one weight source.*format: taming.*tiny, f16-1024, f16-16384, llamagen-vq16"),
        ({"preset": "huge"}, "'tiny', 'f16-1024', 'f16-16384' or 'llamagen-vq16'"),
        ({"checkpoint": "a.ckpt", "format": "ldm"}, "'taming' or 'llamagen'"),
        ({"checkpoint": "a.ckpt", "latent": "sample"}, "'codes' or 'pre_quant'"),
        ({"preset": "tiny", "precision": "fp16"}, "'fp32' or 'bf16'"),
        ({"preset": "tiny", "checkpoint": "a.ckpt"}, "preset: tiny` trains new weights; remove `checkpoint`"),
        ({"preset": "f16-16384"}, "not on the Hugging Face hub.*heibox.uni-heidelberg.de/d/a7530b09fed84f80a887"),
        ({"preset": "f16-1024", "checkpoint": "a.ckpt", "format": "llamagen"}, "is a taming checkpoint but `format: llamagen`"),
        ({"preset": "llamagen-vq16", "config": "model.yaml"}, "`config`.*only applies to `format: taming`"),
        ({"checkpoint": "a.ckpt", "revision": "main"}, "`revision` only applies to a hub checkpoint"),
        ({"checkpoint": "hf:owner/file.pt"}, "must read hf:<owner>/<name>/<file>"),
        ({"checkpoint": "a.ckpt", "train": {"steps": 3}}, "`train` only applies to `preset: tiny`"),
        ({"preset": "tiny", "colour": 1}, "Extra inputs are not permitted"),
        ({"preset": "tiny", "train": {"stepz": 3}}, "Extra inputs are not permitted"),
        ({"preset": "tiny", "train": {"block_out_channels": [12, 16], "norm_num_groups": 8}}, "divisible by norm_num_groups=8"),
        ({"preset": "tiny", "train": {"resolution": 30}}, "resolution 30 is not divisible by the downsampling factor 4"),
        ({"preset": "tiny", "train": {"crop_size": 128}}, "larger than resolution"),
        ({"preset": "tiny", "train": {"codebook_size": 1}}, "greater than or equal to 2"),
    ],
)
def test_invalid_params_name_the_field_and_the_choices(params, message):
    with pytest.raises(ValidationError, match=message):
        VQGANParams.model_validate(params)


@pytest.mark.parametrize("params", [
    {"preset": "tiny", "train": {"steps": 9}},
    {"preset": "f16-16384", "checkpoint": "/x/ckpts/last.ckpt", "latent": "pre_quant"},
    {"preset": "llamagen-vq16", "revision": "main"},
    {"format": "taming", "checkpoint": "a.ckpt", "config": "b.yaml"},
])
def test_dumped_params_validate_again(params):
    model = VQGANParams.model_validate(params)
    assert VQGANParams.model_validate(model.model_dump(mode="json")) == model


def test_released_presets_resolve_without_torch():
    vq16 = VQGANParams(preset="llamagen-vq16")
    assert vq16.checkpoint_ref() == "hf:FoundationVision/LlamaGen/vq_ds16_c2i.pt"
    assert vq16.checkpoint_format() == "llamagen" and vq16.local_checkpoint() is None and vq16.identity_files() == []
    assert "huggingface-cli download FoundationVision/LlamaGen vq_ds16_c2i.pt" in vq16.how_to_get()
    assert VQGANParams(preset="f16-1024", checkpoint="x.ckpt").checkpoint_format() == "taming"
    assert VQGANParams(checkpoint="x.pt").checkpoint_format() is None  # detected from the keys


def test_planning_hooks_follow_the_official_taming_layout(tmp_path):
    assert VQGANParams(preset="tiny").needs_preparation()
    assert VQGANParams(preset="tiny").identity_files() == []
    run = tmp_path / "vqgan_imagenet_f16_16384"
    (run / "ckpts").mkdir(parents=True)
    (run / "configs").mkdir()
    (run / "ckpts" / "last.ckpt").write_bytes(b"x")
    (run / "configs" / "model.yaml").write_text("model: {}")
    params = VQGANParams(preset="f16-16384", checkpoint=str(run / "ckpts" / "last.ckpt"))
    assert not params.needs_preparation()
    assert params.identity_files() == [str((run / "ckpts" / "last.ckpt").resolve()), str((run / "configs" / "model.yaml").resolve())]
    with pytest.raises(MissingAssetError, match="taming config .*nope.yaml.* does not exist"):
        VQGANParams(format="taming", checkpoint=str(run / "ckpts" / "last.ckpt"), config=str(tmp_path / "nope.yaml")).identity_files()


def test_missing_checkpoint_names_the_path_and_where_to_download(tmp_path):
    missing = tmp_path / "vq" / "ckpts" / "last.ckpt"
    with pytest.raises(MissingAssetError) as error:
        VQGANParams(preset="f16-1024", checkpoint=str(missing)).identity_files()
    message = str(error.value)
    assert str(missing) in message and "heibox.uni-heidelberg.de/d/8088892a516d4e3baf92" in message
    assert "p=%2Fckpts%2Flast.ckpt&dl=1" in message and "configs/model.yaml" in message


def test_cache_inputs_ignore_compile():
    assert TinyTrainParams(compile=True).cache_inputs() == TinyTrainParams().cache_inputs()
    assert TinyTrainParams(codebook_size=512).cache_inputs() != TinyTrainParams().cache_inputs()
    for changed in ({"restart_dead_codes": False}, {"restart_window": 7}, {"codebook_lr_scale": 3.0}):
        assert TinyTrainParams(**changed).cache_inputs() != TinyTrainParams().cache_inputs(), changed


def test_registers_the_vqgan_tokenizer():
    from tokbench.registry.plugins import resolve
    from tokbench_vqgan import plugin

    calls = {}
    plugin.tokbench_register_tokenizers(register=lambda name, **fields: calls.setdefault(name, fields))
    fields = calls["vqgan"]
    assert fields["capabilities"] == {"encode", "decode", "discrete"} and fields["description"]
    assert resolve(fields["params"]) is VQGANParams
    assert callable(resolve(fields["factory"]))


def test_suite_validation_reports_vqgan_param_paths(tmp_path):
    from tokbench.config.suite import load_suite
    from tokbench.errors import SuiteError

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ndatasets: {d: {kind: shapes}}\n"
        "tokenizers: {v: {plugin: vqgan, params: {preset: tiny, train: {codebook_sise: 3}}}}\n"
        "tasks: [{kind: reconstruction, dataset: d}]\n"
    )
    with pytest.raises(SuiteError) as info:
        load_suite(suite)
    assert "tokenizers.v.params.train.codebook_sise: unknown field 'codebook_sise'" in str(info.value)


def test_plugin_and_params_do_not_import_torch_or_diffusers():
    code = (
        "import sys\n"
        "import tokbench_vqgan, tokbench_vqgan.plugin, tokbench_vqgan.params, tokbench_vqgan.presets\n"
        "p = tokbench_vqgan.params.VQGANParams(preset='tiny'); p.identity_files(); p.needs_preparation()\n"
        "tokbench_vqgan.params.VQGANParams(preset='llamagen-vq16').identity_files()\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'lpips', 'yaml_torch') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
