"""Nothing executable from the store or a checkpoint: a code-executing pickle planted in each
place tokbench loads from never runs; unreadable checkpoints name the path and the format;
ImageFolder counts what it skips and reads 16-bit images; a plugin exiting at import is isolated."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tokbench.nn.checkpoints import CheckpointFormatError, read_checkpoint, read_training_state

from conftest import run_cli
from test_plugins import make_dist

MARKER = Path("/tmp/tokbench-pwned-marker")


class _Payload:
    """Unpickling this runs ``exec``: it writes MARKER."""

    def __reduce__(self):
        return (exec, (f"open({str(MARKER)!r}, 'w').write('ran')",))


def _plant(path: Path) -> Path:
    MARKER.unlink(missing_ok=True)
    torch.save({"model": {"w": torch.zeros(1)}, "step": 3, "evil": _Payload()}, path)
    return path


def _assert_not_run() -> None:
    assert not MARKER.exists(), "the planted pickle ran its payload"


def test_dit_resume_checkpoint_does_not_run_code(tmp_path, capsys):
    from test_generation_train import trainer

    _plant(tmp_path / "checkpoint.pt")
    resumed = trainer(tmp_path, steps=2)
    _assert_not_run()
    assert resumed.step == 0  # set aside, trained from the start
    assert "weights_only" in capsys.readouterr().err
    assert list(tmp_path.glob("checkpoint.pt.damaged-*"))


def test_dit_resume_checkpoint_round_trips_with_weights_only(tmp_path):
    from test_generation_train import trainer

    first = trainer(tmp_path, steps=4)
    first.fit(stop_after=2)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # optimizer, history: plain data
    assert state["step"] == 2
    assert trainer(tmp_path, steps=4).step == 2


def test_vtp_rng_state_is_plain_data(tmp_path):
    import random

    from tokbench_vtp.pretrain.trainer import VTPPretrainer

    holder = VTPPretrainer.__new__(VTPPretrainer)
    holder.device = torch.device("cpu")
    random.seed(3)
    np.random.seed(4)
    torch.save(holder._rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand())
    holder._set_rng_state(read_training_state(tmp_path / "rng.pt"))
    assert (random.random(), np.random.rand()) == expected


@pytest.mark.parametrize("loader", ["training_state", "read_checkpoint", "lightningdit", "latent_stats"])
def test_planted_pickles_never_run(tmp_path, loader):
    path = _plant(tmp_path / "checkpoint.pt")
    if loader == "training_state":
        with pytest.raises(CheckpointFormatError, match=str(path)):
            read_training_state(path)
    elif loader == "read_checkpoint":  # tokenizer checkpoints: foreign globals become inert stand-ins
        data = read_checkpoint(path)
        assert data["step"] == 3 and "exec" in repr(data["evil"])
    elif loader == "lightningdit":
        from tokbench.generation.checkpoint import read_state_dict

        with pytest.raises(CheckpointFormatError, match=str(path)):
            read_state_dict(path)
    else:
        from tokbench.nn.checkpoints import read_latent_stats

        with pytest.raises(CheckpointFormatError):
            read_latent_stats(path, channels=4)
    _assert_not_run()


def test_feature_shards_refuse_object_arrays(tmp_path):
    MARKER.unlink(missing_ok=True)
    array = np.empty(1, dtype=object)
    array[0] = _Payload()
    np.save(tmp_path / "features.npy", array, allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        np.load(tmp_path / "features.npy")  # how every store reader loads .npy shards
    _assert_not_run()


@pytest.mark.parametrize("content,suffix", [(b"\x93random bytes \x00\x01", ".pt"), (b"", ".pt"),
                                            (b"\xff" * 16, ".safetensors")])
def test_unreadable_checkpoints_name_the_path_and_format(tmp_path, content, suffix):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(content)
    with pytest.raises(CheckpointFormatError) as caught:
        read_checkpoint(path, what="VQGAN checkpoint")
    message = str(caught.value)
    assert str(path) in message and ("safetensors" in message if suffix == ".safetensors" else "PyTorch checkpoint" in message)


# ---- ImageFolder -------------------------------------------------------------------------------
def test_imagefolder_counts_skipped_files_out_loud(tmp_path):
    from tokbench.data.imagefolder import ImageFolderDataset

    folder = tmp_path / "a"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "one.png")
    Image.new("RGB", (8, 8)).save(folder / "two.gif")
    Image.new("RGB", (8, 8)).save(folder / "three.tif")
    (folder / "gone.png").symlink_to(tmp_path / "missing.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = ImageFolderDataset(tmp_path, resolution=8, crop="squash")
    assert len(dataset) == 1
    message = "".join(str(w.message) for w in caught)
    assert "skipped 3 file(s)" in message and "a/two.gif" in message and "a/gone.png" in message and "N = 1" in message
    assert dataset.describe()["skipped_files"] == 3


def test_imagefolder_reads_16_bit_png_without_clipping(tmp_path):
    from tokbench.data.imagefolder import ImageFolderDataset

    folder = tmp_path / "a"
    folder.mkdir()
    values = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16).repeat(4, 0).repeat(4, 1)
    Image.fromarray(values).save(folder / "deep.png")
    pixels = ImageFolderDataset(tmp_path, resolution=8, crop="squash").image(0)
    assert pixels.shape == (8, 8, 3)
    assert sorted(np.unique(pixels[..., 0]).tolist()) == [0, 100, 200, 255]


# ---- plugins -----------------------------------------------------------------------------------
def test_a_plugin_calling_sys_exit_at_import_is_isolated(tmp_path):
    make_dist(tmp_path, "exitplug", "0.1.0", "import sys\nsys.exit('no licence server')\n")
    listing = run_cli("plugins", env={"PYTHONPATH": str(tmp_path)})
    assert listing.returncode == 0, listing.stderr
    assert "exitplug 0.1.0" in listing.stdout and "SystemExit: no licence server" in listing.stdout
    assert "builtin" in listing.stdout


def test_a_failed_resume_checkpoint_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from test_generation_train import trainer

    import tokbench.generation.train as train

    def full_disk(obj, path):
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/3: file write failed")

    dit = trainer(tmp_path, steps=1)
    monkeypatch.setattr(train.torch, "save", full_disk)
    with pytest.raises(RuntimeError, match="file write failed"):
        dit.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
