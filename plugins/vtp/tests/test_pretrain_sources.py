"""Image–caption sources: tar shards, manifests and the shapes wrapper."""

from __future__ import annotations

import io
import json
import multiprocessing
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tokbench.data.shapes import ShapesDataset
from tokbench.errors import MissingAssetError, TokbenchError
from tokbench_vtp.pretrain.sources import (
    ManifestSource,
    ShapesCaptionSource,
    TarShardSource,
    expand_braces,
)




def _pixels(seed: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _shard(path: Path, first: int, count: int) -> Path:
    members = []
    for n in range(first, first + count):
        members.append((f"{n:06d}.png", _encode(_pixels(n), "PNG")))
        members.append((f"{n:06d}.txt", f" caption {n}\n".encode()))
        members.append((f"{n:06d}.cls", b"3"))  # unrelated members are ignored
    return _write_tar(path, members)


def test_tar_random_access_reads_exact_pixels_and_captions(tmp_path):
    _shard(tmp_path / "shard-000000.tar", 0, 3)
    _shard(tmp_path / "shard-000001.tar", 3, 2)
    source = TarShardSource([str(tmp_path / "shard-{000000..000001}.tar")])
    assert len(source) == 5
    for index in (4, 0, 2, 3):  # out of order: random access
        image, caption = source.get(index)
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), _pixels(index))
        assert caption == f"caption {index}"
    with pytest.raises(IndexError):
        source.get(5)


def test_tar_json_captions_jpeg_webp_and_prefixed_keys(tmp_path):
    grey = np.full((8, 8, 3), 100, dtype=np.uint8)
    path = _write_tar(
        tmp_path / "mixed.tar",
        [
            ("dir/a.jpg", _encode(grey, "JPEG")),
            ("dir/a.json", json.dumps({"caption": "from caption", "url": "x"}).encode()),
            ("dir/b.webp", _encode(grey, "WEBP")),
            ("dir/b.json", json.dumps({"text": "from text"}).encode()),
        ],
    )
    source = TarShardSource([str(path)])
    assert source.keys == ["dir/a", "dir/b"]
    assert [source.get(i)[1] for i in range(2)] == ["from caption", "from text"]
    assert np.abs(np.asarray(source.get(0)[0], dtype=int) - 100).max() <= 3


def test_tar_glob_and_brace_lists(tmp_path):
    for k in range(3):
        _shard(tmp_path / f"s{k}.tar", 10 * k, 1)
    assert len(TarShardSource(str(tmp_path / "s*.tar"))) == 3
    assert len(TarShardSource([str(tmp_path / "s{0,2}.tar")])) == 2
    assert expand_braces("a-{08..10}.tar") == ["a-08.tar", "a-09.tar", "a-10.tar"]


def test_tar_missing_shard_and_incomplete_sample_name_the_path(tmp_path):
    _shard(tmp_path / "shard-000006.tar", 0, 1)
    with pytest.raises(MissingAssetError, match="shard-000007.tar does not exist"):
        TarShardSource([str(tmp_path / "shard-{000006..000007}.tar")])
    with pytest.raises(MissingAssetError, match="matches no file"):
        TarShardSource([str(tmp_path / "nothing-*.tar")])
    no_caption = _write_tar(tmp_path / "nocap.tar", [("k.png", _encode(_pixels(0), "PNG"))])
    with pytest.raises(TokbenchError, match=r"'k' in .*nocap.tar has no caption"):
        TarShardSource([str(no_caption)])
    no_image = _write_tar(tmp_path / "noimg.tar", [("k.txt", b"hello")])
    with pytest.raises(TokbenchError, match=r"noimg.tar has no image"):
        TarShardSource([str(no_image)])
    bad_json = _write_tar(tmp_path / "badjson.tar", [("k.png", _encode(_pixels(0), "PNG")), ("k.json", b"{}")])
    with pytest.raises(TokbenchError, match=r"badjson.tar has no string field"):
        TarShardSource([str(bad_json)]).get(0)


