"""What makes two results one measurement: everything that can change a number, except the seed.

Results are averaged into mean ± std only when their *measurement identity* agrees: the
task kind, protocol and every task parameter (execution-only params such as ``compile``
aside), the dataset fingerprint and the number of images actually evaluated, the full
evaluator record (weights hashes, feature storage precision, reference set, ...), the
tokenizer's plugin, version, code digest and params. Only an integer ``seed`` (anywhere in
the task or tokenizer params) may differ. Unlike results never share a cell: the table
gives each its own row, labelled with what differs (see ``difference_label``).

Torch-free.
"""

from __future__ import annotations

from typing import Any


#: fields of a tokenizer record that name or summarise it rather than define it
_TOKENIZER_DISPLAY = {"name", "label", "fingerprint"}


def _without_seed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_seed(v) for k, v in value.items()
                if not (k == "seed" and isinstance(v, int) and not isinstance(v, bool))}
    if isinstance(value, list):
        return [_without_seed(v) for v in value]
    return value


def measurement_identity(record: dict[str, Any]) -> dict[str, Any]:
    """The record's identity as a measurement, seed removed (a plain JSON-able dict). The long
    frame narrows ``evaluator`` to each metric's own part and hashes the result into its
    ``comparability`` column: equal keys may be averaged as seeds, unequal never."""
    task = record.get("task", {})
    execution = set(task.get("execution_params") or ())
    params = {k: v for k, v in (task.get("params") or {}).items() if k not in execution}
    tokenizer = record.get("tokenizer", {})
    tokenizer_identity = tokenizer.get("identity")
    if isinstance(tokenizer_identity, dict):
        tokenizer_part = _without_seed(tokenizer_identity)
    else:  # records from before identities were stored: what the record itself says
        tokenizer_part = _without_seed({k: v for k, v in tokenizer.items() if k not in _TOKENIZER_DISPLAY})
    details = record.get("details", {})
    return {
        "task": {"kind": task.get("kind"), "protocol": task.get("protocol_version"), "params": _without_seed(params)},
        "dataset": {k: v for k, v in (record.get("dataset") or {}).items() if k in ("kind", "fingerprint")},
        "train_dataset": (record.get("train_dataset") or {}).get("fingerprint"),
        "num_images": details.get("num_images"),
        "evaluator": record.get("evaluator", {}),
        "tokenizer": tokenizer_part,
        # the plugin, version and source digest of the code behind each role (tokenizer, task, dataset)
        "code": (record.get("provenance") or {}).get("code") or {},
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    return {prefix: value}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, (int, float)) else f"{value:g}"
    if isinstance(value, str) and len(text) > 16 and all(c in "0123456789abcdef" for c in text.lower()):
        return text[:8]  # a digest
    return text if len(text) <= 24 else text[:21] + "..."


#: identity paths shown first when labelling a difference (the ones users set on purpose)
_PREFERRED = ("num_images", "task.params.", "tokenizer.version", "tokenizer.code", "tokenizer.", "evaluator.", "dataset.")


def differing_fields(identities: list[dict[str, Any]]) -> list[str]:
    """Dotted paths whose values are not the same in every identity, most telling first."""
    flat = [_flatten(identity) for identity in identities]
    paths = sorted({p for f in flat for p in f})
    differing = [p for p in paths if len({repr(f.get(p)) for f in flat}) > 1]

    def order(path: str) -> tuple[int, str]:
        return next((i for i, pre in enumerate(_PREFERRED) if path.startswith(pre)), len(_PREFERRED)), path

    return sorted(differing, key=order)


def difference_label(identity: dict[str, Any], paths: list[str], limit: int = 2) -> str:
    """``num_images=512, task.params.training_flops=1e+13`` for the first ``limit`` differing paths."""
    flat = _flatten(identity)
    parts = [f"{path.split('.')[-1] if path.startswith('task.params.') else path}={_short(flat.get(path))}"
             for path in paths[:limit]]
    if len(paths) > limit:
        parts.append(f"+{len(paths) - limit} more")
    return ", ".join(parts)
