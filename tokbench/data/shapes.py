"""Procedurally generated coloured shapes: a dataset that needs no download.

Every sample is a pure function of (seed, split, index), so any subset is
reproducible on its own and workers can generate in parallel. Shapes are drawn
at ``SUPERSAMPLE`` times the target resolution and box-reduced, which gives
antialiased edges at any resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from tokbench.data.base import ImageDataset, ResampledView, check_crop
from tokbench.data.params import ShapesParams
from tokbench.hashing import content_key

#: Bump whenever the pixels or labels produced for a given (params, index) change.
GENERATOR_VERSION = 1
SUPERSAMPLE = 4
SPLIT_IDS = {"train": 0, "val": 1}

Polygon = np.ndarray  # (N, 2) float, unit scale, y pointing down
Layer = tuple[Polygon, bool]  # polygon and whether it paints (True) or erases (False)


def _regular(sides: int, radius: float = 1.0, start: float = -math.pi / 2) -> Polygon:
    angles = start + 2 * math.pi * np.arange(sides) / sides
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int, inner: float) -> Polygon:
    outer = _regular(2 * points)
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return outer * radii[:, None]


def _heart() -> Polygon:
    t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    points = np.stack([x, y], axis=1)
    points -= (points.max(axis=0) + points.min(axis=0)) / 2
    return points / np.linalg.norm(points, axis=1).max()


def _polygon(*xy: float) -> Polygon:
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)


_CIRCLE = _regular(64)

#: Class name -> layers drawn in order. Names are plain English for prompts.
SHAPES: dict[str, list[Layer]] = {
    "circle": [(_CIRCLE, True)],
    "square": [(_regular(4, start=math.pi / 4), True)],
    "triangle": [(_regular(3), True)],
    "pentagon": [(_regular(5), True)],
    "hexagon": [(_regular(6), True)],
    "star": [(_star(5, 0.42), True)],
    "cross": [(_polygon(-0.3, -1, 0.3, -1, 0.3, -0.3, 1, -0.3, 1, 0.3, 0.3, 0.3,
                        0.3, 1, -0.3, 1, -0.3, 0.3, -1, 0.3, -1, -0.3, -0.3, -0.3), True)],
    "ring": [(_CIRCLE, True), (0.58 * _CIRCLE, False)],
    "diamond": [(_polygon(0, -1, 0.58, 0, 0, 1, -0.58, 0), True)],
    "heart": [(_heart(), True)],
    "crescent": [(_CIRCLE, True), (0.85 * _CIRCLE + np.array([0.45, -0.2]), False)],
    "arrow": [(_polygon(-1, -0.22, 0.15, -0.22, 0.15, -0.62, 1, 0, 0.15, 0.62, 0.15, 0.22, -1, 0.22), True)],
}
CLASSNAMES: tuple[str, ...] = tuple(SHAPES)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 25),
    "yellow": (240, 215, 35),
    "green": (45, 165, 65),
    "cyan": (40, 200, 210),
    "blue": (35, 75, 215),
    "purple": (135, 55, 185),
    "pink": (240, 120, 180),
    "brown": (125, 78, 38),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "black": (25, 25, 25),
}
_COLOUR_NAMES = list(COLOURS)
_MIN_CONTRAST = 110.0  # RGB distance between foreground and background colours
_BACKGROUND_CHOICES: dict[str, list[str]] = {
    fg: [bg for bg in COLOURS if math.dist(COLOURS[fg], COLOURS[bg]) >= _MIN_CONTRAST] for fg in COLOURS
}

#: Zero-shot prompts in the captions' own words (a small text tower knows no others): a shape
#: class is "a {}" plus "a {colour} {}" for every colour (the ensemble marginalises the
#: colour); a colour class is "a {} {shape}" for every shape.
ZERO_SHOT_TEMPLATES: tuple[str, ...] = ("a {}",) + tuple(
    f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {{}}" for colour in COLOURS
)
COLOUR_TEMPLATES: tuple[str, ...] = tuple(f"a {{}} {shape}" for shape in SHAPES)

BackgroundKind = Literal["plain", "striped", "gradient", "checkered"]
BACKGROUNDS: tuple[BackgroundKind, ...] = ("plain", "striped", "gradient", "checkered")
_COLOUR_JITTER = 12


@dataclass(frozen=True)
class ShapeSpec:
    """Everything that determines one image, in resolution-independent units."""

    label: int
    shape: str
    colour: str
    rgb: tuple[int, int, int]
    background: BackgroundKind
    background_colour: str
    background_rgb: tuple[int, int, int]
    background_rgb2: tuple[int, int, int]  # second tone of stripes/gradient/checks
    center: tuple[float, float]  # fractions of the image side
    radius: float  # fraction of the image side
    rotation: float  # radians
    pattern_vertical: bool
    pattern_cycles: float  # stripe/check periods across the image
    pattern_phase: float
    gradient_angle: float
    noise_std: float  # grey levels
    noise_seed: int

    def caption(self) -> str:
        article = "an" if self.colour[0] in "aeiou" else "a"
        thing = f"{article} {self.colour} {self.shape}"
        colour = self.background_colour
        if self.background == "plain":
            return f"{thing} on a plain {colour} background"
        if self.background == "gradient":
            return f"{thing} on a {colour} gradient background"
        return f"{thing} on a {self.background} {colour} background"


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    shifted = np.clip(np.asarray(rgb) + rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3), 0, 255)
    return tuple(int(v) for v in shifted)  # type: ignore[return-value]


def _pick(rng: np.random.Generator, names: list[str]) -> str:
    return names[int(rng.integers(len(names)))]


def _second_tone(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    target = 0.0 if sum(rgb) > 3 * 110 else 255.0
    return tuple(int(round(0.62 * c + 0.38 * target)) for c in rgb)  # type: ignore[return-value]


def sample_spec(seed: int, split: str, index: int) -> ShapeSpec:
    """The parameters of image ``index``, from a generator seeded by (seed, split, index)
    alone, so no sample depends on any other."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    label = index % len(CLASSNAMES)
    colour = _pick(rng, _COLOUR_NAMES)
    background_colour = _pick(rng, _BACKGROUND_CHOICES[colour])
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    rgb = _jitter(rng, COLOURS[colour])
    background_rgb = _jitter(rng, COLOURS[background_colour])
    radius = float(rng.uniform(0.17, 0.34))
    center = (float(rng.uniform(radius, 1 - radius)), float(rng.uniform(radius, 1 - radius)))
    return ShapeSpec(
        label=label,
        shape=CLASSNAMES[label],
        colour=colour,
        rgb=rgb,
        background=background,
        background_colour=background_colour,
        background_rgb=background_rgb,
        background_rgb2=_second_tone(background_rgb),
        center=center,
        radius=radius,
        rotation=float(rng.uniform(0, 2 * math.pi)),
        pattern_vertical=bool(rng.integers(2)),
        pattern_cycles=float(rng.uniform(2.5, 6.0)),
        pattern_phase=float(rng.uniform()),
        gradient_angle=float(rng.uniform(0, 2 * math.pi)),
        noise_std=float(rng.uniform(0.0, 3.0)),
        noise_seed=int(rng.integers(2**63)),
    )


