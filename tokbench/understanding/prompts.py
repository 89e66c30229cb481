"""Prompt templates for zero-shot classification.

OpenAI's 80 templates (and the 7 "simple" ones) ship inside open_clip beside ImageNet's class
names (:mod:`tokbench.data.imagenet`); they are read from there, never copied. A dataset names its default template
set (``ImageDataset.zero_shot_templates``); the shapes dataset brings its own.
"""

from __future__ import annotations

from typing import Sequence

from tokbench.data.imagenet import open_clip_metadata
from tokbench.errors import TokbenchError, unknown_choice

#: template-set name -> where it comes from
TEMPLATE_SETS = {
    "openai": "open_clip OPENAI_IMAGENET_TEMPLATES (80)",
    "simple": "open_clip SIMPLE_IMAGENET_TEMPLATES (7)",
}


def template_set(name: str) -> tuple[str, ...]:
    """A named template set as ``str.format`` strings with one ``{}`` for the class name."""
    if name not in TEMPLATE_SETS:
        raise TokbenchError(unknown_choice("template set", name, TEMPLATE_SETS))
    metadata = open_clip_metadata()
    source = metadata.OPENAI_IMAGENET_TEMPLATES if name == "openai" else metadata.SIMPLE_IMAGENET_TEMPLATES
    return tuple(template("{}") for template in source)


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
