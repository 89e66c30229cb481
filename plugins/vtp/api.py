"""The vtp plugin's public interface to other packages (imports no torch).

Other plugins use VTP only through this module; everything else in ``tokbench_vtp`` is internal
and may change. The RAE plugin's ``tiny`` preset uses it to pretrain its encoder with a VTP recipe
(self-supervised loss only) and to load the trained trunk as a frozen encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tokbench_vtp.pretrain.recipe import PretrainRecipe, load_recipe

if TYPE_CHECKING:  # pragma: no cover
    from tokbench_vtp.model.trunk import VisionTrunk

__all__ = ["PretrainRecipe", "load_recipe", "pretrained_checkpoint", "load_trunk"]


def pretrained_checkpoint(recipe: PretrainRecipe, context) -> Path:
    """The directory of ``recipe``'s trained weights (``model.safetensors`` in the official layout),
    pretrained once through the store of ``context`` (a task context) and reused after."""
    from tokbench_vtp.pretrain.run import trained_checkpoint

    return Path(trained_checkpoint(recipe, context))


def load_trunk(directory: str | Path) -> "VisionTrunk":
    """The vision trunk of a VTP-format checkpoint directory, fp32, in eval mode and frozen (the
    text tower and the pixel decoder are not loaded). Its stable surface: ``patch_size``,
    ``width``, ``blocks`` (a list), ``norm`` (the final RMSNorm, with ``eps``), and
    ``intermediate(pixels, indices)``: the raw (un-normed) tokens, CLS first, after each listed
    block, for ImageNet-normalised pixels (:func:`tokbench.nn.layers.imagenet_normalize`)."""
    from tokbench_vtp.checkpoint import load_official

    return load_official(Path(directory), components=()).trunk.eval().requires_grad_(False)
