"""tokbench plugin: RAE (Representation Autoencoders, bytetriper/RAE).

A frozen representation encoder (DINOv2-B with registers through timm, or a tiny VTP-recipe
ViT pretrained here with the SSL loss only) and an MAE-style ViT decoder (``GeneralDecoder``)
in the released checkpoint layout, with per-element latent statistics (``stat.pt``).

Importing this package (or ``tokbench_rae.plugin`` / ``tokbench_rae.params``) does not import torch.
"""