def shape_mask(spec: ShapeSpec, resolution: int) -> np.ndarray:
    """Antialiased coverage of the shape, float32 (resolution, resolution) in [0, 1]."""
    canvas_size = SUPERSAMPLE * resolution
    canvas = Image.new("L", (canvas_size, canvas_size), 0)
    draw = ImageDraw.Draw(canvas)
    cos, sin = math.cos(spec.rotation), math.sin(spec.rotation)
    rotation = np.array([[cos, -sin], [sin, cos]])
    # PIL puts pixel centres on integer coordinates; shift so pixel i spans [i, i+1).
    offset = np.asarray(spec.center) * canvas_size - 0.5
    for polygon, paints in SHAPES[spec.shape]:
        points = polygon @ rotation.T * (spec.radius * canvas_size) + offset
        draw.polygon(points.ravel().tolist(), fill=255 if paints else 0)
    return np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0


def _square_wave_coverage(resolution: int, cycles: float, phase: float) -> np.ndarray:
    """Per-pixel fraction covered by the 'on' half of a square wave (box-filtered)."""
    subpixels = (np.arange(SUPERSAMPLE * resolution) + 0.5) / (SUPERSAMPLE * resolution)
    on = ((subpixels * cycles + phase) % 1.0) < 0.5
    return on.reshape(resolution, SUPERSAMPLE).mean(axis=1, dtype=np.float32)


