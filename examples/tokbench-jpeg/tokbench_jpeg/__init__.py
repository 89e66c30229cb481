"""Downsample + JPEG baseline tokenizer for tokbench."""
