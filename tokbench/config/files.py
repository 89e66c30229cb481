"""Reading YAML configuration files (suites, Slurm profiles): ``${VAR}`` interpolation from the
environment, and one actionable line per validation problem (``file: field.path: what is wrong;
allowed: ...``). Torch-free; imports nothing else of tokbench but the name suggester.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from tokbench.errors import did_you_mean

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(value: Any, path: str, problems: list[str], source: str) -> Any:
    """``value`` (parsed YAML) with every ``${VAR}`` / ``${VAR:-default}`` in its strings replaced from the
    environment; an unset variable without a default adds a line to ``problems`` naming its place."""
    if isinstance(value, dict):
        return {k: interpolate_env(v, f"{path}.{k}" if path else str(k), problems, source) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, f"{path}.{i}", problems, source) for i, v in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            problems.append(f"{source}: {path}: environment variable ${{{name}}} is not set (use ${{{name}:-default}})")
            return match.group(0)

        return _ENV_PATTERN.sub(substitute, value)
    return value


def _format_location(loc: tuple[Any, ...], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in loc]
    return ".".join(parts) or "(top level)"


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model a location points into."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return [] if not isinstance(current, type) else list(getattr(current, "model_fields", {}))
        current = _model_of(field.annotation)
    return list(getattr(current, "model_fields", {})) if current is not None else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def pydantic_problems(
    error: ValidationError, model: type[BaseModel], source: str, prefix: str = ""
) -> list[str]:
    """One actionable line per pydantic error."""
    lines = []
    for item in error.errors():
        loc = item["loc"]
        where = _format_location(loc, prefix)
        kind = item["type"]
        value = item.get("input")
        if kind == "extra_forbidden":
            allowed = _allowed_fields(model, loc)
            name = str(loc[-1])
            message = f"unknown field {name!r}; allowed: {', '.join(allowed)}"
            suggestion = did_you_mean(name, allowed)
            if suggestion:
                message += f" (did you mean {suggestion!r}?)"
        elif kind == "missing":
            message = "required field is missing"
        elif kind in ("literal_error", "enum"):
            allowed = [a.strip(" '") for a in re.split(r",| or ", item["ctx"].get("expected", ""))]
            allowed = [a for a in allowed if a]
            message = f"invalid value {value!r}; allowed: {', '.join(allowed)}"
            suggestion = did_you_mean(str(value), allowed)
            if suggestion:
                message += f" (did you mean {suggestion!r}?)"
        else:
            message = f"{item['msg']}; got {value!r}"
        lines.append(f"{source}: {where}: {message}")
    return lines
