"""tokbench plugin: VTP (MiniMax "Towards Scalable Pre-training of Visual Tokenizers").

Two halves:

- ``tokbench_vtp.model``: the VTP model with the exact module and key names of the
  official ``model.safetensors`` checkpoints (VTP-S/B/L f16d64), the official
  inference methods, and the tokbench ``Tokenizer`` contract (``tokenizer.py``).
- ``tokbench_vtp.pretrain``: the pretraining implementation the authors did not
  release: CLIP + DINO/iBOT(+KoLeo) + reconstruction (stage 1), then a GAN
  fine-tune of the pixel decoder (stage 2), resumable and distributed.

Importing this package (or ``plugin``/``params``/``pretrain.recipe``) does not import torch.
"""
