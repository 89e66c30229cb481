"""Parity of the ``rae`` plugin with the reference RAE (bytetriper/RAE), same random weights, fp32 CPU.

    git clone https://github.com/bytetriper/RAE /tmp/RAE                       # not part of tokbench
    pip install --target /tmp/raeref "transformers==4.56.2"                   # RAE's pinned version
    PYTHONPATH=/tmp/raeref python benchmarks/rae_reference_parity.py --reference-repo /tmp/RAE

(``--reference-repo`` may also be a directory holding the repository's ``src`` and ``configs``,
e.g. from ``git archive HEAD src configs``; then name the commit with ``--reference-commit``.)

The reference's own ``stage1.RAE`` is built, unmodified, with:

- encoder ``Dinov2withNorm`` over an HF ``Dinov2WithRegistersModel`` in the
  ``facebook/dinov2-with-registers-base`` configuration (ViT-B/14, 4 registers, 518 px grid) with
  random weights, every tensor perturbed (CLS, registers, mask token, position table, layer scales);
- decoder ``GeneralDecoder`` from ``configs/decoder/<size>/config.json`` (patch 16), weights
  perturbed, saved as ``model.pt`` (a raw state dict, the released layout) and loaded by the
  reference's ``pretrained_decoder_path``;
- a random per-element ``stat.pt``.

No network is used: ``from_pretrained`` of the encoder returns the random model, the image
processor is ImageNet mean/std (DINOv2's ``preprocessor_config.json``) and the encoder config
is built locally. The plugin then loads the *files*: the HF encoder weights as
``encoder_checkpoint`` (converted to timm's layout by the plugin), ``model.pt`` and ``stat.pt``,
through ``build_rae``. Compared: the latent (reference ``RAE.encode`` = normalised; the plugin's
raw latent normalised with ``latent_normalization()``), the reconstruction (``RAE.decode`` of the
same normalised latent vs ``decode`` before clamping), and the decoder's sin-cos table against
MAE's ``get_2d_sincos_pos_embed``. Requirement: max abs difference <= 1e-5.
Writes one JSON line per decoder size to ``benchmarks/results/rae_parity.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "rae_parity.jsonl"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _commit(repo: Path) -> str:
    result = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown (not a git checkout)"


def _perturb(module: torch.nn.Module, scale: float = 0.02, skip: tuple[str, ...] = ()) -> None:
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point() and not name.startswith(skip):
                tensor.add_(torch.randn_like(tensor) * scale)


def reference_rae(repo: Path, hf_encoder, decoder_size: str, decoder_file: Path, stats_file: Path):
    """The reference ``stage1.RAE`` with its hub look-ups answered locally."""
    import transformers

    from stage1 import RAE
    from stage1.encoders import dinov2 as ref_dinov2

    class Processor:
        image_mean, image_std = IMAGENET_MEAN, IMAGENET_STD

    real_config = transformers.AutoConfig.from_pretrained

    def config(path, *args, **kwargs):
        return hf_encoder.config if "dinov2" in str(path) else real_config(path, *args, **kwargs)

    ref_dinov2.Dinov2WithRegistersModel.from_pretrained = classmethod(lambda cls, *a, **k: hf_encoder)
    transformers.AutoImageProcessor.from_pretrained = lambda *a, **k: Processor()
    import stage1.rae as ref_rae_module

    ref_rae_module.AutoImageProcessor.from_pretrained = lambda *a, **k: Processor()
    ref_rae_module.AutoConfig.from_pretrained = config
    rae = RAE(
        encoder_cls="Dinov2withNorm", encoder_config_path="facebook/dinov2-with-registers-base", encoder_input_size=224,
        encoder_params={"dinov2_path": "facebook/dinov2-with-registers-base", "normalize": True},
        decoder_config_path=str(repo / "configs" / "decoder" / decoder_size), decoder_patch_size=16,
        pretrained_decoder_path=str(decoder_file), noise_tau=0.0, reshape_to_2d=True,
        normalization_stat_path=str(stats_file),
    )
    return rae.eval()


def run(repo: Path, decoder_size: str, batch: int, commit: str | None = None) -> dict:
    from safetensors.torch import save_file
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    from tokbench_rae.decoder import sincos_table
    from tokbench_rae.tokenizer import build_rae

    if str(repo / "src") not in sys.path:
        sys.path.insert(0, str(repo / "src"))
    torch.manual_seed(0)
    config = Dinov2WithRegistersConfig(image_size=518, patch_size=14, num_register_tokens=4, hidden_size=768,
                                       num_hidden_layers=12, num_attention_heads=12, layerscale_value=1.0)
    hf_encoder = Dinov2WithRegistersModel(config).eval()
    _perturb(hf_encoder)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        encoder_file = tmp / "model.safetensors"
        save_file({k: v.contiguous() for k, v in hf_encoder.state_dict().items()}, str(encoder_file))

        # The decoder: the reference's own GeneralDecoder at the requested size, perturbed, saved raw.
        from stage1.decoders.decoder import GeneralDecoder as RefDecoder
        from stage1.decoders.utils import ViTMAEConfig

        decoder_config = ViTMAEConfig.from_pretrained(str(repo / "configs" / "decoder" / decoder_size))
        decoder_config.hidden_size, decoder_config.patch_size, decoder_config.image_size = 768, 16, 256
        ref_decoder = RefDecoder(decoder_config, num_patches=256)
        _perturb(ref_decoder, skip=("decoder_pos_embed",))
        decoder_file = tmp / "model.pt"
        torch.save(ref_decoder.state_dict(), decoder_file)
        stats_file = tmp / "stat.pt"
        torch.save({"mean": torch.randn(768, 16, 16) * 0.1, "var": torch.rand(768, 16, 16) + 0.5}, stats_file)

        rae = reference_rae(repo, hf_encoder, decoder_size, decoder_file, stats_file)
        started = time.time()
        ours = build_rae({"decoder": str(decoder_file), "stats": str(stats_file), "encoder_checkpoint": str(encoder_file)})
        load_seconds = time.time() - started

        generator = torch.Generator().manual_seed(1)
        coarse = torch.rand(batch, 3, 32, 32, generator=generator)
        images = torch.nn.functional.interpolate(coarse, size=256, mode="bicubic", align_corners=False).clamp(0, 1)
        mean, std = ours.latent_normalization()
        with torch.no_grad():
            ref_latent = rae.encode(images)
            raw = ours.encode(images)
            our_latent = (raw - mean) / std
            ref_images = rae.decode(ref_latent)
            # the plugin's decode before its final clamp (the reference does not clamp)
            from tokbench_rae.pipeline import decode_pixels

            our_images = decode_pixels(ours.decoder, raw)
            our_from_ref = decode_pixels(ours.decoder, ref_latent * std + mean)

    from stage1.decoders.decoder import get_2d_sincos_pos_embed

    table = torch.from_numpy(get_2d_sincos_pos_embed(1152, 16, add_cls_token=True)).float()
    return {
        "decoder_size": decoder_size,
        "reference_commit": commit or _commit(repo),
        "transformers": __import__("transformers").__version__,
        "timm": __import__("timm").__version__,
        "torch": torch.__version__,
        "batch": batch,
        "decoder_tensors": len(ref_decoder.state_dict()),
        "decoder_parameters": sum(t.numel() for t in ref_decoder.state_dict().values()),
        "latent_shape": list(ref_latent.shape),
        "latent_max_abs": float((ref_latent - our_latent).abs().max()),
        "latent_scale": float(ref_latent.abs().max()),
        "raw_latent_max_abs": float((ref_latent * std + mean - raw).abs().max()),
        "reconstruction_max_abs": float((ref_images - our_images).abs().max()),
        "decoder_only_max_abs": float((ref_images - our_from_ref).abs().max()),
        "reconstruction_scale": float(ref_images.abs().max()),
        "sincos_table_max_abs": float((table - torch.from_numpy(sincos_table(1152, 16)).float()).abs().max()),
        "plugin_load_seconds": round(load_seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-repo", type=Path, required=True)
    parser.add_argument("--sizes", nargs="+", default=["ViTB", "ViTXL"], choices=["ViTB", "ViTL", "ViTXL"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--reference-commit", default=None, help="commit of an exported (non-git) reference directory")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to the results file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    for size in args.sizes:
        result = run(args.reference_repo, size, args.batch, args.reference_commit)
        print(json.dumps(result))
        if not args.no_write:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            with open(RESULTS, "a") as handle:
                handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
