"""ImageNet-1k's class names, and the zero-shot metadata they come with (OpenAI's prompt
templates), as open_clip ships them: read from there, never copied."""

from __future__ import annotations

from tokbench.errors import TokbenchError


def open_clip_metadata():
    """open_clip's ``zero_shot_metadata`` module (class names and prompt templates)."""
    try:
        from open_clip import zero_shot_metadata
    except ImportError as error:  # pragma: no cover - open_clip is a dependency
        raise TokbenchError(f"ImageNet class names and templates come from open_clip, which failed to import: {error}") from error
    return zero_shot_metadata


def imagenet_classnames() -> tuple[str, ...]:
    """open_clip's 1000 cleaned ImageNet-1k class names, in the standard (sorted wnid) order."""
    return tuple(open_clip_metadata().IMAGENET_CLASSNAMES)
