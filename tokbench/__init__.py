"""tokbench: a benchmark harness for visual tokenizers."""

__version__ = "0.1.0"
