"""Patch PCA: a tokenizer fitted on a suite dataset (docs/write-a-plugin.md, second example)."""
