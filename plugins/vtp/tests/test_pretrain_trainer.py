"""Stage-1/stage-2 training: every branch trains, resume is exact, DDP equals one process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tokbench.testing.gloo import free_port
from tokbench_vtp.pretrain.recipe import PretrainRecipe, load_recipe
from tokbench_vtp.pretrain.trainer import CHECKPOINT, StopRequested, VTPPretrainer

from vtp_test_helpers import MICRO


def micro_recipe(**overrides) -> PretrainRecipe:
    base = {
        "name": "micro",
        "architecture": MICRO.model_dump(),
        "steps": 4,
        "data": {"kind": "shapes", "num_images": 32, "resolution": 32},
        "batch": {"clip": 8, "ssl": 4, "rec": 4},
        "crops": {"image_size": 32, "global_size": 32, "local_size": 16, "n_local": 1,
                  "global_scale": [0.5, 1.0], "local_scale": [0.2, 0.5]},
        "loss": {"perceptual": 0.0, "teacher_temp_warmup_steps": 2},
        "head": {"prototypes": 32, "hidden": 32, "bottleneck": 16, "freeze_last_layer_steps": 1},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "drop": {"clip": 0.25, "ssl": 0.25, "rec": 0.25},
        "stage2": {"steps": 2, "batch": 4, "perceptual": 0.0},
        "precision": "fp32",
        "checkpoint_every": 0,
        "log_every": 1,
    }
    return load_recipe(base, overrides)


def weights(trainer: VTPPretrainer) -> dict[str, torch.Tensor]:
    state = {f"objective.{k}": v for k, v in trainer.objective.state_dict().items()}
    state.update({f"teacher.{k}": v for k, v in trainer.teacher_trunk.state_dict().items()})
    if trainer.stage2 is not None:
        state.update({f"disc.{k}": v for k, v in trainer.stage2.discriminator.state_dict().items()})
    return state


def test_every_branch_gets_gradients_and_the_loss_parts_are_logged(tmp_path):
    trainer = VTPPretrainer(micro_recipe(), tmp_path / "run")
    parts = trainer.forward_backward()
    for name in ("clip", "dino", "ibot", "koleo", "rec", "total"):
        assert name in parts and torch.isfinite(torch.tensor(parts[name])), name
    assert 0.0 < parts["dino_teacher_entropy"] <= 1.0
    model = trainer.model
    for name, param in {
        "patch_embed": model.trunk.patch_embed.proj.weight,
        "bottleneck (rec only)": model.trunk.feature_bottleneck.weight,
        "decoder": model.pixel_decoder.proj_out.weight,
        "text": model.text_transformer.resblocks[0].mlp.c_fc.weight,
        "visual_proj (clip only)": model.visual_proj.weight,
        "logit_scale": model.logit_scale,
        "dino head mlp": trainer.head.mlp[0].weight if hasattr(trainer.head, "mlp") else next(trainer.head.parameters()),
        "mask token (iBOT)": model.trunk.mask_token,
    }.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    before = {k: v.clone() for k, v in trainer.teacher_trunk.state_dict().items()}
    trainer.apply_update()
    # The EMA teacher moved towards the student (momentum < 1) but is not the student.
    after = trainer.teacher_trunk.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(after["blocks.0.attn.qkv.weight"], model.trunk.blocks[0].attn.qkv.weight)


def test_a_collapsed_dino_branch_is_reported_once_after_the_warm_up(tmp_path):
    messages: list[str] = []
    trainer = VTPPretrainer(micro_recipe(), tmp_path / "run", log=messages.append)
    trainer._check_collapse({"dino_teacher_entropy": 0.99})  # step 0: still in the temperature warm-up
    trainer.step = trainer.teacher_temp_warmup
    trainer._check_collapse({"dino_teacher_entropy": 0.5})  # a peaked teacher: healthy
    assert messages == []
    trainer._check_collapse({"dino_teacher_entropy": 0.99})
    trainer._check_collapse({"dino_teacher_entropy": 0.99})
    assert len(messages) == 1 and "collapsed" in messages[0] and "head.prototypes" in messages[0]


@pytest.mark.parametrize("stop_at", [3, 5])  # inside stage 1, and inside stage 2
def test_resume_is_exact(tmp_path, stop_at):
    recipe = micro_recipe()
    straight = VTPPretrainer(recipe, tmp_path / "straight")
    straight.fit()
    interrupted = VTPPretrainer(recipe, tmp_path / "resumed")
    with pytest.raises(StopRequested):
        interrupted.fit(stop_after=stop_at)
    assert (tmp_path / "resumed" / CHECKPOINT).is_file()
    resumed = VTPPretrainer(recipe, tmp_path / "resumed")
    assert resumed.step == stop_at
    resumed.fit()
    expected, actual = weights(straight), weights(resumed)
    assert expected.keys() == actual.keys()
    different = [k for k in expected if not torch.equal(expected[k], actual[k])]
    assert different == []
    # ... and so does the loss history.
    assert [h for h in straight.history if h.get("kind") == "train"] == [h for h in resumed.history if h.get("kind") == "train"]
    # The exported official checkpoints hold identical tensors too.
    from safetensors.torch import load_file

    exported = [load_file(str(tmp_path / run / "model.safetensors")) for run in ("straight", "resumed")]
    assert exported[0].keys() == exported[1].keys()
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[0])


def test_resuming_with_another_recipe_is_refused(tmp_path):
    trainer = VTPPretrainer(micro_recipe(), tmp_path / "run")
    with pytest.raises(StopRequested):
        trainer.fit(stop_after=1)
    with pytest.raises(ValueError, match="different recipe"):
        VTPPretrainer(micro_recipe(seed=3), tmp_path / "run")


def test_stage2_trains_only_the_decoder_and_exports_the_official_format(tmp_path):
    from tokbench_vtp.checkpoint import load_official

    trainer = VTPPretrainer(micro_recipe(steps=1, stage2={"steps": 2, "batch": 4, "gan_start": 0, "perceptual": 0.0}), tmp_path / "run")
    trainer.train_step()
    trunk_before = {k: v.clone() for k, v in trainer.model.trunk.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in trainer.model.pixel_decoder.state_dict().items()}
    summary = trainer.fit()
    assert summary["steps"] == 3
    assert all(torch.equal(trunk_before[k], v) for k, v in trainer.model.trunk.state_dict().items())
    assert any(not torch.equal(decoder_before[k], v) for k, v in trainer.model.pixel_decoder.state_dict().items())
    stage2_records = [h for h in trainer.history if "stage2_d" in h]
    assert stage2_records and all("stage2_gan_weight" in h for h in stage2_records)
    loaded = load_official(tmp_path / "run")
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.get_reconstruction_latents(images), trainer.model.eval().get_reconstruction_latents(images))


def test_stage2_needs_only_a_stage1_model_not_its_trainer(tmp_path):
    """Stage 2 on a model read back from a stage-1 checkpoint (official format), with no trainer."""
    from tokbench_vtp.checkpoint import load_official, save_official
    from tokbench_vtp.pretrain.stage2 import DecoderGANStage

    recipe = micro_recipe(steps=1, stage2={"steps": 2, "batch": 4, "gan_start": 0, "perceptual": 0.0})
    trainer = VTPPretrainer(recipe, tmp_path / "run")
    trainer.train_step()
    save_official(trainer.model, tmp_path / "stage1")
    model = load_official(tmp_path / "stage1")
    trunk_before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in model.pixel_decoder.state_dict().items()}
    stage = DecoderGANStage(recipe, model.trunk, model.pixel_decoder, None, device=torch.device("cpu"))
    records = [stage.train_step(recipe.steps + i) for i in range(2)]
    assert all("stage2_d" in r for r in records) and records[-1]["step"] == recipe.steps + 2
    assert all(torch.equal(trunk_before[k], v) for k, v in model.trunk.state_dict().items())
    assert any(not torch.equal(decoder_before[k], v) for k, v in model.pixel_decoder.state_dict().items())


def test_dino_feature_discriminator_option(tmp_path):
    trainer = VTPPretrainer(micro_recipe(steps=1, stage2={"steps": 1, "batch": 4, "discriminator": "dino", "perceptual": 0.0}), tmp_path / "run")
    trainer.fit()
    discriminator = trainer.stage2.discriminator
    frozen = [p for p in discriminator.parameters() if not p.requires_grad]
    assert frozen, "the trunk features of the DINO discriminator are frozen"


def _ddp_worker(rank: int, world_size: int, port: int, run_root: str, out: str, local_loss: bool) -> None:
    from tokbench.testing.gloo import gloo_rank

    with gloo_rank(rank, world_size, port):
        trainer = VTPPretrainer(_ddp_recipe(local_loss), Path(run_root) / f"rank{rank}")
        parts = trainer.forward_backward()
        grads = {n: p.grad.clone() for n, p in trainer.objective.named_parameters() if p.grad is not None}
        torch.save({"parts": parts, "grads": grads}, Path(out) / f"rank{rank}.pt")


def _ddp_recipe(local_loss: bool) -> PretrainRecipe:
    # Per-rank randomness that is *meant* to differ from one process (iBOT masks, sample drop,
    # KoLeo's per-rank neighbours) is switched off so the two runs see the same computation.
    return micro_recipe(
        batch={"clip": 8, "ssl": 8, "rec": 8},
        masking={"probability": 0.0},
        drop={"clip": 0.0, "ssl": 0.0, "rec": 0.0},
        loss={"perceptual": 0.0, "koleo": 0.0, "ibot": 0.0, "clip_local_loss": local_loss},
    )


@pytest.mark.slow
@pytest.mark.parametrize("local_loss", [True, False])
def test_two_process_ddp_matches_one_process_on_the_same_global_batch(tmp_path, local_loss):
    import torch.multiprocessing as mp

    single = VTPPretrainer(_ddp_recipe(local_loss), tmp_path / "single")
    parts = single.forward_backward()
    grads = {n: p.grad.clone() for n, p in single.objective.named_parameters() if p.grad is not None}
    os.environ.pop("WORLD_SIZE", None)
    mp.start_processes(_ddp_worker, args=(2, free_port(), str(tmp_path), str(tmp_path), local_loss), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    # Logged losses are the mean over ranks, which is the single-process loss (CLIP: each rank
    # scores its rows against all gathered columns, so the two shares average to the global loss).
    for name in ("clip", "dino", "rec", "total"):
        assert ranks[0]["parts"][name] == pytest.approx(parts[name], rel=1e-5), name
        assert ranks[1]["parts"][name] == pytest.approx(parts[name], rel=1e-5), name
    assert grads.keys() == ranks[0]["grads"].keys()
    for name, grad in grads.items():
        scale = grad.abs().max().item()  # 0 only for the mask token (no masks here)
        for rank in ranks:
            # Same gradient up to float summation order (relative to the tensor's scale).
            assert (rank["grads"][name] - grad).abs().max().item() <= 1e-5 * scale + 1e-12, name


def test_gradient_accumulation_splits_the_global_batch(tmp_path):
    """batch.accumulation=2: each optimizer step consumes two micro-batches of half the global batch,
    and the reconstruction gradient (a plain batch mean) equals the full-batch one."""
    common = {"loss": {"perceptual": 0.0, "clip": 0.0, "ssl": 0.0, "rec": 1.0}, "drop": {"rec": 0.0},
              "batch": {"clip": 8, "ssl": 0, "rec": 8}}
    whole = VTPPretrainer(micro_recipe(**common), tmp_path / "whole")
    split = VTPPretrainer(micro_recipe(**{**common, "batch": {"clip": 8, "ssl": 0, "rec": 8, "accumulation": 2}}),
                          tmp_path / "split")
    whole.forward_backward()
    split.forward_backward()
    assert split.loader.state_dict()["step"] == 2 and whole.loader.state_dict()["step"] == 1
    weight = "model.pixel_decoder.proj_out.weight"
    grads = [dict(t.objective.named_parameters())[weight].grad for t in (whole, split)]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)


def test_lpips_without_its_weights_is_an_error_not_a_silent_skip(tmp_path, monkeypatch):
    from tokbench.metrics.errors import MetricUnavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.delenv("TOKBENCH_LPIPS_VGG", raising=False)
    with pytest.raises(MetricUnavailable, match="vgg16-397923af.pth"):
        VTPPretrainer(micro_recipe(loss={"perceptual": 1.0}), tmp_path / "run")


def test_branch_batches_must_split_evenly_over_ranks():
    recipe = micro_recipe(batch={"clip": 16, "ssl": 4, "rec": 8})
    assert recipe.per_rank_batches(2) == {"clip": 8, "ssl": 2, "rec": 4}
    with pytest.raises(ValueError, match=r"batch.ssl 4 must be divisible by world size x batch.accumulation = 8"):
        recipe.per_rank_batches(8)
    with pytest.raises(ValueError, match=r"batch.rec is 0 but loss.rec is"):
        micro_recipe(batch={"clip": 8, "ssl": 4, "rec": 0}).per_rank_batches(1)


def test_stage2_lpips_is_checked_before_stage1_starts(tmp_path, monkeypatch):
    from tokbench.metrics.errors import MetricUnavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.delenv("TOKBENCH_LPIPS_VGG", raising=False)
    with pytest.raises(MetricUnavailable):
        VTPPretrainer(micro_recipe(stage2={"steps": 1, "batch": 4, "perceptual": 1.0}), tmp_path / "run")


def test_compile_option_compiles_what_the_trunk_runs(tmp_path, monkeypatch):
    calls = []

    def fake_compile(function, **kwargs):
        def wrapped(*args, **inner):
            calls.append(function.__name__)
            return function(*args, **inner)

        return wrapped

    monkeypatch.setattr(torch, "compile", fake_compile)
    trainer = VTPPretrainer(micro_recipe(compile=True), tmp_path / "run")
    trainer.forward_backward()
    assert calls.count("forward_features") >= 3  # CLIP, SSL and reconstruction passes
