"""Zero-shot classifiers from a tokenizer's text tower.

The classifier of a class is the mean of its L2-normalised prompt embeddings,
re-normalised (CLIP's recipe, as open_clip's ``build_zero_shot_classifier``); images are
scored by 100 x cosine similarity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from tokbench.api import Tokenizer

LOGIT_SCALE = 100.0


def build_classifier(
    tokenizer: "Tokenizer",
    classnames: Sequence[str],
    templates: Sequence[str],
    classes_per_batch: int = 10,
) -> "torch.Tensor":
    """(embed_dim, num_classes) float32 zero-shot weights on the tokenizer's device.

    ``tokenizer`` needs only ``tokenize(texts)`` and ``text_features(tokens)`` (a
    ``Tokenizer`` with the text capability, or any adapter with those two methods)."""
    import torch
    import torch.nn.functional as F

    if not classnames or not templates:
        raise ValueError("a zero-shot classifier needs at least one class name and one template")
    columns = []
    with torch.no_grad():
        for start in range(0, len(classnames), classes_per_batch):
            names = classnames[start : start + classes_per_batch]
            tokens = tokenizer.tokenize([template.format(name) for name in names for template in templates])
            embeddings = F.normalize(tokenizer.text_features(tokens).float(), dim=-1)
            embeddings = embeddings.view(len(names), len(templates), -1).mean(dim=1)
            columns.append(F.normalize(embeddings, dim=-1))
    return torch.cat(columns).T.contiguous()


def topk_hits(logits: "torch.Tensor", labels: "torch.Tensor", ks: Sequence[int] = (1, 5)) -> dict[int, "torch.Tensor"]:
    """Per row, whether its label is among the k highest logits (k capped at the class count): {k: (N,) bool}."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top == labels.view(-1, 1)
    return {k: hits[:, : min(k, kmax)].any(dim=1) for k in ks}


def topk_accuracy(logits: "torch.Tensor", labels: "torch.Tensor", ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose label is among the k highest logits (k capped at the class count)."""
    return {k: float(hits.float().mean()) for k, hits in topk_hits(logits, labels, ks).items()}


def majority_rate(labels) -> float:
    """Accuracy of always answering the most frequent label: the chance level of unbalanced labels."""
    import numpy as np

    labels = np.asarray(labels)
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0
