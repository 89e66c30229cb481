"""Registers the ``vtp`` tokenizer family and the ``tokbench vtp`` commands. Imports no torch."""

from __future__ import annotations

from tokbench.hookspecs import hookimpl
