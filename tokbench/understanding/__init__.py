"""Understanding evaluations: cached frozen features, batched linear-probe head grids and
zero-shot classifiers. The task adapters live in ``tokbench.tasks``."""
