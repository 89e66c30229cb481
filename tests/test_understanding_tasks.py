"""Zero-shot and linear-probe tasks: classifier construction equals open_clip's, the
tasks compute what they claim, suites are validated, and a rerun reuses the features."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import run_cli
from tokbench.api import Capability, LatentSpec, Tokenizer
from tokbench.config.suite import validate_suite
from tokbench.data.imagenet import imagenet_classnames
from tokbench.data.shapes import ShapesDataset
from tokbench.errors import SuiteError
from tokbench.runtime.context import BuildContext
from tokbench.storage.store import Store
from tokbench.tasks.base import TaskContext
from tokbench.tasks.linear_probe import LinearProbeTask
from tokbench.tasks.understanding_params import LinearProbeParams, ZeroShotParams
from tokbench.tasks.zero_shot import ZeroShotTask
from tokbench.understanding.prompts import resolve_templates, template_set
from tokbench.understanding.zero_shot import build_classifier


class ToyDualEncoder(Tokenizer):
    """Random but fixed: a conv image tower with ViT-style named features and a bag-of-words
    text tower over open_clip's BPE ids, both into a 16-d joint space."""

    capabilities = frozenset({Capability.ENCODE, Capability.DECODE, Capability.IMAGE_FEATURES, Capability.TEXT})
    native_resolution = 16

    def __init__(self):
        import open_clip

        generator = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.visual = torch.nn.Linear(8, 16)
        self.words = torch.nn.EmbeddingBag(49408, 16, mode="mean")
        for module in (self.conv, self.visual, self.words):
            for p in module.parameters():
                p.data = torch.randn(p.shape, generator=generator) * 0.5
        self.bpe = open_clip.get_tokenizer("ViT-B-32")

    def latent_spec(self, image_size):
        return LatentSpec(8, image_size // 4, image_size // 4, 4)

    def encode(self, images):
        return self.conv(images)

    def decode(self, latents):
        raise NotImplementedError

    def image_features(self, images, layers=None):
        tokens = self.conv(images).flatten(2).transpose(1, 2)  # (B, 16 patches, 8)
        out = {"clip": F.normalize(self.visual(tokens.mean(dim=1)), dim=-1), "block-1.patch_mean": tokens.mean(dim=1)}
        for k in range(1, 5):
            out[f"block-{k}.cls"] = torch.tanh(tokens * k).amax(dim=1)
        return {name: out[name] for name in (layers or out)}

    def tokenize(self, texts):
        return self.bpe(list(texts))

    def text_features(self, tokens):
        mask = tokens != 0
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), mask.sum(dim=1).cumsum(0)[:-1]])
        return F.normalize(self.words(tokens[mask], offsets), dim=-1)

    def fingerprint(self):
        return "toy-dual-encoder-v1"

    def modules(self):
        return [self.conv, self.visual, self.words]


class OpenClipFacade(torch.nn.Module):
    """What open_clip's build_zero_shot_classifier calls: encode_text(text, normalize)."""

    def __init__(self, tokenizer: ToyDualEncoder):
        super().__init__()
        self.tokenizer = tokenizer

    def encode_text(self, text, normalize=False):
        features = self.tokenizer.text_features(text)
        return F.normalize(features, dim=-1) if normalize else features


def test_classifier_matches_open_clip_builder():
    from open_clip import build_zero_shot_classifier

    toy = ToyDualEncoder()
    classnames = list(imagenet_classnames()[:23])
    templates = template_set("openai")
    ours = build_classifier(toy, classnames, templates, classes_per_batch=7)
    theirs = build_zero_shot_classifier(OpenClipFacade(toy), toy.bpe, classnames, templates, num_classes_per_batch=10)
    assert ours.shape == theirs.shape == (16, 23)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_template_sets_come_from_open_clip():
    assert len(template_set("openai")) == 80 and template_set("openai")[0] == "a bad photo of a {}."
    assert len(template_set("simple")) == 7
    assert len(imagenet_classnames()) == 1000
    assert resolve_templates("dataset", ("a {}",)) == ("a {}",)
    assert resolve_templates("dataset", "simple") == template_set("simple")
    assert resolve_templates(["x {} y"], "openai") == ("x {} y",)
    with pytest.raises(Exception, match="exactly one"):
        resolve_templates(["no placeholder"], "openai")


