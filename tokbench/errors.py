"""Exceptions with actionable messages. User input never fails on ``assert``."""

from __future__ import annotations


class TokbenchError(Exception):
    """Base class; the CLI prints ``str(error)`` without a traceback."""


class SuiteError(TokbenchError):
    """A suite file is malformed. Holds one message per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class PluginError(TokbenchError):
    """A plugin is unknown, broken or registered something invalid."""


class MissingAssetError(TokbenchError):
    """A checkpoint, weights file or dataset path is missing; says how to get it."""


class StoreError(TokbenchError):
    """The store is corrupt or an artifact is incomplete."""
