"""Images in an ImageNet-style folder tree: ``root[/split]/<class>/<image files>``."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tokbench.data.base import ImageDataset, check_crop
from tokbench.data.imagenet import imagenet_classnames
from tokbench.data.params import CropName, ImageFolderParams
from tokbench.data.transforms import CROP_FUNCTIONS, TRANSFORMS_VERSION
from tokbench.errors import MissingAssetError, TokbenchError
from tokbench.hashing import content_key, file_identity

#: ``classnames_file`` value for open_clip's ImageNet-1k class names
IMAGENET_CLASSNAMES = "imagenet"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

LAYOUT_HELP = (
    "Expected an ImageNet-style layout with one folder per class: <root>/<split>/<wnid>/*.JPEG, "
    "e.g. <root>/val/n01440764/ILSVRC2012_val_00000293.JPEG. ImageNet-1k is available from "
    "https://image-net.org (ILSVRC2012_img_val.tar); its val images ship in one flat folder, so sort "
    "them into <wnid>/ class folders first (for example with the devkit's ground-truth labels)."
)


class ImageFolderDataset(ImageDataset):
    """Classes are the sorted subfolder names, files are sorted within each class,
    and the index runs class by class. ``limit`` keeps the first files of every
    class, as evenly spread over the classes as possible."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        split: str | None = None,
        resolution: int = 256,
        crop: CropName = "adm",
        limit: int | None = None,
        classnames_file: str | None = None,
    ):
        self.params = ImageFolderParams(
            root=str(root), split=split, resolution=resolution, crop=crop, limit=limit, classnames_file=classnames_file
        )
        self.directory = _dataset_directory(self.params)
        folders, files_per_class, self.skipped = _scan_classes(self.directory)
        if self.skipped:
            shown = ", ".join(self.skipped[:5]) + (f", ... (+{len(self.skipped) - 5})" if len(self.skipped) > 5 else "")
            warnings.warn(
                f"ImageFolder {self.directory}: skipped {len(self.skipped)} file(s) that are not readable images of a "
                f"supported type ({', '.join(sorted(IMAGE_EXTENSIONS))}) or are broken links: {shown}; "
                f"N = {sum(len(f) for f in files_per_class)} images", stacklevel=2)
        if self.params.limit is not None:
            files_per_class = _balanced_prefixes(files_per_class, self.params.limit)
        self.files: list[str] = [f"{folders[c]}/{name}" for c, names in enumerate(files_per_class) for name in names]
        self._labels: list[int] = [c for c, names in enumerate(files_per_class) for _ in names]
        self.folders = folders
        self.classnames = _read_classnames(Path(classnames_file), folders) if classnames_file else list(folders)
        self.resolution = self.params.resolution

    @classmethod
    def from_params(cls, params: ImageFolderParams) -> "ImageFolderDataset":
        return cls(**params.model_dump())

    def __len__(self) -> int:
        return len(self.files)

    def view(self, crop: str, resolution: int) -> "ImageFolderDataset":
        """The original files under another crop/resolution (exact, not a re-crop of ours)."""
        check_crop(crop)
        if crop == self.params.crop and resolution == self.resolution:
            return self
        return ImageFolderDataset.from_params(self.params.model_copy(update={"crop": crop, "resolution": int(resolution)}))

    def path(self, index: int) -> Path:
        return self.directory / self.files[self._check_index(index)]

    def image(self, index: int) -> np.ndarray:
        path = self.path(index)
        try:
            with Image.open(path) as opened:
                cropped = CROP_FUNCTIONS[self.params.crop](_to_8bit(opened), self.resolution)
        except (OSError, Image.DecompressionBombError) as error:
            raise TokbenchError(f"cannot read image {path}: {error}") from error
        return np.array(cropped, dtype=np.uint8)

    def label(self, index: int) -> int:
        return self._labels[self._check_index(index)]

    def labels(self) -> np.ndarray:
        return np.asarray(self._labels, dtype=np.int64)

    def fingerprint(self, deep: bool = False) -> str:
        """Hash of relative paths, labels and file sizes (``deep``: also full file
        contents), the class names and the crop. Independent of where root lives."""
        digest = hashlib.sha256()
        for relative, label in zip(self.files, self._labels):
            path = self.directory / relative
            try:
                size = os.stat(path).st_size
            except FileNotFoundError as error:
                raise MissingAssetError(f"dataset file {path} disappeared after the folder was scanned") from error
            digest.update(f"{relative}\0{label}\0{size}\n".encode())
            if deep:
                digest.update(file_identity(path).encode())
        return content_key(
            {
                "kind": "imagefolder",
                "files": digest.hexdigest(),
                "deep": deep,
                "num_images": len(self.files),
                "classnames": self.classnames,
                "crop": self.params.crop,
                "resolution": self.resolution,
                "transforms_version": TRANSFORMS_VERSION,
            }
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "imagefolder",
            **self.params.model_dump(mode="json"),
            "directory": str(self.directory),
            "transforms_version": TRANSFORMS_VERSION,
            "num_images": len(self),
            "num_classes": self.num_classes,
            **({"skipped_files": len(self.skipped), "skipped_examples": self.skipped[:5]} if self.skipped else {}),
        }


