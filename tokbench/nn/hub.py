"""Hugging Face hub helpers shared by plugins: recognising hub ids, the offline switch,
and the one message telling users how to fetch weights on a machine with internet.
Imports no torch; ``huggingface_hub`` only when a download is attempted."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: What a Hugging Face repo id looks like: ``name`` or ``owner/name``.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def looks_like_hub_id(value: str) -> bool:
    """True for ``owner/name`` (or ``name``) strings; False for anything path-like."""
    if value.startswith(("/", ".", "~")) or "\\" in value or ".." in value or "--" in value:
        return False
    return bool(_HUB_ID.match(value))


def download_hint(hub_id: str, revision: str | None = None, setting: str = "pretrained") -> str:
    target = f"./weights/{hub_id.split('/')[-1]}"
    revision_flag = f" --revision {revision}" if revision else ""
    return (
        f"download it on a machine with internet: `huggingface-cli download {hub_id}{revision_flag} --local-dir {target}` "
        f"(or `hf download ...`), copy it here, then set `{setting}: {target}` "
        f"(or pre-fill the hub cache and keep `{setting}: {hub_id}`)"
    )


def hub_offline() -> bool:
    """True when the user switched the hub off (``HF_HUB_OFFLINE``)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except (ImportError, AttributeError):  # pragma: no cover
        return False


def hub_file(hub_id: str, filename: str, revision: str | None = None) -> Path:
    """Path of ``filename`` from hub repo ``hub_id``: the local hub cache first, then a
    download unless offline. Raises the underlying error when neither works."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(hub_id, filename, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached; try the network if allowed
        if hub_offline():
            raise
        return Path(hf_hub_download(hub_id, filename, revision=revision))
