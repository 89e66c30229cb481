"""Map-style image–caption sources for VTP pretraining.

Every source has ``__len__``, ``get(index) -> (PIL RGB image, caption)`` and a
cheap ``fingerprint()``. Random access (not streaming) is what makes the
pretraining loader exactly resumable: the sample at any global position can be
recomputed from (seed, position) alone.

* :class:`TarShardSource` reads WebDataset-format tar shards through an index
  of member offsets built once from the tar headers, so a sample costs one
  ``seek`` + ``read`` instead of a scan.
* :class:`ManifestSource` reads a CSV/JSONL list of (image path, caption).
* :class:`ShapesCaptionSource` wraps the offline procedural shapes dataset
  (captions and labels come from it), for tests and smoke runs.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from tokbench.data.shapes import ShapesDataset
from tokbench.errors import MissingAssetError, TokbenchError
from tokbench.hashing import content_key, file_identity

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSIONS: tuple[str, ...] = ("txt", "json")
JSON_CAPTION_FIELDS: tuple[str, ...] = ("caption", "text")
MANIFEST_IMAGE_COLUMNS: tuple[str, ...] = ("image", "path", "filepath")
MANIFEST_CAPTION_COLUMNS: tuple[str, ...] = ("caption", "text")

_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_BRACE_LIST = re.compile(r"\{([^{}]*,[^{}]*)\}")
_GLOB_CHARS = re.compile(r"[*?\[]")


@runtime_checkable
class CaptionSource(Protocol):
    """What the pretraining loader needs from a data source."""

    def __len__(self) -> int: ...

    def get(self, index: int) -> tuple[Image.Image, str]: ...

    def fingerprint(self) -> str: ...


def _check_index(source: Any, index: int) -> int:
    if not 0 <= index < len(source):
        raise IndexError(f"index {index} out of range for {type(source).__name__} of length {len(source)}")
    return int(index)


def _decode_image(data: bytes, where: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return opened.convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:
        raise TokbenchError(f"cannot decode image {where}: {error}") from error


# --------------------------------------------------------------------------- tar shards


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{000..009}`` numeric ranges (zero padding kept from the first
    bound) and ``{a,b}`` lists, as WebDataset shard specs use them."""
    match = _BRACE_RANGE.search(pattern)
    if match:
        first, last = match.group(1), match.group(2)
        width = len(first) if first.startswith("0") or len(first) == len(last) else 0
        start, stop = int(first), int(last)
        if stop < start:
            raise TokbenchError(
                f"brace range {match.group(0)} in {pattern!r} runs backwards; write {{{last}..{first}}}"
            )
        head, tail = pattern[: match.start()], pattern[match.end():]
        return [p for n in range(start, stop + 1) for p in expand_braces(f"{head}{n:0{width}d}{tail}")]
    match = _BRACE_LIST.search(pattern)
    if match:
        head, tail = pattern[: match.start()], pattern[match.end():]
        return [p for item in match.group(1).split(",") for p in expand_braces(f"{head}{item}{tail}")]
    return [pattern]


def resolve_shards(patterns: list[str] | str) -> list[str]:
    """Brace-expand and glob every pattern; keep order, drop duplicates.

    A literal path that does not exist, or a glob that matches nothing, is an
    error naming it: silently training on fewer shards is worse than failing.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    resolved: list[str] = []
    for pattern in patterns:
        for expanded in expand_braces(os.fspath(pattern)):
            if _GLOB_CHARS.search(expanded):
                matches = sorted(glob.glob(expanded))
                if not matches:
                    raise MissingAssetError(f"shard pattern {expanded!r} matches no file")
            else:
                if not os.path.isfile(expanded):
                    raise MissingAssetError(f"tar shard {expanded} does not exist (check the path or the brace range)")
                matches = [expanded]
            resolved.extend(m for m in matches if m not in resolved)
    if not resolved:
        raise TokbenchError("no tar shards given: pass paths such as 'data/shard-{000000..000009}.tar'")
    return resolved


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is the path up to the first dot of the
    file name, the extension everything after it (``a/b.seg.jpg`` → ``a/b``, ``seg.jpg``)."""
    directory, _, filename = name.rpartition("/")
    stem, dot, extension = filename.partition(".")
    key = f"{directory}/{stem}" if directory else stem
    return key, extension.lower() if dot else ""


