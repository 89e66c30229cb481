"""Neural-network pieces shared by tokbench's and the plugins' models, and reading released weights (checkpoints, the hub)."""
