"""Built-in, non-learned baseline tokenizers (usable offline without training)."""
