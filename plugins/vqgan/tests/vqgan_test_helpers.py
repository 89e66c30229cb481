"""Shared helpers for the vqgan plugin tests: small architectures, official-layout
checkpoint writers (as the released files are laid out), fast training settings."""

from __future__ import annotations

import argparse
import contextlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from tokbench.nn.conv_layouts import convert
from tokbench_vqgan.model import VQArchitecture, build_model
from tokbench_vqgan.params import TinyTrainParams

#: a taming-shaped model, shrunk: 3 levels, attention at the lowest one and in the mid block
SMALL_TAMING = VQArchitecture(block_out_channels=(32, 32, 64), layers_per_block=1, latent_channels=32, codebook_size=64,
                              codebook_dim=8, attention_levels=(2,), mid_attention=True, sample_size=32)
#: a LlamaGen-shaped model, shrunk: l2-normalised codes, beta on the commitment term
SMALL_LLAMAGEN = VQArchitecture(block_out_channels=(32, 64, 64), layers_per_block=1, latent_channels=32, codebook_size=128,
                                codebook_dim=4, attention_levels=(2,), mid_attention=True, l2_norm=True, legacy_beta=False,
                                sample_size=32)


def random_model(arch: VQArchitecture, seed: int = 0, scale: float = 0.05):
    """``build_model(arch)`` with every tensor perturbed (no zero or default-valued weight goes unchecked)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(arch)
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.add_(torch.randn_like(tensor) * scale)
    return model.eval()


def taming_yaml(arch: VQArchitecture, **ddconfig_overrides) -> dict:
    ch = arch.block_out_channels[0]
    ddconfig = {"double_z": False, "z_channels": arch.latent_channels, "resolution": arch.sample_size, "in_channels": 3,
                "out_ch": 3, "ch": ch, "ch_mult": [c // ch for c in arch.block_out_channels],
                "num_res_blocks": arch.layers_per_block,
                "attn_resolutions": [arch.sample_size // 2**i for i in arch.attention_levels], "dropout": 0.0}
    ddconfig.update(ddconfig_overrides)
    return {"model": {"base_learning_rate": 4.5e-06, "target": "taming.models.vqgan.VQModel", "params": {
        "embed_dim": arch.codebook_dim, "n_embed": arch.codebook_size, "monitor": "val/rec_loss", "ddconfig": ddconfig,
        "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                       "params": {"disc_conditional": False, "disc_in_channels": 3, "disc_start": 0, "disc_weight": 0.75,
                                  "disc_num_layers": 2, "codebook_weight": 1.0}}}}}


@contextlib.contextmanager
def fake_lightning(tmp_path: Path):
    """A throw-away ``pytorch_lightning`` package with a ModelCheckpoint class, importable only
    inside the block (the checkpoint reader never imports it: it must cope without)."""
    site = tmp_path / "fake_site"
    package = site / "pytorch_lightning" / "callbacks"
    package.mkdir(parents=True, exist_ok=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "model_checkpoint.py").write_text(textwrap.dedent("""
        class ModelCheckpoint:
            def __init__(self):
                self.best_model_score = 1.5
                self.monitor = "val/rec_loss"
    """))
    sys.path.insert(0, str(site))
    try:
        from pytorch_lightning.callbacks.model_checkpoint import ModelCheckpoint

        yield ModelCheckpoint
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith("pytorch_lightning")]:
            del sys.modules[name]


def write_taming_checkpoint(model, arch: VQArchitecture, run_dir: Path, tmp_path: Path, with_yaml: bool = True,
                            extra: dict | None = None, drop: tuple[str, ...] = ()) -> Path:
    """``<run_dir>/ckpts/last.ckpt`` (+ ``configs/model.yaml``) laid out like the taming releases:
    Lightning keys, ``state_dict`` in the ldm layout with ``loss.*`` entries, a pickled
    Lightning callback class and an argparse Namespace."""
    state = convert(model.state_dict(), "diffusers", "ldm", arch.levels)
    generator = torch.Generator().manual_seed(5)
    state.update({
        "loss.logvar": torch.zeros(()),
        "loss.perceptual_loss.net.slice1.0.weight": torch.randn(64, 3, 3, 3, generator=generator),
        "loss.perceptual_loss.lin0.model.1.weight": torch.randn(1, 64, 1, 1, generator=generator),
        "loss.discriminator.main.0.weight": torch.randn(64, 3, 4, 4, generator=generator),
        "loss.discriminator.main.0.bias": torch.randn(64, generator=generator),
    })
    state.update(extra or {})
    for key in drop:
        del state[key]
    payload = {
        "epoch": 9, "global_step": 1000, "pytorch-lightning_version": "1.0.8",
        "state_dict": state,
        "checkpoint_callback_best_model_path": "logs/ckpts/last.ckpt",
        "hparams": argparse.Namespace(base_learning_rate=4.5e-6, gpus="0,"),
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6, "params": [0]}]}],
        "lr_schedulers": [],
    }
    path = run_dir / "ckpts" / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with fake_lightning(tmp_path) as model_checkpoint:
        payload["callbacks"] = {model_checkpoint: {"best_model_score": torch.tensor(1.5)}}
        payload["checkpoint_callback"] = model_checkpoint()
        torch.save(payload, path)
    if with_yaml:
        (run_dir / "configs").mkdir(parents=True, exist_ok=True)
        (run_dir / "configs" / "model.yaml").write_text(yaml.safe_dump(taming_yaml(arch)))
    return path


def write_llamagen_checkpoint(path: Path, model=None, ema=None, arch: VQArchitecture = SMALL_LLAMAGEN, args=None) -> Path:
    """A ``vq_train.py`` checkpoint: model (+ ema), optimizer, discriminator, steps, args (Namespace),
    the weights in the llamagen layout with the ``codebook_used`` buffer."""

    def layout(m):
        state = convert(m.state_dict(), "diffusers", "llamagen", arch.levels)
        state["quantize.codebook_used"] = torch.arange(65536, dtype=torch.float32) % arch.codebook_size
        return state

    payload = {"model": layout(model), "optimizer": {"state": {}, "param_groups": []},
               "discriminator": {"main.0.weight": torch.zeros(4, 3, 4, 4)}, "optimizer_disc": {}, "steps": 250000,
               "args": args if args is not None else argparse.Namespace(
                   vq_model="VQ-16", codebook_size=arch.codebook_size, codebook_embed_dim=arch.codebook_dim,
                   codebook_l2_norm=True, commit_loss_beta=0.25, entropy_loss_ratio=0.0, image_size=256)}
    if ema is not None:
        payload["ema"] = layout(ema)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def smooth_images(batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 4, size // 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def quick_train_params(**overrides) -> TinyTrainParams:
    """A training run of a few seconds at 32 px."""
    settings = dict(steps=40, batch_size=8, lr=3e-3, warmup_steps=5, resolution=32, crop_size=16,
                    full_resolution_steps=10, num_images=64, holdout_images=8, block_out_channels=(8, 16, 16),
                    latent_channels=8, norm_num_groups=4, codebook_size=64)
    settings.update(overrides)
    return TinyTrainParams(**settings)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from more threads; on a busy machine oversubscription slows them down."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
