"""``VTPModel``: trunk + pixel decoder + text tower + CLIP heads, with the official
module names (so ``state_dict()`` *is* the official checkpoint format) and the
official inference methods (same names, shapes and normalisation).

All image inputs of the official methods are ImageNet-normalised (B, 3, H, W) with
H and W multiples of the patch size, exactly like the reference; the tokbench
``VTPTokenizer`` converts from [0, 1].
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tokbench_vtp.model.config import VTPArchitecture
from tokbench_vtp.model.pixel_decoder import PixelDecoder
from tokbench_vtp.model.text import TextTransformer, causal_mask, eot_pool
from tokbench_vtp.model.trunk import TrunkOutput, VisionTrunk

class VTPModel(nn.Module):
    def __init__(self, arch: VTPArchitecture):
        super().__init__()
        self.arch = arch
        self.trunk = VisionTrunk(arch)
        self.pixel_decoder = PixelDecoder(arch) if arch.with_decoder else None
        if arch.with_text:
            self.visual_proj = nn.Linear(arch.vision_width, arch.clip_dim, bias=False)
            self.token_embedding = nn.Embedding(arch.text_vocab_size, arch.text_width)
            self.positional_embedding = nn.Parameter(torch.empty(arch.text_context_length, arch.text_width))
            self.text_transformer = TextTransformer(arch.text_width, arch.text_depth, arch.text_heads, arch.mlp_ratio)
            self.ln_final = nn.LayerNorm(arch.text_width)
            self.text_projection = nn.Parameter(torch.empty(arch.text_width, arch.clip_dim))
            self.logit_scale = nn.Parameter(torch.tensor(arch.init_logit_scale))
            self.register_buffer("attn_mask", causal_mask(arch.text_context_length), persistent=False)
        else:
            self.visual_proj = None
        self.init_weights()

    # ---- initialisation (for training from scratch) ----------------------------------
    @torch.no_grad()
    def init_weights(self) -> None:
        """DINOv3 ViT init for trunk and decoder, OpenCLIP init for the text tower."""
        for module in [self.trunk, self.pixel_decoder, self.visual_proj]:
            if module is None:
                continue
            for sub in module.modules():
                if isinstance(sub, nn.Linear):
                    nn.init.trunc_normal_(sub.weight, std=0.02)
                    if sub.bias is not None:
                        nn.init.zeros_(sub.bias)
                elif isinstance(sub, nn.LayerNorm):
                    nn.init.ones_(sub.weight)
                    nn.init.zeros_(sub.bias)
        patch = self.trunk.patch_embed.proj
        bound = math.sqrt(1 / (3 * patch.kernel_size[0] * patch.kernel_size[1]))
        nn.init.uniform_(patch.weight, -bound, bound)
        nn.init.uniform_(patch.bias, -bound, bound)
        nn.init.normal_(self.trunk.cls_token, std=0.02)
        nn.init.zeros_(self.trunk.mask_token)
        if self.pixel_decoder is not None:
            for conv in (self.pixel_decoder.proj_in, self.pixel_decoder.proj_out):
                nn.init.trunc_normal_(conv.weight, std=0.02)
                nn.init.zeros_(conv.bias)
        if self.arch.with_text:
            width, layers = self.arch.text_width, self.arch.text_depth
            nn.init.normal_(self.token_embedding.weight, std=0.02)
            nn.init.normal_(self.positional_embedding, std=0.01)
            attn_std, proj_std, fc_std = width**-0.5, width**-0.5 * (2 * layers) ** -0.5, (2 * width) ** -0.5
            for block in self.text_transformer.resblocks:
                nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
                nn.init.zeros_(block.attn.in_proj_bias)
                nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
                nn.init.zeros_(block.attn.out_proj.bias)
                nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
                nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
            nn.init.normal_(self.text_projection, std=width**-0.5)

    # ---- building blocks ----------------------------------------------------------------
    def _require_text(self) -> None:
        if not self.arch.with_text:
            raise RuntimeError("this VTP model has no text tower / CLIP heads (loaded without them)")

    def _require_decoder(self) -> None:
        if self.pixel_decoder is None:
            raise RuntimeError("this VTP model has no pixel decoder (loaded without it)")

    def clip_image_embedding(self, features: TrunkOutput) -> Tensor:
        pooled = features.cls if self.arch.clip_feature == "cls" else features.patches.mean(dim=1)
        return self.visual_proj(pooled)

    def encode_text(self, text: Tensor) -> Tensor:
        """(B, 77) token ids -> (B, clip_dim), not normalised."""
        self._require_text()
        x = self.token_embedding(text) + self.positional_embedding
        x = self.ln_final(self.text_transformer(x, self.attn_mask))
        return eot_pool(x, text) @ self.text_projection

    def decode_latents(self, latents: Tensor, drop_rate: float = 0.0) -> Tensor:
        self._require_decoder()
        return self.pixel_decoder(latents, drop_rate)

    # ---- official inference API ---------------------------------------------------------
    def get_reconstruction_latents(self, image: Tensor) -> Tensor:
        return self.trunk.latents(image)

    def get_latents_decoded_images(self, latents: Tensor) -> Tensor:
        return self.decode_latents(latents)

    def get_clip_image_feature(self, image: Tensor, normalize: bool = True) -> Tensor:
        self._require_text()
        features = self.clip_image_embedding(self.trunk.features(image))
        return F.normalize(features, dim=-1) if normalize else features

    def get_clip_text_feature(self, text: Tensor, normalize: bool = True) -> Tensor:
        features = self.encode_text(text)
        return F.normalize(features, dim=-1) if normalize else features

    def get_clip_logits(self, image: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """(image→text logits (B_img, B_txt), text→image logits), scaled by exp(logit_scale)."""
        image_features = self.get_clip_image_feature(image)
        text_features = self.get_clip_text_feature(text)
        logits = self.logit_scale.exp() * image_features @ text_features.T
        return logits, logits.T

    def get_last_layer_feature(self, image: Tensor, use_bottleneck: bool = False) -> dict[str, Tensor]:
        out = self.trunk.features(image)
        cls, patches = out.cls, out.patches
        if use_bottleneck:
            cls, patches = self.trunk.feature_bottleneck(cls), self.trunk.feature_bottleneck(patches)
        return {"cls_token": cls, "patch_tokens": patches}

    def get_intermediate_layers_feature(
        self,
        image: Tensor,
        n: int | Sequence[int] = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        norm: bool = True,
    ) -> tuple:
        """Patch tokens after the last ``n`` blocks (or the listed block indices), optionally
        final-normed, reshaped to (B, D, h, w), zipped with the CLS tokens. Never bottlenecked."""
        depth = len(self.trunk.blocks)
        blocks = list(range(depth - n, depth)) if isinstance(n, int) else sorted(int(i) % depth for i in n)
        outputs = self.trunk.intermediate(image, blocks)
        if norm:
            outputs = [self.trunk.norm(x) for x in outputs]
        class_tokens = [x[:, 0] for x in outputs]
        patches = [x[:, 1:] for x in outputs]
        if reshape:
            batch, _, height, width = image.shape
            p = self.trunk.patch_size
            patches = [x.reshape(batch, height // p, width // p, -1).permute(0, 3, 1, 2).contiguous() for x in patches]
        if return_class_token:
            return tuple(zip(patches, class_tokens))
        return tuple(patches)

    def forward(self, image: Tensor, text: Tensor | None = None, forward_type: str = "rec") -> dict[str, Tensor]:
        if forward_type == "clip":
            if text is None:
                raise ValueError("forward_type='clip' needs text tokens")
            return {
                "image_features": self.get_clip_image_feature(image),
                "text_features": self.get_clip_text_feature(text),
                "logit_scale": self.logit_scale.exp(),
            }
        if forward_type == "rec":
            latents = self.get_reconstruction_latents(image)
            return {"latents": latents, "reconstructed_image": self.decode_latents(latents), "target_image": image}
        if forward_type == "feature":
            return self.get_last_layer_feature(image, use_bottleneck=True)
        raise ValueError(f"unknown forward_type {forward_type!r}; use 'clip', 'rec' or 'feature'")
