"""tokbench plugin: KL-VAE tokenizers (diffusers ``AutoencoderKL``).

Loads pretrained VAEs (SD-VAE and friends) from a local diffusers directory or
the Hugging Face hub, and trains a ``tiny`` preset from scratch on the built-in
``shapes`` dataset so the quickstart runs fully offline.

Importing this package (or ``tokbench_vae.plugin`` / ``tokbench_vae.params``)
does not import torch or diffusers.
"""
