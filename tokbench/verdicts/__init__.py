"""Per-item evidence behind each metric, and the intervals and tests computed from it (torch-free)."""
