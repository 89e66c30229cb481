"""Budget ladders: a metric measured at a few fractions of the training budget inside one run,
curves fitted through the rungs with their bootstrap uncertainty, a predicted value and ranking
at the target budget, and successive halving (docs/ladders.md). Torch-free.
"""
