"""Encode / decode throughput and peak memory of every plugin's released-size model at 256².

    .venv/bin/python benchmarks/bench_codec.py                          # CPU: batch 1, 4, 16, fp32
    .venv/bin/python benchmarks/bench_codec.py --batch-sizes 1,16,64,256 --precisions fp32,bf16   # GPU

Each model is built with random weights at its released size (VTP-L, VA-VAE f16d32, SD-VAE f8d4,
taming VQGAN f16-16384, RAE DINOv2-B + ViT-XL), written in its official checkpoint format and
loaded through its plugin, so the measured path is exactly what a suite runs. Weights do not
change speed. Each model is timed beside a baseline in the same process:

- VTP-L encode vs timm's ViT-L/16 ``forward_features`` at 256² (same width and depth);
- VA-VAE with the LDM reference numerics (bit-exact fp32) vs diffusers' stock processors (SDPA,
  fused SiLU) on the same weights: the price of exact parity;
- SD-VAE / VQGAN / RAE: the plugin path only (their baselines are the same library calls).

Writes one JSON line per run to ``benchmarks/results/codec.jsonl`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import record, sync  # noqa: E402


def _vtp(tmp: Path):
    from tokbench_vtp.checkpoint import save_official
    from tokbench_vtp.model.config import preset
    from tokbench_vtp.model.vtp import VTPModel
    from tokbench_vtp.tokenizer import build_vtp

    directory = tmp / "vtp-large"
    directory.mkdir()
    save_official(VTPModel(preset("large")), directory / "model.safetensors")
    tokenizer = build_vtp({"pretrained": str(directory)})

    def baseline():
        import timm

        model = timm.create_model("vit_large_patch16_224", img_size=256, num_classes=0, pretrained=False).eval()
        return "timm ViT-L/16 forward_features", lambda x: model.forward_features(x), model

    return tokenizer, baseline


def _vavae(tmp: Path):
    from diffusers import AutoencoderKL

    from tokbench_vae.ldm import LDMArchitecture, to_ldm_state_dict
    from tokbench_vae.tokenizer import build_vae

    arch = LDMArchitecture(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=32,
                           encoder_attention_levels=frozenset({4}), decoder_attention_levels=frozenset({4}), mid_attention=True)
    stock = AutoencoderKL(**arch.autoencoder_config()).eval()
    path = tmp / "vavae.pt"
    torch.save({"state_dict": to_ldm_state_dict(stock)}, path)
    tokenizer = build_vae({"checkpoint": str(path)})

    def baseline():
        return "diffusers stock processors (SDPA, fused SiLU), same weights", lambda x: stock.encode(x * 2 - 1).latent_dist.mode(), stock

    return tokenizer, baseline


def _sdvae(tmp: Path):
    from diffusers import AutoencoderKL

    from tokbench_vae.tokenizer import build_vae

    model = AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                          block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4, sample_size=256)
    model.save_pretrained(str(tmp / "sd-vae"))
    return build_vae({"pretrained": str(tmp / "sd-vae")}), None


def _vqgan(tmp: Path):
    from tokbench_vqgan.formats import save_taming
    from tokbench_vqgan.model import VQArchitecture, build_model
    from tokbench_vqgan.tokenizer import build_vqgan

    arch = VQArchitecture(block_out_channels=(128, 128, 256, 256, 512), layers_per_block=2, latent_channels=256,
                          codebook_size=16384, codebook_dim=256, attention_levels=(4,))
    path = tmp / "vqgan" / "last.ckpt"
    save_taming(build_model(arch), arch, path)
    return build_vqgan({"format": "taming", "checkpoint": str(path)}), None


def _rae(tmp: Path):
    from safetensors.torch import save_file

    from tokbench_rae.decoder import GeneralDecoder
    from tokbench_rae.encoder import create_timm_vit
    from tokbench_rae.params import DEFAULT_ENCODER
    from tokbench_rae.sizes import DecoderConfig
    from tokbench_rae.tokenizer import build_rae

    decoder = GeneralDecoder(DecoderConfig(latent_dim=768, hidden=1152, layers=28, heads=16, intermediate=4096, patch_size=16, grid=16))
    torch.save(decoder.state_dict(), tmp / "model.pt")
    torch.save({"mean": torch.zeros(768, 16, 16), "var": torch.ones(768, 16, 16)}, tmp / "stat.pt")
    save_file({k: v.contiguous() for k, v in create_timm_vit(DEFAULT_ENCODER).state_dict().items()}, str(tmp / "encoder.safetensors"))
    return build_rae({"decoder": str(tmp / "model.pt"), "stats": str(tmp / "stat.pt"),
                      "encoder_checkpoint": str(tmp / "encoder.safetensors")}), None


BUILDERS: dict[str, Callable[[Path], tuple]] = {"vtp-large": _vtp, "va-vae-f16d32": _vavae, "sd-vae-f8d4": _sdvae,
                                                  "vqgan-f16-16384": _vqgan, "rae-dinov2b-vitxl": _rae}


def timed(fn, x, device, repeats: int) -> float:
    """Best seconds per call of ``fn(x)`` over ``repeats`` (after one warm-up call)."""
    with torch.no_grad():
        fn(x)
        sync(device)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            sync(device)
            best = min(best, time.perf_counter() - start)
    return best


def peak_memory_mb(device) -> float:
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB on Linux)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(BUILDERS))
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer, baseline = BUILDERS[name](Path(tmp))
        tokenizer.to(device)
        base = baseline() if baseline else None
        if base is not None:
            base[2].to(device)
        for precision in args.precisions.split(","):
            if precision == "bf16" and device.type != "cuda":
                continue
            tokenizer.params = tokenizer.params.model_copy(update={"precision": precision}) if hasattr(tokenizer.params, "precision") else tokenizer.params
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                images = torch.rand(batch, 3, args.resolution, args.resolution, device=device)
                latents = tokenizer.encode(images)
                encode = timed(tokenizer.encode, images, device, args.repeats)
                decode = timed(tokenizer.decode, latents, device, args.repeats)
                row = {"model": name, "precision": precision, "batch": batch, "encode_img_s": batch / encode,
                       "decode_img_s": batch / decode, "peak_memory_mb": peak_memory_mb(device),
                       "latent": list(latents.shape[1:])}
                if base is not None:
                    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
                    with autocast:
                        row["baseline"] = base[0]
                        row["baseline_encode_img_s"] = batch / timed(base[1], images, device, args.repeats)
                    row["encode_vs_baseline"] = row["encode_img_s"] / row["baseline_encode_img_s"]
                rows.append(row)
                print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        del tokenizer, base
    result = {"time": time.strftime("%Y-%m-%d %H:%M"), "device": str(device),
              "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
              "threads": torch.get_num_threads(), "torch": torch.__version__, "resolution": args.resolution, "rows": rows}
    record("codec", result, save=not args.no_record)
    print("\n| model | precision | batch | encode img/s | decode img/s | peak MB | baseline encode img/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r['batch']} | {r['encode_img_s']:.2f} | {r['decode_img_s']:.2f} | "
              f"{r['peak_memory_mb']:.0f} | {r.get('baseline_encode_img_s', float('nan')):.2f} | {r.get('encode_vs_baseline', float('nan')):.2f} |")


if __name__ == "__main__":
    main()
