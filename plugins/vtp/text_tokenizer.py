"""The text tokenizer of VTP's CLIP branch: OpenAI CLIP BPE (vocabulary 49408), as the
official zero-shot script uses it (``open_clip.get_tokenizer('ViT-B-32', context_length=77)``).

Each text becomes ``<start> tokens... <end>`` padded with 0 to ``context_length``; longer
texts are truncated keeping the end-of-text token last, which matters because the text
tower pools the features at the end-of-text token (the largest id in the row).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Sequence

from tokbench.errors import MissingAssetError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: the OpenCLIP model name whose tokenizer is OpenAI's CLIP BPE (what VTP was trained with)
OPEN_CLIP_TOKENIZER = "ViT-B-32"
SOT_TOKEN = 49406
EOT_TOKEN = 49407


class TextTokenizerUnavailable(MissingAssetError, ImportError):
    """open_clip (which ships the BPE vocabulary) is not installed."""


@functools.lru_cache(maxsize=1)
def _bpe() -> Any:
    """The open_clip tokenizer, built once per process (it parses the BPE merges file)."""
    try:
        import open_clip
    except ImportError as error:
        raise TextTokenizerUnavailable(
            "VTP's text tower needs the OpenAI CLIP BPE tokenizer from open_clip, which is not installed: "
            "`pip install open_clip_torch` (its vocabulary ships inside the package; no download needed)"
        ) from error
    return open_clip.get_tokenizer(OPEN_CLIP_TOKENIZER)


def tokenize(texts: Sequence[str], context_length: int = 77) -> "torch.Tensor":
    """(B, context_length) int64 token ids for ``texts`` (a single string counts as one text)."""
    import torch

    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    bad = [type(text).__name__ for text in texts if not isinstance(text, str)]
    if bad:
        raise TypeError(f"tokenize expects strings, got {', '.join(sorted(set(bad)))}")
    if not isinstance(context_length, int) or context_length < 2:
        raise ValueError(f"context_length must be an integer >= 2 (start and end tokens), got {context_length!r}")
    if not texts:
        return torch.zeros(0, context_length, dtype=torch.long)
    return _bpe()(texts, context_length=context_length).to(torch.long)
