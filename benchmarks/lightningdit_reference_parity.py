"""Parity of tokbench's LightningDiT with the reference implementation (hustvl/LightningDiT), same weights.

    git clone https://github.com/hustvl/LightningDiT /tmp/LightningDiT      # not part of tokbench
    pip install --target /tmp/refenv einops                                 # what the reference imports
    PYTHONPATH=/tmp/refenv python benchmarks/lightningdit_reference_parity.py --reference-repo /tmp/LightningDiT

Builds the reference model (released options: SwiGLU, RoPE, RMSNorm) with random weights (every
zero-initialised tensor perturbed, so no weight goes unchecked), saves its state dict as a
training checkpoint {"model", "ema"}, loads it with ``tokbench.generation.checkpoint`` (sizes
inferred, strict), and compares forward outputs and classifier-free guidance in fp32 on CPU.
The reference's hard-coded ``torch.compile`` is replaced by the identity and its fairscale
import (used only for RMSNorm's module) by an empty stub. Prints JSON; requirement <= 1e-5.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from pathlib import Path

import torch

SIZES = {"tiny": dict(depth=2, hidden_size=128, num_heads=4), "B": dict(depth=12, hidden_size=768, num_heads=12),
         "XL": dict(depth=28, hidden_size=1152, num_heads=16)}


def reference_module(repo: Path):
    torch.compile = lambda fn=None, **kwargs: fn if fn is not None else (lambda f: f)  # the reference compiles at import
    fairscale = types.ModuleType("fairscale")
    for name in ("fairscale.nn", "fairscale.nn.model_parallel", "fairscale.nn.model_parallel.initialize",
                 "fairscale.nn.model_parallel.layers"):
        module = types.ModuleType(name)
        module.ColumnParallelLinear = module.ParallelEmbedding = module.RowParallelLinear = object
        sys.modules[name] = module
    sys.modules["fairscale"] = fairscale
    sys.path.insert(0, str(repo))
    from models import lightningdit  # the user's checkout

    return lightningdit


def _commit(repo: Path) -> str:
    import subprocess

    result = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-repo", type=Path, required=True)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--patch", type=int, default=1)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    reference = reference_module(args.reference_repo)
    from tokbench.generation.checkpoint import load_lightningdit

    torch.manual_seed(0)
    ref = reference.LightningDiT(input_size=16, patch_size=args.patch, in_channels=args.channels, use_swiglu=True,
                                 use_rope=True, use_rmsnorm=True, class_dropout_prob=0.1, **SIZES[args.size]).eval()
    with torch.no_grad():
        for name, tensor in ref.named_parameters():
            if name != "pos_embed":
                tensor.add_(torch.randn_like(tensor) * 0.02)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "0100000.pt"
        torch.save({"model": ref.state_dict(), "ema": ref.state_dict(), "config": {}}, path)
        ours = load_lightningdit(path)

    x = torch.randn(args.batch, args.channels, 16, 16)
    t = torch.rand(args.batch)
    y = torch.randint(0, 1000, (args.batch,))
    results = {"size": args.size, "patch": args.patch, "channels": args.channels,
               "reference_commit": _commit(args.reference_repo), "tensors": len(ref.state_dict())}
    with torch.no_grad():
        results["forward_max_abs"] = float((ref(x, t, y) - ours(x, t, y)).abs().max())
        results["forward_scale"] = float(ref(x, t, y).abs().max())
        from tokbench.generation.transport import guided

        for scale, start in ((4.0, 0.0), (4.0, 0.5)):
            half = torch.cat([x[:2], x[:2]])
            tt = torch.full((4,), float(t[0]))
            labels = torch.cat([y[:2], torch.full((2,), 1000)])
            expected = ref.forward_with_cfg(half, tt, labels, scale, cfg_interval=True, cfg_interval_start=start)[:2]
            mine = guided(ours, y[:2], 1000, scale, interval_start=start, channels="legacy3")(x[:2], tt[:2])
            results[f"cfg_legacy3_scale{scale}_interval{start}_max_abs"] = float((expected - mine).abs().max())
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