def task_context(tmp_path, tokenizer, dataset, train=None):
    build = BuildContext(store=Store(tmp_path / "store"), progress=False)
    return TaskContext(build=build, tokenizer=tokenizer, tokenizer_name="toy", tokenizer_fingerprint=tokenizer.fingerprint(),
                       dataset=dataset, dataset_name="val", unit_key="k", train_dataset=train,
                       train_dataset_name="train" if train is not None else None)


@pytest.mark.parametrize("protocol", ["vtp", "openclip"])
def test_zero_shot_task_scores_the_protocol_view(tmp_path, protocol):
    toy, data = ToyDualEncoder(), ShapesDataset(num_images=36, resolution=32)
    output = ZeroShotTask(ZeroShotParams(protocol=protocol)).run(task_context(tmp_path, toy, data))
    view = data.view("squash-bilinear" if protocol == "vtp" else "clip", 16)  # native resolution 16
    images = torch.from_numpy(np.stack([view.image(i) for i in range(36)])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        features = toy.image_features(images, ["clip"])["clip"]
        logits = 100 * features @ build_classifier(toy, data.classnames, data.zero_shot_templates())
    labels = torch.from_numpy(data.labels())
    expected_top1 = float((logits.argmax(dim=1) == labels).float().mean())
    expected_top5 = float((logits.topk(5, dim=1).indices == labels[:, None]).any(dim=1).float().mean())
    assert output.metrics["top1"] == pytest.approx(expected_top1, abs=1 / 36 + 1e-9)  # fp16 storage may flip a tie
    assert output.metrics["top5"] == pytest.approx(expected_top5, abs=1 / 36 + 1e-9)
    assert output.evaluator["resolution"] == 16 and output.evaluator["num_templates"] == 13
    assert output.details["chance_top1"] == pytest.approx(1 / 12)


def test_linear_probe_task_reports_selected_and_best_on_val(tmp_path):
    toy = ToyDualEncoder()
    train, val = ShapesDataset(split="train", num_images=240, resolution=16), ShapesDataset(num_images=60, resolution=16)
    params = LinearProbeParams(protocol="dinov2", iterations=60, batch_size=64, seeds=[0, 1], minival_per_class=3,
                               learning_rates=[0.01, 1.0])
    output = LinearProbeTask(params).run(task_context(tmp_path, toy, val, train))
    heads = output.details["heads"]
    assert len(heads) == 2 * 4 * 2 and output.details["heads_per_seed"] == 8
    assert output.details["num_minival_images"] == 36 and output.details["num_train_images"] == 204
    for seed, chosen in zip((0, 1), output.details["chosen"]):
        mine = [h for h in heads if h["seed"] == seed]
        best = max(mine, key=lambda h: h["minival_top1"])  # first best, as argmax
        assert (chosen["variant"], chosen["lr"]) == (best["variant"], best["lr"])
    selected = [next(h for h in heads if h["seed"] == c["seed"] and h["variant"] == c["variant"] and h["lr"] == c["lr"])
                for c in output.details["chosen"]]
    assert output.metrics["top1"] == pytest.approx(np.mean([h["val_top1"] for h in selected]))
    best_on_val = np.mean([max(h["val_top1"] for h in heads if h["seed"] == s) for s in (0, 1)])
    assert output.metrics["top1_best_on_val"] == pytest.approx(best_on_val)
    assert output.metrics["top1_best_on_val"] >= output.metrics["top1"]
    assert output.metrics["top1_std"] >= 0
    assert output.evaluator["crop"] == "center-0.875" and output.evaluator["recipe"]["optimizer"] == "sgd"


def test_linear_probe_refuses_mismatched_classes(tmp_path):
    from tokbench.data.imagefolder import ImageFolderDataset
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        Image.new("RGB", (20, 20)).save(tmp_path / "folder" / name / "x.png")
    other = ImageFolderDataset(tmp_path / "folder", resolution=16)
    toy = ToyDualEncoder()
    with pytest.raises(Exception, match="different classes"):
        LinearProbeTask(LinearProbeParams()).run(task_context(tmp_path, toy, ShapesDataset(num_images=12, resolution=16), other))


def test_probe_params_resolve_protocol_defaults():
    mae = LinearProbeParams(protocol="mae").recipe()
    assert (mae.optimizer, mae.batchnorm, mae.epochs, mae.warmup_epochs, mae.variants) == ("lars", True, 90.0, 10.0, ("cls",))
    dino = LinearProbeParams(protocol="dinov2").recipe()
    assert len(dino.learning_rates) == 13 and dino.iterations == 12500 and dino.batch_size == 1024
    assert dino.feature_names() == ("block-1.cls", "block-1.patch_mean", "block-2.cls", "block-3.cls", "block-4.cls")
    assert LinearProbeParams().required_capabilities() == {"encode"}
    assert LinearProbeParams(protocol="mae").required_capabilities() == {"image_features"}
    for bad in (dict(iterations=5, epochs=1.0), dict(variants=["cls"]), dict(protocol="dinov2", variants=["latent"]),
                dict(resolution=64)):
        with pytest.raises(ValueError):
            LinearProbeParams(**bad)


SUITE = """
name: understanding
datasets:
  train: {kind: shapes, params: {split: train, num_images: 48, resolution: 16}}
  val: {kind: shapes, params: {num_images: 24, resolution: 16}}
tokenizers:
  bicubic: {plugin: resample, params: {factor: 4}}
tasks:
"""


def validation_problems(tasks: str) -> list[str]:
    import yaml

    data = yaml.safe_load(SUITE + textwrap.indent(textwrap.dedent(tasks), "  "))
    with pytest.raises(SuiteError) as raised:
        validate_suite(data, source="s.yaml")
    return raised.value.problems


def test_suites_asking_what_a_tokenizer_cannot_do_fail_validation():
    lines = validation_problems("""
    - {kind: zero_shot, dataset: val, tokenizers: [bicubic]}
    - {kind: zero_shot, name: z2, dataset: val}
    - {kind: linear_probe, dataset: val, train_dataset: train, params: {protocol: dinov2}, tokenizers: [bicubic]}
    - {kind: linear_probe, name: p2, dataset: val}
    - {kind: linear_probe, name: p3, dataset: val, train_dataset: val}
    - {kind: reconstruction, dataset: val, train_dataset: train}
    - {kind: linear_probe, name: p4, dataset: val, train_dataset: trian}
    """)
    assert lines == [
        "s.yaml: tasks.0.tokenizers: tokenizer 'bicubic' (resample) lacks image_features, text needed by task 'zero_shot'",
        "s.yaml: tasks.1.tokenizers: no tokenizer in this suite has image_features, text, needed by task 'zero_shot'",
        "s.yaml: tasks.2.tokenizers: tokenizer 'bicubic' (resample) lacks image_features needed by task "
        "'linear_probe' with these params",
        "s.yaml: tasks.3.train_dataset: task 'linear_probe' trains on a second dataset; name one of: train, val "
        "(define it under 'datasets:')",
        "s.yaml: tasks.4.train_dataset: the training and evaluation datasets are both 'val'; train on a separate "
        "split (e.g. shapes with split: train)",
        "s.yaml: tasks.5.train_dataset: task 'reconstruction' does not use a training dataset; remove this field",
        "s.yaml: tasks.6.train_dataset: unknown dataset 'trian'; allowed: train, val (did you mean 'train'?) "
        "(define it under 'datasets:')",
    ]


def test_a_second_run_reuses_the_extracted_features(tmp_path):
    """Features are extracted once: a probe with other head settings on the same inputs
    trains new heads from the stored features and runs no model."""
    base = SUITE + "  - {kind: linear_probe, dataset: val, train_dataset: train, params: {iterations: 20, batch_size: 16, minival_per_class: 1, %s}}\n"
    store = tmp_path / "store"
    for run, extra in enumerate(("learning_rates: [0.1]", "learning_rates: [0.5, 1.0]")):
        path = tmp_path / f"suite{run}.yaml"
        path.write_text(base % extra)
        result = run_cli("run", str(path), "--store", str(store), "--no-progress")
        assert result.returncode == 0, result.stderr
    commits = [json.loads(line) for line in (store / "log" / "commits.jsonl").read_text().splitlines()]
    results = [json.loads(p.read_text()) for p in (store / "results").glob("*.json")]
    assert len(results) == 2
    features = [c for c in commits if c["kind"] == "features"]
    assert len(features) == 2  # train and val tables, committed once, by the first run
    by_lrs = {len(r["evaluator"]["recipe"]["learning_rates"]): r for r in results}
    assert by_lrs[1]["details"]["features_extracted_now"] == {"train": True, "val": True}
    assert by_lrs[2]["details"]["features_extracted_now"] == {"train": False, "val": False}
    assert by_lrs[1]["artifacts"] == by_lrs[2]["artifacts"]