def _dataset_directory(params: ImageFolderParams) -> Path:
    root = Path(params.root).expanduser().resolve()
    if not root.is_dir():
        raise MissingAssetError(f"dataset root {root} does not exist or is not a directory. {LAYOUT_HELP}")
    if params.split is None:
        return root
    directory = root / params.split
    if not directory.is_dir():
        present = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
        raise MissingAssetError(
            f"split folder {directory} does not exist (folders in {root}: {', '.join(present) or 'none'}). {LAYOUT_HELP}"
        )
    return directory


def _is_image(entry: os.DirEntry[str]) -> bool:
    return os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file()


def _to_8bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit integer images (16-bit grayscale PNG opens as ``I;16`` or ``I``) scaled to
    8 bits (value / 257, rounded) instead of being clipped at 255 (white) by ``convert``."""
    if image.mode not in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "I" and values.max(initial=0) <= 255 and values.min(initial=0) >= 0:
        scaled = values
    else:
        scaled = np.clip(values, 0, 65535) / 257.0
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")


def _scan_classes(directory: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """(class folders, image files per class, skipped files: other types and broken links)."""
    with os.scandir(directory) as entries:
        listing = list(entries)
    folders = sorted(entry.name for entry in listing if entry.is_dir() and not entry.name.startswith("."))
    if not folders:
        loose = sum(1 for entry in listing if _is_image(entry))
        found = f"{loose} images lie directly in it; move them into class folders" if loose else "it is empty"
        raise MissingAssetError(f"no class folders in {directory}: {found}. {LAYOUT_HELP}")
    files_per_class, skipped = [], []
    for folder in folders:
        with os.scandir(directory / folder) as entries:
            listed = sorted(entries, key=lambda entry: entry.name)
        files_per_class.append([entry.name for entry in listed if _is_image(entry)])
        skipped.extend(f"{folder}/{entry.name}" for entry in listed
                       if not entry.name.startswith(".") and not entry.is_dir() and not _is_image(entry))
    if not any(files_per_class):
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise MissingAssetError(
            f"no image files ({extensions}) in the {len(folders)} class folders of {directory}"
            + (f" ({len(skipped)} other file(s), e.g. {skipped[0]})" if skipped else "") + f". {LAYOUT_HELP}"
        )
    return folders, files_per_class, skipped


def _balanced_prefixes(files_per_class: list[list[str]], limit: int) -> list[list[str]]:
    """Deal ``limit`` picks round-robin over the classes, skipping exhausted ones."""
    counts = [0] * len(files_per_class)
    remaining = min(limit, sum(len(names) for names in files_per_class))
    while remaining:
        for label, names in enumerate(files_per_class):
            if remaining and counts[label] < len(names):
                counts[label] += 1
                remaining -= 1
    return [names[:count] for names, count in zip(files_per_class, counts)]


def _read_classnames(path: Path, folders: list[str]) -> list[str]:
    """One name per line in folder order, or JSON: ``{folder: name}``, ImageNet's
    ``{"0": [wnid, name]}`` index, or a list of names in folder order; ``imagenet``:
    open_clip's 1000 cleaned ImageNet-1k names (sorted-wnid order)."""
    if str(path) == IMAGENET_CLASSNAMES:
        names = list(imagenet_classnames())
        if len(folders) != len(names):
            raise TokbenchError(
                f"classnames_file: imagenet names the 1000 ImageNet-1k classes, but the dataset has {len(folders)} "
                "class folders; use a classnames file for subsets"
            )
        return names
    if not path.is_file():
        raise MissingAssetError(
            f"classnames file {path} does not exist; give a text file with one class name per line "
            "(in sorted folder order) or a JSON mapping folder name -> class name"
        )
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise TokbenchError(f"classnames file {path} is not valid JSON: {error}") from error
        if isinstance(data, dict):
            return _names_from_mapping(path, data, folders)
        names = data
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise TokbenchError(f"classnames file {path} must hold a list of names or a mapping")
    if len(names) != len(folders):
        raise TokbenchError(f"classnames file {path} has {len(names)} names but the dataset has {len(folders)} classes")
    return names


def _names_from_mapping(path: Path, data: dict[str, Any], folders: list[str]) -> list[str]:
    mapping: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, str):
            mapping[key] = value
        elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
            mapping[value[0]] = value[1]
        else:
            raise TokbenchError(f"classnames file {path}: entry {key!r} must be a name or a [folder, name] pair")
    missing = [folder for folder in folders if folder not in mapping]
    if missing:
        raise TokbenchError(
            f"classnames file {path} has no name for {len(missing)} class folders, e.g. {', '.join(missing[:5])}"
        )
    return [mapping[folder] for folder in folders]
