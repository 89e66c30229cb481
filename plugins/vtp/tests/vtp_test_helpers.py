"""Small architectures and models for the VTP tests."""

from __future__ import annotations

from tokbench_vtp.model.config import VTPArchitecture

#: 32 px images, patch 8 -> 4x4 grid; every component present, two blocks each
MICRO = VTPArchitecture(
    patch_size=8, vision_width=64, vision_depth=2, vision_heads=2, bottleneck=8,
    decoder_width=64, decoder_depth=2, decoder_heads=2,
    text_width=64, text_depth=1, text_heads=1, clip_dim=32, text_vocab_size=49408,
)


def micro_model(seed: int = 0, arch: VTPArchitecture = MICRO):
    import torch

    from tokbench_vtp.model.vtp import VTPModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VTPModel(arch)
        # Zero-initialised tensors (mask token, biases) would hide key mix-ups: perturb everything.
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.add_(torch.randn_like(param) * 0.02)
    return model.eval()
