"""tokbench plugin: VQGAN-family tokenizers (taming VQGAN, LlamaGen VQ) through diffusers ``VQModel``.

Loads the released taming Lightning ``.ckpt`` (+ ``model.yaml``) and LlamaGen ``.pt``
checkpoints strictly, and trains a ``tiny`` preset from scratch on the built-in
``shapes`` dataset so the quickstart runs fully offline.

Importing this package (or ``tokbench_vqgan.plugin`` / ``tokbench_vqgan.params`` /
``tokbench_vqgan.presets``) does not import torch or diffusers.
"""
