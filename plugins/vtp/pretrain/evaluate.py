"""In-training evaluation on held-out shapes images: zero-shot top-1 (text tower vs
image CLIP embedding, the VTP protocol: ×100 logits on normalised features, class
embedding = mean of normalised prompt embeddings) and reconstruction PSNR.

Two zero-shot readings: over the dataset's classes (the 12 shapes: ``zero_shot_top1``)
and over the shape's colour (``zero_shot_colour_top1``, classes = the generator's colour
names); the second is an easier attribute a small model
learns first, the first the dataset's own labels.

Used to show that a tiny run learns (zero-shot well above the 1/12 chance, PSNR
rising); the benchmark-grade protocols are the tokbench tasks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tokbench.data.loader import load_images
from tokbench.data.shapes import CLASSNAMES as SHAPE_NAMES
from tokbench.data.shapes import COLOURS, ShapesDataset
from tokbench.metrics.image_quality import mean_psnr, psnr_uint8, to_uint8
from tokbench_vtp.model.vtp import VTPModel, imagenet_denormalize, imagenet_normalize

#: prompt templates for the shapes classes (the dataset's captions read "a red circle on ...")
#: Prompts in the captions' own words (a tiny text tower knows no others): a shape class is
#: "a {shape}" plus "a {colour} {shape}" for every colour; a colour class is "a {colour} {shape}"
#: for every shape (the prompt ensemble marginalises the other attribute).
SHAPES_TEMPLATES = ("a {}",) + tuple(f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {{}}" for colour in COLOURS)
COLOUR_TEMPLATES = tuple(f"a {{}} {shape}" for shape in SHAPE_NAMES)
#: held-out images come from the 'val' split (never trained on); seed offset as the VAE plugin uses
HOLDOUT_SEED_OFFSET = 1


class ShapesProbe:
    def __init__(self, resolution: int, num_images: int = 240, seed: int = 0, batch_size: int = 60, device="cpu"):
        dataset = ShapesDataset(split="val", num_images=num_images, resolution=resolution, seed=seed + HOLDOUT_SEED_OFFSET)
        self.images = load_images(dataset, range(num_images))
        self.labels = torch.as_tensor(dataset.labels())
        self.classnames = list(dataset.classnames)
        self.colour_names = list(COLOURS)
        self.colour_labels = torch.as_tensor([self.colour_names.index(dataset.spec(i).colour) for i in range(num_images)])
        self.batch_size = batch_size
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, model: VTPModel) -> dict[str, float]:
        metrics: dict[str, float] = {}
        pixels = [self.images[i : i + self.batch_size] for i in range(0, len(self.images), self.batch_size)]
        if model.arch.with_text:
            features = torch.cat([
                model.get_clip_image_feature(imagenet_normalize(chunk.to(self.device).float() / 255)).float()
                for chunk in pixels
            ])
            for key, names, templates, labels in (
                ("zero_shot_top1", self.classnames, SHAPES_TEMPLATES, self.labels),
                ("zero_shot_colour_top1", self.colour_names, COLOUR_TEMPLATES, self.colour_labels),
            ):
                classifier = zero_shot_classifier(model, names, templates, self.device)
                predictions = (100.0 * features @ classifier).argmax(dim=-1).cpu()
                metrics[key] = float((predictions == labels).float().mean())
            metrics["chance"] = 1 / len(self.classnames)
            metrics["colour_chance"] = 1 / len(self.colour_names)
        if model.pixel_decoder is not None:
            psnrs = []
            for chunk in pixels:
                x = imagenet_normalize(chunk.to(self.device).float() / 255)
                decoded = model.get_latents_decoded_images(model.get_reconstruction_latents(x).float())
                restored = to_uint8(imagenet_denormalize(decoded.float()).clamp(0, 1))
                psnrs.append(psnr_uint8(chunk.to(self.device), restored))
            metrics["psnr"] = mean_psnr(torch.cat(psnrs))
        return metrics


def zero_shot_classifier(model: VTPModel, classnames, templates, device) -> torch.Tensor:
    """(E, classes): per class, the re-normalised mean of its normalised prompt embeddings."""
    from tokbench_vtp.text_tokenizer import tokenize

    columns = []
    for name in classnames:
        tokens = tokenize([t.format(name) for t in templates], model.arch.text_context_length).to(device)
        embedding = model.get_clip_text_feature(tokens).float().mean(dim=0)
        columns.append(F.normalize(embedding, dim=-1))
    return torch.stack(columns, dim=1)
