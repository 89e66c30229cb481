"""Encode / decode throughput and peak memory of every plugin's released-size model at 256².

    .venv/bin/python benchmarks/bench_codec.py                          # CPU: batch 1 and 4, fp32
    .venv/bin/python benchmarks/bench_codec.py --batch-sizes 1,4,16,64,256 --precisions fp32,bf16   # GPU

Each model is built with random weights at its released size (VTP-L, VA-VAE f16d32, SD-VAE f8d4,
taming VQGAN f16-16384, RAE DINOv2-B + ViT-XL), written in its official checkpoint format and
loaded through its plugin, so the measured path is exactly what a suite runs. Weights do not
change speed. Each model is timed beside a baseline in the same process:

- VTP-L encode vs timm's ViT-L/16 ``forward_features`` at 256² (same width and depth);
- VA-VAE with the LDM reference numerics (bit-exact fp32) vs diffusers' stock processors (SDPA,
  fused SiLU) on the same weights: the price of exact parity;
- VAE / VQGAN decoders: the memory format the plugin picks for the device (channels-last on
  GPU, NCHW on CPU) against the other one, on the largest batch;
- SD-VAE / VQGAN / RAE encode: the plugin path only (their baselines are the same library calls).

Writes one JSON line per run to ``benchmarks/results/codec.jsonl`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import add_common_options, best_seconds, comparison, peak_memory_mb, record, setup  # noqa: E402


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


def _conv_model(tokenizer) -> torch.nn.Module | None:
    """The conv autoencoder of a VAE / VQGAN tokenizer (channels-last applies to these only)."""
    return getattr(tokenizer, "model", None) if type(tokenizer).__name__ in ("VAETokenizer", "VQGANTokenizer") else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(BUILDERS))
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--precisions", default="fp32", help="fp32,bf16 (bf16 = the plugins' autocast)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    add_common_options(parser)
    args = parser.parse_args(argv)
    device = setup(args)
    rows, comparisons = [], []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer, baseline = BUILDERS[name](Path(tmp))
        tokenizer.to(device)
        base = baseline() if baseline else None
        if base is not None:
            base[2].to(device)
        for precision in args.precisions.split(","):
            # the plugins read their precision from params (VAE, VQGAN) or keep a copy (VTP, RAE);
            # they autocast to bf16 on GPU only
            if hasattr(tokenizer.params, "precision"):
                tokenizer.params = tokenizer.params.model_copy(update={"precision": precision})
            if hasattr(tokenizer, "precision"):
                tokenizer.precision = precision
            autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                        else torch.autocast(device.type, enabled=False))
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                images = torch.rand(batch, 3, args.resolution, args.resolution, device=device)
                with torch.no_grad():
                    latents = tokenizer.encode(images)
                    encode = best_seconds(lambda: tokenizer.encode(images), device, args.repeats)
                    decode = best_seconds(lambda: tokenizer.decode(latents), device, args.repeats)
                row = {"model": name, "precision": precision, "batch": batch, "encode_img_s": batch / encode,
                       "decode_img_s": batch / decode, "peak_memory_mb": peak_memory_mb(device),
                       "latent": list(latents.shape[1:])}
                if base is not None:
                    with torch.no_grad(), autocast:
                        base_encode = best_seconds(lambda: base[1](images), device, args.repeats)
                    comparisons.append(comparison(f"{name} encode, {precision}, batch {batch}", row["encode_img_s"],
                                                  base[0], batch / base_encode, "img/s"))
                model = _conv_model(tokenizer)
                if model is not None and batch == max(int(b) for b in args.batch_sizes.split(",")):
                    # the memory format the plugin does not use on this device, as the baseline
                    chosen = torch.channels_last if device.type == "cuda" else torch.contiguous_format
                    other = torch.contiguous_format if chosen == torch.channels_last else torch.channels_last
                    torch.nn.Module.to(model, memory_format=other)
                    with torch.no_grad():
                        other_decode = best_seconds(lambda: tokenizer.decode(latents), device, args.repeats)
                    torch.nn.Module.to(model, memory_format=chosen)
                    label = "channels-last" if other == torch.channels_last else "NCHW (contiguous)"
                    comparisons.append(comparison(f"{name} decode, {precision}, batch {batch} (plugin's memory format)",
                                                  row["decode_img_s"], f"{label} weights", batch / other_decode, "img/s"))
                rows.append(row)
                print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        tokenizer = base = None  # free the model before building the next
    result = record("codec", {"resolution": args.resolution, "batch_sizes": args.batch_sizes, "precisions": args.precisions,
                              "weights": "random, released sizes, loaded through each plugin's official format"},
                    {"rows": rows}, comparisons, device, save=not args.no_record)
    print("\n| model | precision | batch | encode img/s | decode img/s | peak MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r['batch']} | {r['encode_img_s']:.2f} | {r['decode_img_s']:.2f} | "
              f"{r['peak_memory_mb']:.0f} |")
    return result


if __name__ == "__main__":
    main()