def test_tar_fingerprint_is_stable_and_tracks_content(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _shard(tmp_path / "a" / "x.tar", 0, 2)
    moved = _shard(tmp_path / "b" / "x.tar", 0, 2)
    assert TarShardSource(str(first)).fingerprint() == TarShardSource(str(first)).fingerprint()
    assert TarShardSource(str(first)).fingerprint() == TarShardSource(str(moved)).fingerprint()  # location-free
    _shard(first, 0, 3)
    assert TarShardSource(str(first)).fingerprint() != TarShardSource(str(moved)).fingerprint()


def _read_in_child(source: TarShardSource, queue) -> None:
    queue.put(np.asarray(source.get(1)[0]).tolist())


def test_tar_handles_survive_pickle_and_fork(tmp_path):
    source = TarShardSource(str(_shard(tmp_path / "s.tar", 0, 2)))
    source.get(0)  # opens a handle in the parent
    clone = pickle.loads(pickle.dumps(source))
    assert clone._handles == {}
    np.testing.assert_array_equal(np.asarray(clone.get(1)[0]), _pixels(1))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(source, queue))
    child.start()
    pixels = np.asarray(queue.get(timeout=20), dtype=np.uint8)
    child.join(timeout=20)
    np.testing.assert_array_equal(pixels, _pixels(1))
    np.testing.assert_array_equal(np.asarray(source.get(0)[0]), _pixels(0))  # parent's handle still correct


def _images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        Image.fromarray(_pixels(n)).save(folder / f"{n}.png")


def test_manifest_csv_relative_paths(tmp_path):
    _images(tmp_path / "imgs", 2)
    manifest = tmp_path / "list.csv"
    manifest.write_text('filepath,text\nimgs/1.png,"one, with comma"\nimgs/0.png,zero\n')
    source = ManifestSource(manifest)
    assert len(source) == 2
    image, caption = source.get(0)
    np.testing.assert_array_equal(np.asarray(image), _pixels(1))
    assert caption == "one, with comma"
    assert source.get(1)[1] == "zero"


def test_manifest_jsonl_and_absolute_paths(tmp_path):
    _images(tmp_path / "imgs", 1)
    manifest = tmp_path / "m" / "list.jsonl"
    manifest.parent.mkdir()
    lines = [
        json.dumps({"image": str(tmp_path / "imgs" / "0.png"), "caption": "abs"}),
        "",
        json.dumps({"path": "../imgs/0.png", "text": "rel"}),
    ]
    manifest.write_text("\n".join(lines) + "\n")
    source = ManifestSource(manifest)
    assert [source.get(i)[1] for i in range(2)] == ["abs", "rel"]
    np.testing.assert_array_equal(np.asarray(source.get(1)[0]), _pixels(0))


def test_manifest_errors_are_actionable(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,caption\na.png,x\n")
    with pytest.raises(TokbenchError, match=r"no image column \(allowed names: image, path, filepath; found: file, caption\)"):
        ManifestSource(bad)
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(json.dumps({"image": "a.png", "label": 3}) + "\n")
    with pytest.raises(TokbenchError, match=r"line 1 has no caption column \(allowed names: caption, text"):
        ManifestSource(bad_json)
    missing = tmp_path / "missing.csv"
    missing.write_text("image,caption\nimgs/0.png,ok\nimgs/nope.png,gone\n")
    _images(tmp_path / "imgs", 1)
    source = ManifestSource(missing)
    source.get(0)
    with pytest.raises(MissingAssetError, match=r"nope.png listed on line 3"):
        source.get(1)
    with pytest.raises(MissingAssetError):
        ManifestSource(tmp_path / "absent.csv")


def test_manifest_fingerprint_follows_the_file(tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("image,caption\na.png,x\n")
    before = ManifestSource(manifest).fingerprint()
    assert before == ManifestSource(manifest).fingerprint()
    manifest.write_text("image,caption\na.png,y\n")
    assert ManifestSource(manifest).fingerprint() != before


def test_shapes_source_uses_dataset_captions_and_labels():
    source = ShapesCaptionSource(split="train", num_images=14, resolution=16, seed=3)
    dataset = ShapesDataset(split="train", num_images=14, resolution=16, seed=3)
    image, caption = source.get(5)
    assert caption == dataset.caption(5) and caption
    np.testing.assert_array_equal(np.asarray(image), dataset.image(5))
    np.testing.assert_array_equal(source.labels, dataset.labels())
    assert len(source) == 14
    assert source.fingerprint() != ShapesCaptionSource(split="train", num_images=14, resolution=16, seed=4).fingerprint()
