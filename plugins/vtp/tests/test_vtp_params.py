"""VTPParams: one weight source, recipe validation naming the field, identity files, no torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from tokbench.errors import MissingAssetError
from tokbench_vtp.model.config import HUB_IDS
from tokbench_vtp.params import VTPParams


def fake_checkpoint(directory: Path, with_config: bool = True) -> Path:
    """A file named like the official weights (params never read its content)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.safetensors").write_bytes(b"not really weights")
    if with_config:
        (directory / "config.json").write_text("{}")
    return directory / "model.safetensors"


def test_a_source_is_required():
    with pytest.raises(ValidationError, match="set one weight source") as error:
        VTPParams()
    assert "pretrained:" in str(error.value) and "recipe:" in str(error.value)


def test_both_sources_are_refused():
    with pytest.raises(ValidationError, match="keep exactly one"):
        VTPParams(pretrained="large", recipe="tiny")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"recipe": "tiny", "revision": "main"}, "`revision` only applies to a hub `pretrained`"),
        ({"pretrained": "large", "recipe_overrides": {"steps": 5}}, "`recipe_overrides` only apply to `recipe`"),
        ({"pretrained": "large", "colour": "red"}, "colour"),
        ({"pretrained": "large", "precision": "fp16"}, "precision"),
        ({"pretrained": "large", "components": ["decoder", "vision"]}, "components"),
        ({"pretrained": ""}, "pretrained"),
    ],
)
def test_invalid_settings_are_named(settings, message):
    with pytest.raises(ValidationError, match=message):
        VTPParams(**settings)


def test_components_are_canonical_and_round_trip():
    params = VTPParams(pretrained="base", components=["text", "decoder", "text"])
    assert params.components == ["decoder", "text"]
    assert VTPParams.model_validate(params.model_dump(mode="json")) == params
    assert VTPParams(pretrained="base", components=[]).components == []


def test_unknown_recipe_names_the_field_and_the_presets():
    with pytest.raises(ValidationError) as error:
        VTPParams(recipe="tinyy")
    message = str(error.value)
    assert "recipe: VTP recipe 'tinyy'" in message and "tiny" in message and "small" in message


def test_bad_overrides_name_their_path():
    with pytest.raises(ValidationError) as error:
        VTPParams(recipe="tiny", recipe_overrides={"steps": 0, "optim": {"lr": -1.0}, "stepz": 3})
    message = str(error.value)
    assert "recipe_overrides.steps: Input should be greater than 0" in message
    assert "recipe_overrides.optim.lr" in message
    assert "recipe_overrides.stepz: Extra inputs are not permitted (did you mean 'steps'?)" in message


def test_cross_field_recipe_errors_are_reported():
    # a CLIP loss on an architecture without a text tower: a recipe-level (not per-key) error
    with pytest.raises(ValidationError, match="recipe tiny: .*loss.clip > 0 needs an architecture with a text tower"):
        VTPParams(recipe="tiny", recipe_overrides={"architecture": {"with_text": False}})
    with pytest.raises(ValidationError, match="recipe_overrides.crops.image_size: .*multiple of the patch size"):
        VTPParams(recipe="tiny", recipe_overrides={"crops": {"image_size": 72}})


def test_bad_value_in_a_recipe_file_names_the_file_and_key(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("architecture: tiny\nsteps: -3\n")
    with pytest.raises(ValidationError) as error:
        VTPParams(recipe=str(recipe))
    assert f"recipe {recipe}: steps" in str(error.value)


def test_recipe_config_applies_overrides_and_needs_preparation():
    params = VTPParams(recipe="tiny", recipe_overrides={"steps": 7, "optim": {"lr": 0.01}})
    recipe = params.recipe_config()
    assert recipe.steps == 7 and recipe.optim.lr == 0.01 and recipe.crops.image_size == 64
    assert recipe.optim.warmup_steps == 50  # the rest of the preset is kept
    assert params.needs_preparation() and params.identity_files() == []
    assert VTPParams(pretrained="large").recipe_config() is None
    assert not VTPParams(pretrained="large").needs_preparation()


def test_recipe_file_is_an_identity_file(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("architecture: tiny\nsteps: 3\ncrops: {image_size: 64, global_size: 64, local_size: 32}\n")
    params = VTPParams(recipe=str(recipe))
    assert params.recipe_config().steps == 3
    assert params.identity_files() == [str(recipe.resolve())]


@pytest.mark.parametrize("alias", sorted(HUB_IDS))
def test_aliases_expand_to_hub_ids(alias):
    params = VTPParams(pretrained=alias)
    assert params.hub_id() == HUB_IDS[alias]
    assert params.local_checkpoint() is None and params.identity_files() == []


def test_hub_ids_are_recognised():
    params = VTPParams(pretrained="MiniMaxAI/VTP-Large-f16d64", revision="main")
    assert params.hub_id() == "MiniMaxAI/VTP-Large-f16d64"
    assert params.identity_files() == []
    assert VTPParams(recipe="tiny").hub_id() is None


def test_local_directory_and_file(tmp_path):
    weights = fake_checkpoint(tmp_path / "VTP-Small")
    by_dir = VTPParams(pretrained=str(tmp_path / "VTP-Small"))
    by_file = VTPParams(pretrained=str(weights))
    assert by_dir.hub_id() is None and by_dir.local_checkpoint() == weights
    expected = [str(weights.resolve()), str((tmp_path / "VTP-Small" / "config.json").resolve())]
    assert by_dir.identity_files() == expected and by_file.identity_files() == expected
    bare = fake_checkpoint(tmp_path / "bare", with_config=False)
    assert VTPParams(pretrained=str(bare.parent)).identity_files() == [str(bare.resolve())]


def test_missing_local_path_says_how_to_get_weights(tmp_path):
    missing = tmp_path / "no" / "such" / "model.safetensors"
    params = VTPParams(pretrained=str(missing))  # validation does not touch the filesystem
    with pytest.raises(MissingAssetError) as error:
        params.identity_files()
    message = str(error.value)
    assert str(missing) in message and "does not exist" in message
    assert f"huggingface-cli download {HUB_IDS['large']} --local-dir" in message
    with pytest.raises(MissingAssetError, match="does not exist"):
        VTPParams(pretrained="./not-here/vtp").identity_files()


def test_directory_without_weights_lists_what_is_there(tmp_path):
    (tmp_path / "notes.txt").write_text("no weights")
    with pytest.raises(MissingAssetError, match=r"has no model\.safetensors \(found \['notes\.txt'\]\)"):
        VTPParams(pretrained=str(tmp_path)).identity_files()


def test_latent_stats_identity_and_missing_file(tmp_path):
    stats = tmp_path / "latents_stats.pt"
    stats.write_bytes(b"stats")
    params = VTPParams(pretrained="large", latent_stats=str(stats))
    assert params.identity_files() == [str(stats.resolve())]
    with pytest.raises(MissingAssetError, match="latents_stats.pt") as error:
        VTPParams(pretrained="large", latent_stats=str(tmp_path / "absent.pt")).identity_files()
    assert "absent.pt" in str(error.value)


def test_importing_params_and_plugin_does_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        import tokbench_vtp.plugin
        import tokbench_vtp.params
        from tokbench_vtp.params import VTPParams
        VTPParams(recipe="tiny", recipe_overrides={"steps": 3}).recipe_config()
        VTPParams(pretrained="large").identity_files()
        loaded = sorted(name for name in ("torch", "open_clip", "safetensors") if name in sys.modules)
        print("LOADED", loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