def background_tone(spec: ShapeSpec, resolution: int) -> np.ndarray:
    """Mix weight of the second background tone, float32 (resolution, resolution)."""
    if spec.background == "plain":
        return np.zeros((resolution, resolution), dtype=np.float32)
    if spec.background == "striped":
        wave = _square_wave_coverage(resolution, spec.pattern_cycles, spec.pattern_phase)
        grid = np.broadcast_to(wave[None, :] if spec.pattern_vertical else wave[:, None], (resolution, resolution))
        return np.ascontiguousarray(grid)
    if spec.background == "checkered":
        cycles = spec.pattern_cycles * 0.6
        along_x = _square_wave_coverage(resolution, cycles, spec.pattern_phase)[None, :]
        along_y = _square_wave_coverage(resolution, cycles, spec.pattern_phase)[:, None]
        # Exact box-filtered coverage of an XOR of two separable square waves.
        return along_x * (1 - along_y) + (1 - along_x) * along_y
    coords = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution - 0.5
    dx, dy = math.cos(spec.gradient_angle), math.sin(spec.gradient_angle)
    projection = coords[None, :] * dx + coords[:, None] * dy
    extent = (abs(dx) + abs(dy)) / 2
    return ((projection + extent) / (2 * extent)).astype(np.float32)


def render(spec: ShapeSpec, resolution: int) -> np.ndarray:
    """The image for ``spec``: uint8 (resolution, resolution, 3) RGB."""
    tone = background_tone(spec, resolution)[..., None]
    base = np.asarray(spec.background_rgb, dtype=np.float32)
    second = np.asarray(spec.background_rgb2, dtype=np.float32)
    background = base + (second - base) * tone
    alpha = shape_mask(spec, resolution)[..., None]
    image = background + (np.asarray(spec.rgb, dtype=np.float32) - background) * alpha
    if spec.noise_std > 0:
        noise_rng = np.random.default_rng(spec.noise_seed)
        image += noise_rng.standard_normal(image.shape, dtype=np.float32) * spec.noise_std
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class ShapesDataset(ImageDataset):
    """Coloured shapes on patterned backgrounds. The class is the shape (balanced:
    ``index % 12``) or, with ``labels="colour"``, the shape's colour (uniformly drawn).

    Image ``i`` does not depend on ``num_images``: a smaller dataset is a prefix
    of a larger one with the same seed and split.
    """

    def __init__(
        self,
        *,
        split: Literal["train", "val"] = "val",
        num_images: int = 512,
        resolution: int = 64,
        seed: int = 0,
        labels: Literal["shape", "colour"] = "shape",
    ):
        self.params = ShapesParams(split=split, num_images=num_images, resolution=resolution, seed=seed, labels=labels)
        self.resolution = self.params.resolution
        self.classnames = list(CLASSNAMES) if labels == "shape" else list(COLOURS)

    @classmethod
    def from_params(cls, params: ShapesParams) -> "ShapesDataset":
        return cls(**params.model_dump())

    def __len__(self) -> int:
        return self.params.num_images

    def spec(self, index: int) -> ShapeSpec:
        index = self._check_index(index)
        return sample_spec(self.params.seed, self.params.split, index)

    def image(self, index: int) -> np.ndarray:
        return render(self.spec(index), self.resolution)

    def label(self, index: int) -> int:
        if self.params.labels == "colour":
            return _COLOUR_NAMES.index(self.spec(index).colour)
        return self._check_index(index) % len(CLASSNAMES)

    def labels(self) -> np.ndarray:
        if self.params.labels == "colour":
            return np.fromiter((self.label(i) for i in range(len(self))), dtype=np.int64, count=len(self))
        return np.arange(len(self), dtype=np.int64) % len(CLASSNAMES)

    def caption(self, index: int) -> str:
        return self.spec(index).caption()

    def zero_shot_templates(self) -> tuple[str, ...]:
        return ZERO_SHOT_TEMPLATES if self.params.labels == "shape" else COLOUR_TEMPLATES

    def view(self, crop: str, resolution: int) -> ImageDataset:
        """Re-rendered, not resampled: every crop of a square image is a resize of it,
        except ``center-0.875``, which crops a render at ``resolution / 0.875``."""
        from tokbench.data.transforms import EVAL_CROP_FRACTION

        check_crop(crop)
        if crop != "center-0.875":
            if resolution == self.resolution:
                return self
            return ShapesDataset(**self.params.model_copy(update={"resolution": int(resolution)}).model_dump())
        source = self.params.model_copy(update={"resolution": int(round(resolution / EVAL_CROP_FRACTION))})
        return ResampledView(ShapesDataset(**source.model_dump()), crop, resolution)

    def fingerprint(self) -> str:
        # shape labels were the only labels before `labels` existed: keep those keys (and the stores) valid
        params = self.params.model_dump(mode="json", exclude={"labels"} if self.params.labels == "shape" else set())
        return content_key({"kind": "shapes", "generator_version": GENERATOR_VERSION, "params": params})

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "shapes",
            "generator_version": GENERATOR_VERSION,
            **self.params.model_dump(mode="json"),
            "num_classes": self.num_classes,
            "classnames": list(self.classnames),
            "fingerprint": self.fingerprint(),
        }
