"""Parity of tokbench's VA-VAE loading with the reference implementation (hustvl/LightningDiT
``tokenizer/autoencoder.py``), same weights.

    git clone https://github.com/hustvl/LightningDiT /tmp/LightningDiT      # not part of tokbench
    python benchmarks/vavae_reference_parity.py --reference-repo /tmp/LightningDiT

Builds the reference ``AutoencoderKL(embed_dim=32, ch_mult=(1,1,2,2,4))`` (the released f16d32
architecture, ≈69.8 M parameters) with random weights (every tensor perturbed), writes it as a
Lightning-style checkpoint ``{"state_dict": ..., "callbacks": ...}`` with training-only
``loss.*`` / ``foundation_model.*`` / ``linear_proj.*`` tensors beside it, loads that file with
the ``vae`` plugin (``checkpoint:``; architecture inferred, strict) and compares the posterior
mean (the latent), the posterior std and the reconstruction in fp32 on CPU. Appends a JSON line
to ``benchmarks/results/vavae_parity.jsonl``; requirement <= 1e-5.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "vavae_parity.jsonl"


def reference_module(repo: Path):
    sys.modules.setdefault("requests", types.ModuleType("requests"))  # imported, unused by the model classes
    sys.path.insert(0, str(repo))
    from tokenizer import autoencoder  # the user's checkout

    return autoencoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-repo", type=Path, required=True)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    reference = reference_module(args.reference_repo).AutoencoderKL(embed_dim=32, ch_mult=(1, 1, 2, 2, 4)).eval()
    with torch.no_grad():
        for tensor in reference.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.02 * torch.randn_like(tensor))
    state = reference.state_dict()
    training_only = {"loss.logvar": torch.zeros(()), "loss.discriminator.main.0.weight": torch.randn(64, 3, 4, 4),
                     "foundation_model.model.cls_token": torch.randn(1, 1, 1024), "linear_proj.weight": torch.randn(1024, 32, 1, 1)}
    from tokbench_vae.tokenizer import build_vae

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vavae-imagenet256-f16d32-dinov2.pt"
        torch.save({"state_dict": {**state, **training_only}, "epoch": 125, "global_step": 1}, path)
        tokenizer = build_vae({"checkpoint": str(path), "resolution": args.resolution})

    images = torch.rand(args.batch, 3, args.resolution, args.resolution)
    with torch.no_grad():
        posterior = reference.encode(images * 2 - 1)
        reference_recon = reference.decode(posterior.mean)
        ours = tokenizer.model.encode(images * 2 - 1).latent_dist
        latent = tokenizer.encode(images)
        recon = tokenizer.model.decode(latent).sample
    row = {
        "reference": f"hustvl/LightningDiT@{subprocess.run(['git', '-C', str(args.reference_repo), 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()[:7] or 'unknown'}",
        "model": "VA-VAE f16d32 (random weights)",
        "tensors": len(state),
        "parameters": sum(p.numel() for p in reference.parameters()),
        "resolution": args.resolution,
        "batch": args.batch,
        "max_abs_diff": {
            "latent (posterior mean)": float((latent - posterior.mean).abs().max()),
            "posterior std": float((ours.std - posterior.std).abs().max()),
            "reconstruction (decoder output, [-1, 1])": float((recon - reference_recon).abs().max()),
        },
        "dtype": "float32",
        "device": "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=2))
    worst = max(row["max_abs_diff"].values())
    if worst > 1e-5:
        raise SystemExit(f"parity failed: max abs diff {worst:.3g} > 1e-5")


if __name__ == "__main__":
    main()