class TarShardSource:
    """Samples in WebDataset tar shards, read by random access.

    A sample is a run of consecutive members sharing a key (``000123.jpg`` +
    ``000123.txt``). The constructor scans each shard's headers once and keeps,
    per sample, the byte offset and size of the image member and the caption
    member; ``get`` then reads exactly those bytes. Shards must be uncompressed
    ``.tar`` (offsets inside a ``.tar.gz`` are not seekable).

    Open file handles are cached per process and re-opened after a fork, so the
    source can be handed to DataLoader workers.
    """

    def __init__(self, paths: list[str] | str):
        self.paths: list[str] = resolve_shards(paths)
        shard_ids: list[int] = []
        image_spans: list[tuple[int, int]] = []
        caption_spans: list[tuple[int, int]] = []
        caption_json: list[bool] = []
        self.keys: list[str] = []
        self._shard_sizes: list[int] = []
        for shard_id, path in enumerate(self.paths):
            self._shard_sizes.append(os.path.getsize(path))
            for key, members in self._scan(path):
                image = next((m for ext, m in members if ext.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS), None)
                caption = next(((ext, m) for ext, m in members if ext.rsplit(".", 1)[-1] in CAPTION_EXTENSIONS), None)
                found = ", ".join(ext for ext, _ in members)
                if image is None:
                    raise TokbenchError(
                        f"sample {key!r} in {path} has no image member (found extensions: {found}; "
                        f"expected one of {', '.join(IMAGE_EXTENSIONS)})"
                    )
                if caption is None:
                    raise TokbenchError(
                        f"sample {key!r} in {path} has no caption member (found extensions: {found}; "
                        f"expected .txt or .json with a {' or '.join(JSON_CAPTION_FIELDS)} field)"
                    )
                shard_ids.append(shard_id)
                image_spans.append((image.offset_data, image.size))
                caption_spans.append((caption[1].offset_data, caption[1].size))
                caption_json.append(caption[0].endswith("json"))
                self.keys.append(key)
        if not shard_ids:
            raise TokbenchError(f"the tar shards contain no samples: {', '.join(self.paths)}")
        # Compact arrays: the index pickles cheaply into loader workers.
        self._shard = np.asarray(shard_ids, dtype=np.int32)
        self._image = np.asarray(image_spans, dtype=np.int64)
        self._caption = np.asarray(caption_spans, dtype=np.int64)
        self._caption_json = np.asarray(caption_json, dtype=bool)
        self._handles: dict[int, BinaryIO] = {}
        self._pid = os.getpid()

    @staticmethod
    def _scan(path: str) -> list[tuple[str, list[tuple[str, tarfile.TarInfo]]]]:
        """Group the regular-file members of one shard into samples by key."""
        samples: list[tuple[str, list[tuple[str, tarfile.TarInfo]]]] = []
        try:
            with tarfile.open(path, mode="r:") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    key, extension = _split_key(member.name)
                    if samples and samples[-1][0] == key:
                        samples[-1][1].append((extension, member))
                    else:
                        samples.append((key, [(extension, member)]))
        except tarfile.ReadError as error:
            raise TokbenchError(
                f"cannot read tar shard {path}: {error} (shards must be uncompressed .tar for random access)"
            ) from error
        return samples

    def __len__(self) -> int:
        return len(self._shard)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def _handle(self, shard_id: int) -> BinaryIO:
        if self._pid != os.getpid():  # forked: the parent's offsets are shared state, never reuse them
            self._handles = {}
            self._pid = os.getpid()
        handle = self._handles.get(shard_id)
        if handle is None:
            path = self.paths[shard_id]
            try:
                handle = open(path, "rb")
            except FileNotFoundError as error:
                raise MissingAssetError(f"tar shard {path} disappeared after it was indexed") from error
            self._handles[shard_id] = handle
        return handle

    def _read(self, shard_id: int, offset: int, size: int) -> bytes:
        handle = self._handle(shard_id)
        handle.seek(offset)
        data = handle.read(size)
        if len(data) != size:
            raise TokbenchError(f"tar shard {self.paths[shard_id]} is truncated (changed since it was indexed?)")
        return data

    def get(self, index: int) -> tuple[Image.Image, str]:
        index = _check_index(self, index)
        shard_id = int(self._shard[index])
        where = f"{self.keys[index]!r} in {self.paths[shard_id]}"
        image = _decode_image(self._read(shard_id, *map(int, self._image[index])), where)
        raw = self._read(shard_id, *map(int, self._caption[index])).decode("utf-8", errors="replace")
        if not self._caption_json[index]:
            return image, raw.strip()
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise TokbenchError(f"caption json of sample {where} is not valid JSON: {error}") from error
        for field in JSON_CAPTION_FIELDS:
            if isinstance(record, dict) and isinstance(record.get(field), str):
                return image, record[field].strip()
        raise TokbenchError(
            f"caption json of sample {where} has no string field {' or '.join(repr(f) for f in JSON_CAPTION_FIELDS)}"
        )

    def fingerprint(self) -> str:
        """Hash of shard file names and sizes and of the sample index (keys,
        offsets, sizes). Cheap (no pixel bytes read) and independent of where
        the shards live; a rewritten shard with a different layout changes it."""
        digest = hashlib.sha256()
        for name in self.keys:
            digest.update(name.encode() + b"\0")
        for array in (self._shard, self._image, self._caption, self._caption_json):
            digest.update(np.ascontiguousarray(array).tobytes())
        shards = [[os.path.basename(p), size] for p, size in zip(self.paths, self._shard_sizes)]
        return content_key({"kind": "vtp_tar_shards", "shards": shards, "index": digest.hexdigest()})

    def describe(self) -> dict[str, Any]:
        return {"kind": "vtp_tar_shards", "shards": list(self.paths), "num_samples": len(self)}


