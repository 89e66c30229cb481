"""Every network evaluation counted: the NFE recorded while sampling equals an independent count of
the model's calls for every sampler and guidance setting, and FlopCounterMode over the whole sampling
loop equals ``nfe x forward FLOPs`` exactly (the analytic forward count is exact for LightningDiT's
matmuls, and the ODE updates are elementwise, which the counter does not count)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tokbench.errors import TokbenchError
from tokbench.generation.flops import forward_flops, sampling_flops_per_image, steps_for_budget, training_flops_per_image
from tokbench.generation.model import LightningDiT, dit_config
from tokbench.generation.transport import NoiseSchedule, sample_latents
from tokbench.tasks.generation import nfe_summary
from tokbench.tasks.generation_params import GenerationParams, patch_for_tokens

CLASSES = 3


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = dit_config("micro/1", 4, input_size=4, num_classes=CLASSES)
    network = LightningDiT(config).eval()
    with torch.no_grad():  # adaLN-Zero starts at a zero velocity: give the network a real one
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return network


class RowCounter:
    """An independent counting wrapper: rows of every call, and rows with the null label."""

    def __init__(self, model):
        self.model, self.rows, self.null_rows = model, 0, 0

    def __call__(self, x, t, y, **kwargs):
        self.rows += x.shape[0]
        self.null_rows += int((y == CLASSES).sum())
        return self.model(x, t, y, **kwargs)


STEPS = 6
GRID = NoiseSchedule(sample_shift=0.3).grid(STEPS)
#: (sampler, cfg scale, interval start, evaluations per image where the settings fix them)
SETTINGS = [
    ("euler", 1.0, 0.0, STEPS),
    ("euler", 2.0, 0.0, 2 * STEPS),
    ("euler", 2.0, 0.5, STEPS + int((GRID[:-1] >= 0.5).sum())),
    ("heun", 1.0, 0.0, 2 * STEPS - 1),
    ("heun", 2.0, 0.0, 2 * (2 * STEPS - 1)),
    ("heun", 2.0, 0.5, None),  # both grid points of a step are tested against the interval
    ("adaptive", 1.0, 0.0, None),
    ("adaptive", 2.0, 0.5, None),
]


@pytest.mark.parametrize("sampler, scale, start, expected", SETTINGS)
def test_recorded_nfe_is_what_the_model_ran_and_what_the_flop_counter_sees(model, sampler, scale, start, expected):
    labels = torch.tensor([0, 1, 2, 1, 0])
    noise = torch.randn(5, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    counter = RowCounter(model)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        _, counted = sample_latents(counter, noise, labels, CLASSES, GRID, sampler, scale, start)
    assert counted["nfe"] * len(labels) == counter.rows
    assert counted["nfe_unconditional"] * len(labels) == counter.null_rows
    assert counted["nfe_conditional"] + counted["nfe_unconditional"] == counted["nfe"]
    if expected is not None:
        assert counted["nfe"] == expected
    if scale == 1.0:
        assert counted["nfe_unconditional"] == 0
    elif start > 0:  # guidance limited to an interval: fewer unconditional than conditional evaluations
        assert 0 < counted["nfe_unconditional"] < counted["nfe_conditional"]
    if sampler == "adaptive":
        assert counted["nfe_conditional"] > 7 and (counted["nfe_conditional"] - 1) % 6 == 0  # 1 + 6 per attempted step
    # exact, not within a tolerance: the analytic forward count equals the counter's, the ODE adds no matmul
    assert flops.get_total_flops() == sampling_flops_per_image(model.config, counted["nfe"]) * len(labels)


def test_nfe_summary_weights_batches_by_size_and_keeps_the_extremes():
    counts = [(4, {"nfe": 50.0, "nfe_conditional": 50.0, "nfe_unconditional": 0.0}),
              (2, {"nfe": 8.0, "nfe_conditional": 8.0, "nfe_unconditional": 0.0})]
    summary = nfe_summary(counts)
    assert summary["nfe"] == pytest.approx((4 * 50 + 2 * 8) / 6) and summary["nfe_max"] == 50 and summary["nfe_min"] == 8


def test_sampling_flops_are_nfe_forward_passes():
    config = dit_config("XL/1", 32)
    assert sampling_flops_per_image(config, 2 * 249) == 2 * 249 * forward_flops(config)
    assert sampling_flops_per_image(config, 0.5) == 0.5 * forward_flops(config)


def test_budget_rounds_to_the_nearest_step():
    config = dit_config("micro/1", 4, input_size=4, num_classes=CLASSES)
    per_step = training_flops_per_image(config) * 16
    assert training_flops_per_image(config) == 3 * forward_flops(config)  # forward + backward, nothing else
    assert steps_for_budget(config, 2.6 * per_step, 16) == 3  # rounding down spent 2 of 2.6 steps (77 %)
    assert steps_for_budget(config, 2.4 * per_step, 16) == 2
    assert steps_for_budget(config, 0.5 * per_step, 16) == 1
    with pytest.raises(ValueError, match="less than half a step"):
        steps_for_budget(config, 0.4 * per_step, 16)


def test_token_counts_must_match_exactly_unless_nearest_is_asked_for():
    assert patch_for_tokens("vae", 16, 16, 256) == 1 and patch_for_tokens("vae", 16, 32, 256) == 2
    assert patch_for_tokens("rae", 768, 16, 64) == 2
    with pytest.raises(TokbenchError) as error:
        patch_for_tokens("bicubic-f4", 3, 12, 64)
    message = str(error.value)
    assert "\n" not in message and "'bicubic-f4'" in message and "3x12x12" in message
    assert "144 (patch 1), 36 (patch 2), 16 (patch 3)" in message and "token_match: nearest" in message
    assert patch_for_tokens("bicubic-f4", 3, 12, 64, "nearest") == 2  # 36 tokens: |36 - 64| < |144 - 64|
    assert patch_for_tokens("x", 3, 12, 90, "nearest") == 1  # a tie (144 vs 36) goes to more tokens
    assert GenerationParams(steps=1).token_match == "exact"


def test_generation_table_shows_cost_next_to_gfid_and_footnotes_a_nearest_token_count():
    from report_fixtures import record

    from tokbench.report.frame import long_frame
    from tokbench.config.suite import TableSpec
    from tokbench.report.tables import build_table

    metrics = {"gfid": 40.0, "total_gflops_per_image": 3.4, "nfe": 32.0, "training_budget_used": 1.004}
    note = "bicubic-f4: 36 tokens, not the target 64 (token_match: nearest; its latent grid is 12x12)"
    records = [record("generation", "generation", "gfid-v2", "vae", "VAE", metrics, plugin="vae"),
               record("generation", "generation", "gfid-v2", "bicubic", "bicubic f4", {**metrics, "gfid": 60.0},
                      plugin="resample", details={"footnote": note})]
    table = build_table(long_frame(records), TableSpec(name="generation", tasks=["generation"]))
    metrics_in_order = [column.metric for column in table.columns]
    assert metrics_in_order[:2] == ["gfid", "total_gflops_per_image"]
    assert {"nfe", "training_budget_used"} <= set(metrics_in_order)
    gfid = metrics_in_order.index("gfid")
    noted = table.cell(table.rows.index("bicubic f4"), gfid)
    assert [table.footnotes[mark] for mark in noted.notes] == [note]
    assert not table.cell(table.rows.index("VAE"), gfid).notes
    assert table.columns[metrics_in_order.index("training_budget_used")].info.format(1.004) == "100.4"
