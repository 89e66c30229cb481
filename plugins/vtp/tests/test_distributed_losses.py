"""Two CPU ranks (gloo) reproduce the single-process full-batch results.

(a) ClipLoss value and the gradients of tiny linear encoders under DDP-style gradient
averaging; (b) Sinkhorn-Knopp targets and centre updates of DINO and iBOT on uneven
per-rank batches. One spawn of two processes runs every check; each rank saves its
results and the parent compares them with the single-process computation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from tokbench.testing.gloo import free_port, gloo_rank

from tokbench_vtp.pretrain.distributed import all_reduce_mean_, world_info
from tokbench_vtp.pretrain.losses.clip import ClipLoss
from tokbench_vtp.pretrain.losses.dino import DINOLoss
from tokbench_vtp.pretrain.losses.ibot import IBOTPatchLoss

WORLD = 2
CLIP_B = 6  # global CLIP batch, 3 per rank
SSL_ROWS = (3, 5)  # uneven per-rank rows for Sinkhorn-Knopp and centring
CLIP_CASES = {
    "with_grad": {"gather_with_grad": True, "local_loss": False},
    "with_grad_local": {"gather_with_grad": True, "local_loss": True},
    "no_grad": {"gather_with_grad": False, "local_loss": False},
}




def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "images": torch.randn(CLIP_B, 5, generator=g),
        "texts": torch.randn(CLIP_B, 4, generator=g),
        "ssl": torch.randn(sum(SSL_ROWS), 6, generator=g),
    }


def _models() -> tuple[nn.Linear, nn.Linear, nn.Parameter]:
    torch.manual_seed(1)
    return nn.Linear(5, 3), nn.Linear(4, 3), nn.Parameter(torch.tensor(1.5))


def _clip_step(loss_fn: ClipLoss, images: torch.Tensor, texts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss and parameter gradients, averaged over ranks as DDP does."""
    image_enc, text_enc, raw_scale = _models()
    image_features = nn.functional.normalize(image_enc(images), dim=-1)
    text_features = nn.functional.normalize(text_enc(texts), dim=-1)
    loss = loss_fn(image_features, text_features, raw_scale.exp())
    loss.backward()
    out = {"loss": loss.detach().clone()}
    params = {"image_w": image_enc.weight, "text_w": text_enc.weight, "text_b": text_enc.bias, "scale": raw_scale}
    for name, p in params.items():
        assert p.grad is not None
        out[name] = all_reduce_mean_(p.grad.clone())
    return out


def _ssl_results(rows: torch.Tensor, n_local: int) -> dict[str, torch.Tensor]:
    dino = DINOLoss(out_dim=6, center_momentum=0.5)
    ibot = IBOTPatchLoss(patch_out_dim=6, center_momentum=0.5)
    dino.update_center(rows)
    ibot.update_center(rows)
    return {
        "sk_dino": dino.sinkhorn_knopp_teacher(rows, teacher_temp=0.3),
        "sk_ibot": ibot.sinkhorn_knopp_teacher(rows, 0.3, n_masked_patches_tensor=torch.tensor(n_local)),
        "center_dino": dino.center.clone(),
        "center_ibot": ibot.center.clone(),
    }


def _worker(rank: int, port: int, out_dir: str) -> None:
    with gloo_rank(rank, WORLD, port):
        assert world_info() == (rank, WORLD)
        data = _inputs()
        b = CLIP_B // WORLD
        sl = slice(rank * b, (rank + 1) * b)
        results: dict[str, torch.Tensor] = {}
        for case, kwargs in CLIP_CASES.items():
            step = _clip_step(ClipLoss(**kwargs), data["images"][sl], data["texts"][sl])
            results.update({f"{case}/{k}": v for k, v in step.items()})
        start = sum(SSL_ROWS[:rank])
        rows = data["ssl"][start : start + SSL_ROWS[rank]]
        results.update(_ssl_results(rows, SSL_ROWS[rank]))
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, torch.Tensor]]:
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("case", ["with_grad", "with_grad_local"])
def test_clip_two_ranks_equal_full_batch(rank_results: list[dict[str, torch.Tensor]], case: str) -> None:
    data = _inputs()
    full = _clip_step(ClipLoss(**CLIP_CASES[case]), data["images"], data["texts"])
    losses = torch.stack([r[f"{case}/loss"] for r in rank_results])
    if CLIP_CASES[case]["local_loss"]:
        # Each rank holds its rows' share; the mean over ranks is the full-batch loss.
        assert not torch.allclose(losses[0], losses[1])
        assert torch.allclose(losses.mean(), full["loss"], atol=1e-6)
    else:
        assert torch.allclose(losses, full["loss"].expand(WORLD), atol=1e-6)
    for name in ("image_w", "text_w", "text_b", "scale"):
        for r in rank_results:
            assert torch.allclose(r[f"{case}/{name}"], full[name], atol=1e-6), (case, name)


def test_clip_gather_without_grad_scales_encoder_grads(rank_results: list[dict[str, torch.Tensor]]) -> None:
    # OpenCLIP's default: each rank back-propagates only through its own slice, so after
    # DDP averaging the encoder gradients are 1/world_size of the full-batch ones.
    data = _inputs()
    full = _clip_step(ClipLoss(), data["images"], data["texts"])
    r = rank_results[0]
    assert torch.allclose(r["no_grad/loss"], full["loss"], atol=1e-6)
    for name in ("image_w", "text_w", "text_b"):
        assert torch.allclose(r[f"no_grad/{name}"], full[name] / WORLD, atol=1e-6)
    assert torch.allclose(r["no_grad/scale"], full["scale"], atol=1e-6)


def test_sinkhorn_and_centres_two_ranks_equal_concatenated_batch(rank_results: list[dict[str, torch.Tensor]]) -> None:
    rows = _inputs()["ssl"]
    full = _ssl_results(rows, rows.shape[0])
    for key in ("sk_dino", "sk_ibot"):
        gathered = torch.cat([r[key] for r in rank_results])
        assert torch.allclose(gathered, full[key], atol=1e-6), key
    for key in ("center_dino", "center_ibot"):
        for r in rank_results:
            assert torch.allclose(r[key], full[key], atol=1e-6), key
    # The uneven split matters: a per-rank computation would differ.
    local = _ssl_results(rows[: SSL_ROWS[0]], SSL_ROWS[0])
    assert not torch.allclose(local["sk_dino"], full["sk_dino"][: SSL_ROWS[0]], atol=1e-4)