# --------------------------------------------------------------------------- manifests


def _pick_column(columns: list[str], allowed: tuple[str, ...], what: str, where: str) -> str:
    for name in allowed:
        if name in columns:
            return name
    raise TokbenchError(
        f"{where} has no {what} column (allowed names: {', '.join(allowed)}; found: {', '.join(columns) or 'none'})"
    )


class ManifestSource:
    """Image paths and captions listed in a CSV (with a header) or JSONL file.

    Image column: one of ``image``/``path``/``filepath``; caption column:
    ``caption``/``text``. Relative image paths are taken relative to the
    manifest's folder, so a dataset folder can be moved as a whole.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingAssetError(f"manifest {self.path} does not exist")
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            rows = self._read_csv()
        elif suffix in (".jsonl", ".ndjson"):
            rows = self._read_jsonl()
        else:
            raise TokbenchError(f"manifest {self.path} must end in .csv or .jsonl (got {suffix or 'no suffix'!r})")
        if not rows:
            raise TokbenchError(f"manifest {self.path} lists no images")
        self.files: list[str] = [image for _, image, _ in rows]
        self.captions: list[str] = [caption for _, _, caption in rows]
        self.line_numbers: list[int] = [line for line, _, _ in rows]
        self._root = str(self.path.parent)

    def _read_csv(self) -> list[tuple[int, str, str]]:
        rows: list[tuple[int, str, str]] = []
        with open(self.path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            image_column = _pick_column(columns, MANIFEST_IMAGE_COLUMNS, "image", f"manifest {self.path}")
            caption_column = _pick_column(columns, MANIFEST_CAPTION_COLUMNS, "caption", f"manifest {self.path}")
            for row in reader:
                image, caption = row.get(image_column), row.get(caption_column)
                if not image:
                    raise TokbenchError(f"manifest {self.path} line {reader.line_num}: empty {image_column!r}")
                rows.append((reader.line_num, image, caption or ""))
        return rows

    def _read_jsonl(self) -> list[tuple[int, str, str]]:
        rows: list[tuple[int, str, str]] = []
        with open(self.path, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"manifest {self.path} line {line_number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise TokbenchError(f"{where} is not valid JSON: {error}") from error
                if not isinstance(record, dict):
                    raise TokbenchError(f"{where} must be a JSON object, got {type(record).__name__}")
                image_key = _pick_column(list(record), MANIFEST_IMAGE_COLUMNS, "image", where)
                caption_key = _pick_column(list(record), MANIFEST_CAPTION_COLUMNS, "caption", where)
                rows.append((line_number, str(record[image_key]), str(record[caption_key])))
        return rows

    def __len__(self) -> int:
        return len(self.files)

    def image_path(self, index: int) -> str:
        return os.path.join(self._root, self.files[_check_index(self, index)])

    def get(self, index: int) -> tuple[Image.Image, str]:
        index = _check_index(self, index)
        path = self.image_path(index)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError as error:
            raise MissingAssetError(
                f"image {path} listed on line {self.line_numbers[index]} of manifest {self.path} does not exist"
            ) from error
        return _decode_image(data, f"{path} (line {self.line_numbers[index]} of {self.path})"), self.captions[index]

    def fingerprint(self) -> str:
        """sha256 of the manifest file itself (image files are not read: cheap,
        and a manifest is rewritten when its images change)."""
        return content_key({"kind": "vtp_manifest", "manifest": file_identity(self.path)})

    def describe(self) -> dict[str, Any]:
        return {"kind": "vtp_manifest", "path": str(self.path), "num_samples": len(self)}


# --------------------------------------------------------------------------- shapes


class ShapesCaptionSource:
    """The offline shapes dataset as image–caption pairs, with ``labels`` kept
    for zero-shot / linear-probe evaluation.

    ``caption_variants``: image ``i`` gets one of four phrasings, fixed per image
    (full caption, colour + shape, shape + background, shape only). Web captions
    describe images partially too; without this, colour and background alone tell
    the captions of a small batch apart and the text tower never needs the shape word.
    """

    def __init__(
        self,
        split: Literal["train", "val"] = "train",
        num_images: int = 512,
        resolution: int = 64,
        seed: int = 0,
        caption_variants: bool = False,
    ):
        self.dataset = ShapesDataset(split=split, num_images=num_images, resolution=resolution, seed=seed)
        self.classnames: list[str] = list(self.dataset.classnames)
        self.caption_variants = caption_variants

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self) -> np.ndarray:
        """Class index of every image, int64, in index order."""
        return self.dataset.labels()

    def get(self, index: int) -> tuple[Image.Image, str]:
        index = _check_index(self, index)
        return Image.fromarray(self.dataset.image(index)), self.caption(index)

    def caption(self, index: int) -> str:
        if not self.caption_variants:
            return self.dataset.caption(index) or ""
        spec = self.dataset.spec(index)
        article = "an" if spec.colour[0] in "aeiou" else "a"
        variant = int.from_bytes(hashlib.blake2b(f"{index}".encode(), digest_size=2).digest(), "little") % 4
        if variant == 0:
            return spec.caption()
        if variant == 1:
            return f"{article} {spec.colour} {spec.shape}"
        if variant == 2:
            return f"a {spec.shape} on a {spec.background_colour} background"
        return f"a {spec.shape}"

    def fingerprint(self) -> str:
        return content_key({"kind": "vtp_shapes_captions", "dataset": self.dataset.fingerprint(),
                            "caption_variants": self.caption_variants})

    def describe(self) -> dict[str, Any]:
        return {"kind": "vtp_shapes_captions", **self.dataset.describe()}
