"""'Did you mean' suggestions for unknown names."""

from __future__ import annotations

import difflib
from typing import Iterable


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
