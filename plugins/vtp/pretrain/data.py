"""From a recipe's ``data`` section to the deterministic, resumable batch iterator."""

from __future__ import annotations

from tokbench.errors import TokbenchError
from tokbench_vtp.pretrain.recipe import DataConfig, PretrainRecipe


def build_source(data: DataConfig):
    """The image-caption source a recipe names."""
    from tokbench_vtp.pretrain import sources

    if data.kind == "shapes":
        return sources.ShapesCaptionSource(split="train", num_images=data.num_images, resolution=data.resolution,
                                           seed=data.shapes_seed, caption_variants=data.caption_variants)
    if data.kind == "tar":
        return sources.TarShardSource(data.shards)
    if data.kind == "manifest":
        return sources.ManifestSource(data.manifest)
    raise TokbenchError(f"unknown data.kind {data.kind!r}; use shapes, tar or manifest")  # pragma: no cover


def build_loader(recipe: PretrainRecipe, source=None, rank: int = 0, world_size: int = 1, stage2: bool = False):
    """Per-rank micro-batches: the global batch split over ranks and accumulation steps.
    ``stage2`` gives batches of plain reconstruction views only (``stage2.batch`` images)."""
    from tokbench_vtp.pretrain.augment import MultiCropAugmentation
    from tokbench_vtp.pretrain.collate import PretrainCollator
    from tokbench_vtp.pretrain.loader import DeterministicLoader
    from tokbench_vtp.text_tokenizer import tokenize

    source = source if source is not None else build_source(recipe.data)
    batch = recipe.batch
    if stage2:
        global_batch, ssl, rec, seed = recipe.stage2.batch, 0, recipe.stage2.batch // world_size, recipe.seed + 1
    else:
        split = world_size * batch.accumulation
        global_batch, ssl, rec, seed = batch.clip // batch.accumulation, batch.ssl // split, batch.rec // split, recipe.seed
    for name, value in (("global batch", global_batch), ("ssl", ssl), ("rec", rec)):
        if name == "global batch" and value % world_size:
            raise TokbenchError(f"{name} {value} is not divisible by the world size {world_size}")
    collator = PretrainCollator(
        MultiCropAugmentation(recipe.crops), lambda texts: tokenize(texts, recipe.arch.text_context_length),
        ssl_batch=ssl, rec_batch=rec, patch_size=recipe.arch.patch_size,
        mask_probability=recipe.masking.probability, mask_ratio=recipe.masking.ratio,
    )
    return DeterministicLoader(source, collator, global_batch_size=global_batch, seed=seed, rank=rank,
                               world_size=world_size, num_workers=recipe.data.num_workers)
