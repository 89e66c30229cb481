import json

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from tokbench.data.imagefolder import ImageFolderDataset
from tokbench.data.params import ImageFolderParams
from tokbench.data.transforms import adm_center_crop
from tokbench.errors import MissingAssetError, TokbenchError

# class folder -> number of images; deliberately unsorted and unbalanced
LAYOUT = {"n02": 3, "n01": 4, "n03": 2}

# Every class folder holds a notes.txt, so every dataset here warns that it skipped three files:
# the first test checks that warning, the others need not repeat it in the session's summary.
pytestmark = pytest.mark.filterwarnings("ignore:ImageFolder .* skipped 3 file:UserWarning")


def _write(path, seed, size=(40, 30), fmt="PNG"):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)


@pytest.fixture
def imagenet(tmp_path):
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for c, (folder, count) in enumerate(LAYOUT.items()):
            directory = root / split / folder
            directory.mkdir(parents=True)
            for i in range(count):
                suffix, fmt = [(".png", "PNG"), (".JPEG", "JPEG"), (".jpg", "JPEG")][i % 3]
                _write(directory / f"img{count - i}{suffix}", seed=100 * c + i, fmt=fmt)
            (directory / "notes.txt").write_text("not an image")
            (directory / ".hidden").mkdir()
    return root


def test_classes_and_files_are_sorted(imagenet):
    with pytest.warns(UserWarning, match=r"skipped 3 file\(s\) .*: n01/notes.txt, n02/notes.txt, n03/notes.txt; N = 9 images"):
        ds = ImageFolderDataset(imagenet, split="val", resolution=16)
    assert ds.classnames == ["n01", "n02", "n03"]
    assert len(ds) == 9
    assert ds.labels().tolist() == [0] * 4 + [1] * 3 + [2] * 2
    assert ds.files[:4] == ["n01/img1.png", "n01/img2.jpg", "n01/img3.JPEG", "n01/img4.png"]
    assert ds.caption(0) is None


def test_images_are_adm_cropped_uint8(imagenet):
    ds = ImageFolderDataset(imagenet, split="val", resolution=16)
    image = ds.image(5)
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    with Image.open(ds.path(5)) as original:
        assert np.array_equal(image, np.asarray(adm_center_crop(original, 16)))


@pytest.mark.parametrize("crop", ["adm", "resize-center", "squash"])
def test_each_crop_gives_the_resolution(imagenet, crop):
    assert ImageFolderDataset(imagenet, split="train", resolution=24, crop=crop).image(0).shape == (24, 24, 3)


def test_root_without_split(imagenet):
    ds = ImageFolderDataset(imagenet / "val", resolution=8)
    assert len(ds) == 9


def test_limit_is_balanced_and_deterministic(imagenet):
    ds = ImageFolderDataset(imagenet, split="val", limit=7, resolution=8)
    assert np.bincount(ds.labels()).tolist() == [3, 2, 2]
    assert ds.files == ImageFolderDataset(imagenet, split="val", limit=7, resolution=8).files
    small = ImageFolderDataset(imagenet, split="val", limit=3, resolution=8)
    assert small.files == ["n01/img1.png", "n02/img1.jpg", "n03/img1.JPEG"]
    # exhausted classes are skipped, a limit above the total keeps everything
    assert np.bincount(ImageFolderDataset(imagenet, split="val", limit=8, resolution=8).labels()).tolist() == [3, 3, 2]
    assert len(ImageFolderDataset(imagenet, split="val", limit=100, resolution=8)) == 9


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(MissingAssetError, match="nowhere") as info:
        ImageFolderDataset(missing)
    assert "<wnid>" in str(info.value)


def test_missing_split_names_the_split_and_what_exists(imagenet):
    with pytest.raises(MissingAssetError, match="test") as info:
        ImageFolderDataset(imagenet, split="test")
    assert "train, val" in str(info.value)


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MissingAssetError, match="empty"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "n01").mkdir()
    with pytest.raises(MissingAssetError, match="no image files"):
        ImageFolderDataset(tmp_path)


def test_flat_folder_of_images_explains_the_layout(tmp_path):
    _write(tmp_path / "ILSVRC2012_val_00000001.JPEG", seed=0, fmt="JPEG")
    with pytest.raises(MissingAssetError, match="class folders"):
        ImageFolderDataset(tmp_path)


