"""Class names and prompt templates for zero-shot classification.

ImageNet's 1000 class names and OpenAI's 80 templates (and the 7 "simple" ones) ship inside
open_clip; they are read from there, never copied. A dataset names its default template
set (``ImageDataset.zero_shot_templates``); the shapes dataset brings its own.
"""

from __future__ import annotations

from typing import Sequence

from tokbench.errors import TokbenchError, unknown_choice

#: template-set name -> where it comes from
TEMPLATE_SETS = {
    "openai": "open_clip OPENAI_IMAGENET_TEMPLATES (80)",
    "simple": "open_clip SIMPLE_IMAGENET_TEMPLATES (7)",
}


def _open_clip_metadata():
    try:
        from open_clip import zero_shot_metadata
    except ImportError as error:  # pragma: no cover - open_clip is a dependency
        raise TokbenchError(f"ImageNet class names and templates come from open_clip, which failed to import: {error}") from error
    return zero_shot_metadata


def template_set(name: str) -> tuple[str, ...]:
    """A named template set as ``str.format`` strings with one ``{}`` for the class name."""
    if name not in TEMPLATE_SETS:
        raise TokbenchError(unknown_choice("template set", name, TEMPLATE_SETS))
    metadata = _open_clip_metadata()
    source = metadata.OPENAI_IMAGENET_TEMPLATES if name == "openai" else metadata.SIMPLE_IMAGENET_TEMPLATES
    return tuple(template("{}") for template in source)


def imagenet_classnames() -> tuple[str, ...]:
    """open_clip's 1000 cleaned ImageNet-1k class names, in the standard (sorted wnid) order."""
    return tuple(_open_clip_metadata().IMAGENET_CLASSNAMES)


def resolve_templates(choice: str | Sequence[str], dataset_default: str | Sequence[str]) -> tuple[str, ...]:
    """``dataset`` -> the dataset's own; a set name -> that set; a list -> itself (checked)."""
    if isinstance(choice, str):
        if choice == "dataset":
            return resolve_templates(dataset_default, "openai") if isinstance(dataset_default, str) else tuple(dataset_default)
        return template_set(choice)
    templates = tuple(choice)
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise TokbenchError(f"prompt templates need exactly one '{{}}' for the class name; bad: {bad or '(empty list)'}")
    return templates
