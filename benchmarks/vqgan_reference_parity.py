"""Parity of tokbench's vqgan plugin with the reference code (taming-transformers, LlamaGen), same weights.

    git clone https://github.com/CompVis/taming-transformers /tmp/taming          # not part of tokbench
    git clone https://github.com/FoundationVision/LlamaGen /tmp/LlamaGen
    pip install --target /tmp/refenv einops                                        # what taming imports
    python benchmarks/vqgan_reference_parity.py --taming-repo /tmp/taming --llamagen-repo /tmp/LlamaGen \
        --extra-path /tmp/refenv

Builds the reference modules with random weights (every tensor perturbed, so no default-valued
weight goes unchecked): taming's ``Encoder``, ``Decoder`` and ``VectorQuantizer2`` with the
1x1 quant convs (``taming.models.vqgan`` is not imported: it needs pytorch_lightning), and
LlamaGen's ``VQ_16``. Each is saved in its official layout (a Lightning-style ``last.ckpt``
with ``loss.*`` keys + ``configs/model.yaml``; a ``vq_train.py``-style ``.pt`` with ``args``
and the ``codebook_used`` buffer), loaded with ``build_vqgan`` (strict), and compared in fp32
on CPU: pre-quantisation latents, code indices, code vectors and reconstructions (before
clamping; the reference decodes from indices with its own ``get_codebook_entry`` /
``decode_code``, as the plugin does). Appends JSON lines to ``--output``; requirement: max |diff| <= 1e-5.
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
import yaml

SIZES = {
    # the released f16 configuration (taming configs/imagenet_vqgan.yaml, LlamaGen VQ-16)
    "full": dict(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=256, n_embed=16384),
    "small": dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=32, n_embed=512),
}


def _commit(repo: Path) -> str:
    result = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def _perturb(*modules: torch.nn.Module, scale: float = 0.02) -> None:
    with torch.no_grad():
        for module in modules:
            for tensor in module.state_dict().values():
                if tensor.is_floating_point():
                    tensor.add_(torch.randn_like(tensor) * scale)


def _images(batch: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(batch, 3, size // 8, size // 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def _ours(tokenizer, images: torch.Tensor):
    """(latent, indices, codes, reconstruction in [-1, 1] before clamping) through the plugin."""
    model = tokenizer.model
    with torch.no_grad():
        h = tokenizer.encode(images) if tokenizer.params.latent == "pre_quant" else None
        index = tokenizer.encode_indices(images)
        codes = tokenizer.quantizer.lookup(index)
        reconstruction = model.decoder(model.post_quant_conv(codes))
        decoded = tokenizer.decode_indices(index)
    return h, index, codes, reconstruction, decoded


def _compare(name: str, reference: tuple, ours: tuple) -> dict:
    h_ref, index_ref, codes_ref, rec_ref, forward_rec_ref = reference
    h, index, codes, rec, decoded = ours
    return {
        f"{name}_latent_max_abs": float((h_ref - h).abs().max()),
        f"{name}_latent_scale": float(h_ref.abs().max()),
        f"{name}_indices_equal": bool(torch.equal(index_ref.reshape(index.shape), index)),
        f"{name}_indices_mismatched": int((index_ref.reshape(index.shape) != index).sum()),
        f"{name}_codes_max_abs": float((codes_ref - codes).abs().max()),
        f"{name}_reconstruction_max_abs": float((rec_ref - rec).abs().max()),
        f"{name}_reconstruction_scale": float(rec_ref.abs().max()),
        f"{name}_decoded_unit_range_max_abs": float((((rec_ref + 1) / 2).clamp(0, 1) - decoded).abs().max()),
        # the reference's forward() decodes straight-through vectors z + (e - z), which differ from the
        # code e by rounding (~1e-7); shown for information, not a parity criterion
        f"{name}_forward_reconstruction_max_abs": float((forward_rec_ref - rec).abs().max()),
    }


def taming_parity(repo: Path, size: dict, image_size: int, batch: int) -> dict:
    from taming.modules.diffusionmodules.model import Decoder, Encoder
    from taming.modules.vqvae.quantize import VectorQuantizer2

    from tokbench_vqgan.tokenizer import build_vqgan

    levels = len(size["ch_mult"])
    ddconfig = dict(double_z=False, z_channels=size["z_channels"], resolution=image_size, in_channels=3, out_ch=3,
                    ch=size["ch"], ch_mult=list(size["ch_mult"]), num_res_blocks=size["num_res_blocks"],
                    attn_resolutions=[image_size // 2 ** (levels - 1)], dropout=0.0)
    embed_dim = 256 if size is SIZES["full"] else 8
    torch.manual_seed(0)
    encoder, decoder = Encoder(**ddconfig).eval(), Decoder(**ddconfig).eval()
    quant_conv = torch.nn.Conv2d(size["z_channels"], embed_dim, 1)
    post_quant_conv = torch.nn.Conv2d(embed_dim, size["z_channels"], 1)
    quantize = VectorQuantizer2(size["n_embed"], embed_dim, beta=0.25).eval()
    _perturb(encoder, decoder, quant_conv, post_quant_conv, quantize)
    state = {f"{prefix}.{key}": value for prefix, module in (("encoder", encoder), ("decoder", decoder),
                                                             ("quant_conv", quant_conv), ("post_quant_conv", post_quant_conv),
                                                             ("quantize", quantize)) for key, value in module.state_dict().items()}
    state["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4)
    x = _images(batch, image_size)
    with torch.no_grad():
        h = quant_conv(encoder(x * 2 - 1))
        z_q, _, (_, _, index) = quantize(h)
        b, c, hh, ww = z_q.shape
        codes = quantize.get_codebook_entry(index, shape=(b, hh, ww, c))  # the reference's decode-from-indices path
        reconstruction = decoder(post_quant_conv(codes))
        forward_reconstruction = decoder(post_quant_conv(z_q))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "vqgan"
        (run / "ckpts").mkdir(parents=True)
        (run / "configs").mkdir()
        torch.save({"epoch": 0, "global_step": 0, "state_dict": state}, run / "ckpts" / "last.ckpt")
        (run / "configs" / "model.yaml").write_text(yaml.safe_dump({"model": {"target": "taming.models.vqgan.VQModel", "params": {
            "embed_dim": embed_dim, "n_embed": size["n_embed"], "ddconfig": ddconfig,
            "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"}}}}))
        ours = build_vqgan({"format": "taming", "checkpoint": str(run / "ckpts" / "last.ckpt"), "latent": "pre_quant"})
    result = {"tensors": len(state) - 1, "parameters": sum(p.numel() for p in ours.model.parameters())}
    result.update(_compare("taming", (h, index, codes, reconstruction, forward_reconstruction), _ours(ours, x)))
    return result


def llamagen_parity(repo: Path, size: dict, image_size: int, batch: int) -> dict:
    from tokenizer.tokenizer_image import vq_model

    from tokbench_vqgan.tokenizer import build_vqgan

    torch.manual_seed(0)
    if size is SIZES["full"]:
        reference = vq_model.VQ_models["VQ-16"](codebook_size=size["n_embed"], codebook_embed_dim=8).eval()
    else:  # the same classes, shrunk (VQModel hard-codes ch=128)
        reference = vq_model.VQModel(vq_model.ModelArgs(codebook_size=size["n_embed"], encoder_ch_mult=list(size["ch_mult"]),
                                                        decoder_ch_mult=list(size["ch_mult"]), z_channels=size["z_channels"])).eval()
    _perturb(reference)
    with torch.no_grad():  # the codebook as LlamaGen initialises it: l2-normalised rows, then perturbed
        reference.quantize.embedding.weight.copy_(torch.nn.functional.normalize(reference.quantize.embedding.weight, dim=-1)
                                                  + 0.01 * torch.randn_like(reference.quantize.embedding.weight))
    x = _images(batch, image_size)
    with torch.no_grad():
        h = reference.quant_conv(reference.encoder(x * 2 - 1))
        z_q, _, (_, _, index) = reference.quantize(h)
        codes = reference.quantize.get_codebook_entry(index, shape=tuple(z_q.shape))  # decode_code's lookup
        reconstruction = reference.decode_code(index, shape=tuple(z_q.shape))
        forward_reconstruction = reference.decode(z_q)
    args = argparse.Namespace(vq_model="VQ-16", codebook_size=size["n_embed"], codebook_embed_dim=8, codebook_l2_norm=True,
                              commit_loss_beta=0.25, entropy_loss_ratio=0.0, image_size=image_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vq_ds16_c2i.pt"
        torch.save({"model": reference.state_dict(), "optimizer": {}, "discriminator": {}, "steps": 0, "args": args}, path)
        ours = build_vqgan({"format": "llamagen", "checkpoint": str(path), "latent": "pre_quant"})
    result = {"tensors": len(reference.state_dict()), "parameters": sum(p.numel() for p in ours.model.parameters())}
    result.update(_compare("llamagen", (h, index, codes, reconstruction, forward_reconstruction), _ours(ours, x)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taming-repo", type=Path, required=True)
    parser.add_argument("--llamagen-repo", type=Path, required=True)
    parser.add_argument("--extra-path", type=Path, action="append", default=[], help="e.g. where einops is installed")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--which", choices=("taming", "llamagen", "both"), default="both")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "vqgan_parity.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    sys.path[:0] = [str(args.taming_repo), str(args.llamagen_repo), *map(str, args.extra_path)]
    size = SIZES[args.size]
    results = {"size": args.size, "image_size": args.image_size, "batch": args.batch, "dtype": "float32", "device": "cpu",
               "torch": torch.__version__}
    started = time.time()
    if args.which in ("taming", "both"):
        taming = taming_parity(args.taming_repo, size, args.image_size, args.batch)
        results.update({"taming_commit": _commit(args.taming_repo), **{f"taming_{k}" if not k.startswith("taming") else k: v
                                                                       for k, v in taming.items()}})
    if args.which in ("llamagen", "both"):
        llamagen = llamagen_parity(args.llamagen_repo, size, args.image_size, args.batch)
        results.update({"llamagen_commit": _commit(args.llamagen_repo), **{f"llamagen_{k}" if not k.startswith("llamagen") else k: v
                                                                           for k, v in llamagen.items()}})
    results["seconds"] = round(time.time() - started, 1)
    print(json.dumps(results, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("a") as handle:
        handle.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
