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

from tokbench.data.loader import load_images
from tokbench.data.shapes import COLOUR_TEMPLATES, ZERO_SHOT_TEMPLATES, ShapesDataset
from tokbench.metrics.image_quality import mean_psnr, psnr_uint8, to_uint8
from tokbench.nn.layers import imagenet_denormalize, imagenet_normalize
from tokbench.training.tiny import HOLDOUT_SEED_OFFSET
from tokbench.understanding.zero_shot import LOGIT_SCALE, build_classifier
from tokbench_vtp.model.vtp import VTPModel


class ShapesProbe:
    def __init__(self, resolution: int, num_images: int = 240, seed: int = 0, batch_size: int = 60, device="cpu"):
        options = dict(split="val", num_images=num_images, resolution=resolution, seed=seed + HOLDOUT_SEED_OFFSET)
        dataset, by_colour = ShapesDataset(**options), ShapesDataset(**options, labels="colour")
        self.images = load_images(dataset, range(num_images))
        self.labels = torch.as_tensor(dataset.labels())
        self.classnames = list(dataset.classnames)
        self.colour_names = list(by_colour.classnames)
        self.colour_labels = torch.as_tensor(by_colour.labels())
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
                ("zero_shot_top1", self.classnames, ZERO_SHOT_TEMPLATES, self.labels),
                ("zero_shot_colour_top1", self.colour_names, COLOUR_TEMPLATES, self.colour_labels),
            ):
                classifier = build_classifier(_TextTower(model), names, templates)
                predictions = (LOGIT_SCALE * features @ classifier).argmax(dim=-1).cpu()
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


class _TextTower:
    """The model's text path in the shape ``build_classifier`` reads (tokenize, text_features)."""

    def __init__(self, model: VTPModel):
        self.model = model

    def tokenize(self, texts):
        from tokbench_vtp.text_tokenizer import tokenize

        return tokenize(texts, self.model.arch.text_context_length)

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.get_clip_text_feature(tokens.to(self.model.logit_scale.device)).float()
