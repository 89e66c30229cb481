"""Exceptions with actionable messages, and the 'did you mean' that makes them actionable.
User input never fails on ``assert``."""

from __future__ import annotations

import difflib
from typing import Iterable


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


def did_you_mean(value: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_choice(what: str, value: str, choices: Iterable[str]) -> str:
    """One line: the bad value, the allowed values and a suggestion if any."""
    choices = sorted(str(c) for c in choices)
    message = f"unknown {what} {value!r}; allowed: {', '.join(choices) if choices else '(none registered)'}"
    suggestion = did_you_mean(value, choices)
    if suggestion:
        message += f" (did you mean {suggestion!r}?)"
    return message
