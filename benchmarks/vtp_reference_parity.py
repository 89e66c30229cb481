"""Parity of tokbench's VTP model with the reference implementation (MiniMax-AI/VTP), on the same weights.

    git clone https://github.com/MiniMax-AI/VTP /tmp/VTP      # not part of tokbench
    pip install transformers omegaconf                          # what the reference imports
    python benchmarks/vtp_reference_parity.py --reference-repo /tmp/VTP --size small

Builds the reference ``VTPModel`` with random weights (every constant tensor perturbed so that no
weight goes unchecked; the bf16 RoPE ``periods`` kept), saves its ``state_dict`` as a
``model.safetensors``, loads that file strictly with ``tokbench_vtp.checkpoint.load_official``,
runs every official method on both in fp32, and prints the max abs differences as JSON
(requirement: <= 1e-5). ``--weights`` compares on a real checkpoint instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

SIZES = {
    "tiny": dict(vision_embed_dim=128, vision_depth=2, vision_num_heads=2, decoder_embed_dim=128, decoder_depth=2,
                 decoder_num_heads=2, text_embed_dim=64, text_depth=2, text_num_heads=2),
    "small": dict(vision_embed_dim=384, vision_depth=12, vision_num_heads=6, decoder_embed_dim=384, decoder_depth=12,
                  decoder_num_heads=6),
    "base": dict(vision_embed_dim=768, vision_depth=12, vision_num_heads=12, decoder_embed_dim=768, decoder_depth=12,
                 decoder_num_heads=12),
    "large": dict(vision_embed_dim=1024, vision_depth=24, vision_num_heads=16, decoder_embed_dim=1024, decoder_depth=24,
                  decoder_num_heads=16),
}


def reference_model(repo: Path, size: str, weights: Path | None):
    sys.path.insert(0, str(repo))
    from vtp.models.vtp_hf import VTPConfig, VTPModel  # the reference code, from the user's checkout

    torch.manual_seed(0)
    model = VTPModel(VTPConfig(**SIZES[size])).eval()
    if weights is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(weights)), strict=True)
        return model
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("periods") or not tensor.is_floating_point():
                continue
            if tensor.numel() and torch.all(tensor == tensor.flatten()[0]):
                tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference-repo", type=Path, required=True)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--weights", type=Path, default=None, help="a real model.safetensors of that size")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from safetensors.torch import save_file

    from tokbench_vtp.checkpoint import load_official
    from tokbench_vtp.text_tokenizer import tokenize

    reference = reference_model(args.reference_repo, args.size, args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
        (Path(tmp) / "config.json").write_text(json.dumps({"text_num_heads": reference.config.text_num_heads}))
        ours = load_official(tmp)
    generator = torch.Generator().manual_seed(2)
    images = 0.5 * torch.randn(2, 3, 256, 256, generator=generator)
    text = tokenize(["a photo of a cat", "two red squares on a blue background"])
    differences = {}
    with torch.no_grad():
        def compare(name, theirs, mine):
            differences[name] = (theirs.float() - mine.float()).abs().max().item()

        latents = reference.get_reconstruction_latents(images)
        compare("latents", latents, ours.get_reconstruction_latents(images))
        compare("reconstruction", reference.get_latents_decoded_images(latents), ours.get_latents_decoded_images(latents))
        compare("clip_image", reference.get_clip_image_feature(images), ours.get_clip_image_feature(images))
        compare("clip_text", reference.get_clip_text_feature(text), ours.get_clip_text_feature(text))
        compare("clip_text_unnormalised", reference.get_clip_text_feature(text, normalize=False),
                ours.get_clip_text_feature(text, normalize=False))
        theirs, mine = reference.get_last_layer_feature(images), ours.get_last_layer_feature(images)
        compare("last_layer_cls", theirs["cls_token"], mine["cls_token"])
        compare("last_layer_patches", theirs["patch_tokens"], mine["patch_tokens"])
        theirs = reference.get_intermediate_layers_feature(images, n=2, reshape=True, return_class_token=True)
        mine = ours.get_intermediate_layers_feature(images, n=2, reshape=True, return_class_token=True)
        compare("intermediate", torch.cat([t[0].flatten() for t in theirs]), torch.cat([t[0].flatten() for t in mine]))
    worst = max(differences.values())
    print(json.dumps({"size": args.size, "weights": str(args.weights or "random, constants perturbed"),
                      "max_abs_difference": differences, "worst": worst, "within_1e-5": worst <= 1e-5}, indent=2))


if __name__ == "__main__":
    main()