def test_fingerprint_tracks_files_and_transform_not_location(imagenet, tmp_path):
    ds = ImageFolderDataset(imagenet, split="val", resolution=16)
    first = ds.fingerprint()
    assert first == ImageFolderDataset(imagenet, split="val", resolution=16).fingerprint()
    assert first == ImageFolderDataset(imagenet / "val", resolution=16).fingerprint()
    assert first != ImageFolderDataset(imagenet, split="train", limit=8, resolution=16).fingerprint()
    assert first != ImageFolderDataset(imagenet, split="val", resolution=32).fingerprint()
    assert first != ImageFolderDataset(imagenet, split="val", resolution=16, crop="squash").fingerprint()
    deep = ds.fingerprint(deep=True)
    assert deep != first

    _write(ds.path(0), seed=999, size=(50, 30), fmt="JPEG")  # same name, new size
    assert ds.fingerprint() != first
    assert ds.fingerprint(deep=True) != deep


def test_deep_fingerprint_sees_same_size_edits(imagenet):
    ds = ImageFolderDataset(imagenet, split="val", resolution=16)
    path = ds.path(3)  # a PNG
    shallow, deep = ds.fingerprint(), ds.fingerprint(deep=True)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    assert ds.fingerprint() == shallow
    assert ds.fingerprint(deep=True) != deep


def test_classnames_from_text_file(imagenet, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("tench\ngoldfish\n\nwhite shark\n")
    ds = ImageFolderDataset(imagenet, split="val", classnames_file=str(names), resolution=8)
    assert ds.classnames == ["tench", "goldfish", "white shark"]
    names.write_text("tench\n")
    with pytest.raises(TokbenchError, match="1 names"):
        ImageFolderDataset(imagenet, split="val", classnames_file=str(names), resolution=8)


def test_classnames_from_json(imagenet, tmp_path):
    mapping = tmp_path / "names.json"
    mapping.write_text(json.dumps({"n03": "c", "n01": "a", "n02": "b"}))
    assert ImageFolderDataset(imagenet, split="val", classnames_file=str(mapping)).classnames == ["a", "b", "c"]
    index = tmp_path / "imagenet_class_index.json"
    index.write_text(json.dumps({"0": ["n01", "tench"], "1": ["n02", "goldfish"], "2": ["n03", "shark"]}))
    assert ImageFolderDataset(imagenet, split="val", classnames_file=str(index)).classnames == [
        "tench",
        "goldfish",
        "shark",
    ]
    mapping.write_text(json.dumps({"n01": "a"}))
    with pytest.raises(TokbenchError, match="n02"):
        ImageFolderDataset(imagenet, split="val", classnames_file=str(mapping))


def test_missing_classnames_file(imagenet, tmp_path):
    with pytest.raises(MissingAssetError, match="missing.txt"):
        ImageFolderDataset(imagenet, split="val", classnames_file=str(tmp_path / "missing.txt"))


def test_unreadable_image_names_the_file(imagenet):
    ds = ImageFolderDataset(imagenet, split="val", resolution=8)
    ds.path(2).write_bytes(b"not really a png")
    with pytest.raises(TokbenchError, match="img3.JPEG"):
        ds.image(2)


def test_from_params_and_describe(imagenet):
    params = ImageFolderParams(root=str(imagenet), split="val", resolution=16, limit=3)
    ds = ImageFolderDataset.from_params(params)
    assert len(ds) == 3
    summary = ds.describe()
    json.dumps(summary)
    assert summary["kind"] == "imagefolder" and summary["num_images"] == 3 and summary["crop"] == "adm"


@pytest.mark.parametrize(
    "bad", [{"crop": "random"}, {"limit": 0}, {"resolution": 2}, {"root": ""}, {"unknown": 1}]
)
def test_bad_params_fail_validation(bad):
    with pytest.raises(ValidationError):
        ImageFolderParams(**{"root": "/data", **bad})


def test_imagenet_classnames_from_open_clip(tmp_path, imagenet):
    from tokbench.data.imagenet import imagenet_classnames

    root = tmp_path / "in1k"
    for i in range(1000):
        (root / f"n{i:08d}").mkdir(parents=True)
    _write(root / "n00000000" / "a.png", seed=0)
    ds = ImageFolderDataset(root, resolution=16, classnames_file="imagenet")
    assert ds.classnames == list(imagenet_classnames()) and ds.classnames[0] == "tench"
    with pytest.raises(TokbenchError, match="1000 ImageNet-1k classes, but the dataset has 3"):
        ImageFolderDataset(imagenet, split="val", resolution=16, classnames_file="imagenet")


def test_views_recrop_the_original_files(imagenet):
    ds = ImageFolderDataset(imagenet, split="val", resolution=16)
    view = ds.view("center-0.875", 24)
    from tokbench.data.transforms import center_crop_0875

    with Image.open(view.path(4)) as original:
        expected = np.asarray(center_crop_0875(original, 24))
    assert np.array_equal(view.image(4), expected)
    assert view.fingerprint() != ds.fingerprint() and view.labels().tolist() == ds.labels().tolist()
    assert ds.view("adm", 16) is ds
    with pytest.raises(ValueError, match="unknown crop"):
        ds.view("nope", 16)
