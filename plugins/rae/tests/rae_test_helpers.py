"""Small random encoders, decoders and the official decoder layout, written independently of the plugin."""

from __future__ import annotations

import torch

from tokbench_rae.sizes import DecoderConfig


def perturb_(module: torch.nn.Module, scale: float = 0.02, skip: tuple[str, ...] = ()) -> torch.nn.Module:
    """Zero / one-initialised tensors would hide key mix-ups: perturb every float tensor."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point() and not name.startswith(skip):
                tensor.add_(torch.randn_like(tensor) * scale)
    return module


def small_vit(seed: int = 0, width: int = 32, depth: int = 2, patch: int = 4, registers: int = 4):
    """A timm DINOv2-style ViT (registers, layer scale, no_embed_class) on a 6x6 native grid."""
    from timm.models.vision_transformer import VisionTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = VisionTransformer(img_size=6 * patch, patch_size=patch, embed_dim=width, depth=depth, num_heads=2,
                                reg_tokens=registers, no_embed_class=True, init_values=1e-5, dynamic_img_size=True,
                                num_classes=0)
        perturb_(vit)
    return vit.eval()


def small_encoder(seed: int = 0, **kwargs):
    from tokbench_rae.encoder import TimmViTEncoder

    return TimmViTEncoder(small_vit(seed, **kwargs), "test-vit")


def official_decoder_state(config: DecoderConfig, seed: int = 0, meta: bool = False) -> dict[str, torch.Tensor]:
    """A random state dict in the released ``model.pt`` layout, spelled out from RAE's
    ``GeneralDecoder`` (HF ``ViTMAELayer`` names), not from the plugin's module.
    ``meta``: shapes only (the 415M-parameter ViT-XL without allocating it)."""
    generator = torch.Generator().manual_seed(seed)
    d, i, p = config.hidden, config.intermediate, config.patch_size

    def rand(*shape: int) -> torch.Tensor:
        if meta:
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=generator) * 0.05

    state = {
        "decoder_embed.weight": rand(d, config.latent_dim), "decoder_embed.bias": rand(d),
        "decoder_pos_embed": rand(1, config.num_patches + 1, d),
        "decoder_norm.weight": 1 + rand(d), "decoder_norm.bias": rand(d),
        "decoder_pred.weight": rand(p * p * 3, d), "decoder_pred.bias": rand(p * p * 3),
        "trainable_cls_token": rand(1, 1, d),
    }
    for layer in range(config.layers):
        prefix = f"decoder_layers.{layer}."
        for name in ("query", "key", "value"):
            state[f"{prefix}attention.attention.{name}.weight"] = rand(d, d)
            state[f"{prefix}attention.attention.{name}.bias"] = rand(d)
        state.update({
            f"{prefix}attention.output.dense.weight": rand(d, d), f"{prefix}attention.output.dense.bias": rand(d),
            f"{prefix}intermediate.dense.weight": rand(i, d), f"{prefix}intermediate.dense.bias": rand(i),
            f"{prefix}output.dense.weight": rand(d, i), f"{prefix}output.dense.bias": rand(d),
            f"{prefix}layernorm_before.weight": 1 + rand(d), f"{prefix}layernorm_before.bias": rand(d),
            f"{prefix}layernorm_after.weight": 1 + rand(d), f"{prefix}layernorm_after.bias": rand(d),
        })
    return state


def small_decoder_config(latent_dim: int = 32, grid: int = 4, patch: int = 8) -> DecoderConfig:
    return DecoderConfig(latent_dim=latent_dim, hidden=64, layers=2, heads=1, intermediate=128, patch_size=patch, grid=grid)


def small_tokenizer(seed: int = 0, stats: bool = True, precision: str = "fp32"):
    """Timm encoder (patch 4, width 32) + a decoder (patch 8, 4x4 grid): 32 px images, the encoder sees 16 px."""
    from tokbench_rae.decoder import load_decoder
    from tokbench_rae.params import RAEParams
    from tokbench_rae.tokenizer import RAETokenizer

    config = small_decoder_config()
    decoder = load_decoder(official_decoder_state(config, seed), heads=config.heads)
    statistics = None
    if stats:
        generator = torch.Generator().manual_seed(seed + 7)
        statistics = (torch.randn(1, 32, 4, 4, generator=generator) * 0.1, torch.rand(1, 32, 4, 4, generator=generator) + 0.5)
    params = RAEParams(decoder="local/model.pt", precision=precision)
    return RAETokenizer(small_encoder(seed), decoder, params, stats=statistics, source="test")
