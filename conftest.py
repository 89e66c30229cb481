"""Loaded by pytest before any test module (and torch): the same OpenMP waiting policy as the
``tokbench`` command (see tokbench/cli.py), so tests stay fast on a CPU shared with other work."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
