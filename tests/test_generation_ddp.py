"""DiT training under DDP: two gloo ranks on CPU take the same steps as one process with the
same global batch (same losses, same weights), and only rank 0 writes the checkpoint."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from test_generation_train import trainer

from tokbench.testing.gloo import free_port, gloo_rank

WORLD = 2
STEPS = 4


def _worker(rank: int, port: int, out_dir: str) -> None:
    from pathlib import Path

    with gloo_rank(rank, WORLD, port):
        run = trainer(Path(out_dir) / "work", steps=STEPS, grad_clip=1.0)
        history = [run.train_step() for _ in range(STEPS)]
        run.save()
        torch.save({"history": history, "model": run.model.state_dict(), "ema": run.ema.state_dict(),
                    "world": run.world}, Path(out_dir) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("dit-ddp")
    mp.spawn(_worker, args=(free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return out_dir, [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def test_two_ranks_take_the_single_process_steps(ranks):
    out_dir, results = ranks
    torch.set_num_threads(1)
    single = trainer(steps=STEPS, grad_clip=1.0)
    history = [single.train_step() for _ in range(STEPS)]
    assert all(r["world"] == WORLD for r in results)
    for rank in results:
        for ours, theirs in zip(rank["history"], history):
            assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5, abs=1e-6)
            assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-4)
        for name, tensor in single.model.state_dict().items():
            torch.testing.assert_close(rank["model"][name], tensor, rtol=1e-5, atol=1e-6)
        for name, tensor in single.ema.state_dict().items():
            torch.testing.assert_close(rank["ema"][name], tensor, rtol=1e-5, atol=1e-6)
    # the ranks hold identical weights (DDP keeps them in lock step)
    for name, tensor in results[0]["model"].items():
        assert torch.equal(results[1]["model"][name], tensor)
    assert (out_dir / "work" / "checkpoint.pt").is_file()


def test_global_batch_must_split_evenly_across_ranks(monkeypatch):
    import tokbench.generation.train as train

    monkeypatch.setattr(train, "_process_group", lambda: (0, 3))
    with pytest.raises(ValueError, match="batch size 16 is not divisible by the 3 ranks"):
        trainer(steps=1)
