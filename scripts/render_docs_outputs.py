"""Produce the command outputs shown in docs/write-a-plugin.md, so they match the code.

    .venv/bin/python scripts/render_docs_outputs.py           # rewrite the outputs in the doc
    .venv/bin/python scripts/render_docs_outputs.py --check   # exit 1 if the doc differs (CI)

Every ```console block preceded by a ``<!-- output -->`` line is a script: its ``$ `` lines
are run in order, all blocks in one fresh working directory (the repository's ``examples/``
linked in, as in a clone), and the text after each command is replaced by what it printed.
Offline and outside the repository's environment: ``pip install -e DIR`` installs DIR with
``--no-deps --no-index`` into a private folder and puts DIR on ``PYTHONPATH`` (edits to DIR
take effect, as with an editable install). Paths of the working directory are shown relative
to it. ``--check`` compares with volatile parts masked (durations, run names, hashes), so a
changed number, line or table fails it.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "write-a-plugin.md"
MARKER = "<!-- output -->"
BLOCK = re.compile(r"^<!-- output -->\n```console\n(.*?)^```$", re.S | re.M)


def commands(block: str) -> list[str]:
    return [line[2:] for line in block.splitlines() if line.startswith("$ ")]


class Session:
    """One working directory and environment shared by every block, like a reader's shell."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.site = workdir / ".site"
        (workdir / "examples").symlink_to(REPO / "examples")
        self.sources: list[str] = []
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "TOKBENCH_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "NO_COLOR": "1",
        }
        self.env.pop("TOKBENCH_STORE", None)

    def _pythonpath(self) -> None:
        self.env["PYTHONPATH"] = os.pathsep.join([*self.sources, str(self.site)])  # sources first: editable

    def run(self, command: str) -> str:
        words = shlex.split(command)
        if words[:3] == ["pip", "install", "-e"]:
            package = self.workdir / words[3]
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                 "--disable-pip-version-check", "--upgrade", "--target", str(self.site), str(package)],
                capture_output=True, text=True, cwd=self.workdir, timeout=300)
            if done.returncode:
                raise RuntimeError(f"$ {command}\n{done.stdout}{done.stderr}")
            self.sources.append(str(package))
            self._pythonpath()
            return ""
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=self.workdir,
                              env=self.env, timeout=900)
        text = done.stdout + done.stderr
        if done.returncode not in (0,):
            raise RuntimeError(f"$ {command} exited with {done.returncode}:\n{text}")
        return self.clean(text)

    def clean(self, text: str) -> str:
        text = text.replace(str(self.workdir) + "/", "").replace(str(self.workdir), ".")
        text = text.replace(str(Path(sys.executable)), ".venv/bin/python")
        text = re.sub(r"^\[\d+/\d+\] .*\n|^  > .*\n", "", text, flags=re.M)  # live progress lines
        return text.rstrip("\n")


def render(doc: str, workdir: Path) -> str:
    session = Session(workdir)

    def replace(match: re.Match[str]) -> str:
        lines = []
        for command in commands(match.group(1)):
            lines.append(f"$ {command}")
            output = session.run(command)
            if output:
                lines.append(output)
        return f"{MARKER}\n```console\n" + "\n".join(lines) + "\n```"

    return BLOCK.sub(replace, doc)


def masked(text: str) -> str:
    """``text`` with what changes from run to run masked: durations, run names, hashes."""
    text = re.sub(r"\d+(\.\d+)?s\b", "<s>", text)
    text = re.sub(r"\d{8}-\d{6}-[\w.+-]+", "<run>", text)
    text = re.sub(r"\b[0-9a-f]{8,64}\b", "<hash>", text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the doc instead of rewriting it")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args()
    doc = args.doc.read_text()
    if not BLOCK.search(doc):
        sys.exit(f"{args.doc}: no {MARKER} blocks")
    with tempfile.TemporaryDirectory(prefix="tokbench-docs-") as workdir:
        rendered = render(doc, Path(workdir))
    if not args.check:
        args.doc.write_text(rendered)
        print(f"wrote {args.doc}")
        return
    if masked(rendered) != masked(doc):
        import difflib

        diff = difflib.unified_diff(masked(doc).splitlines(), masked(rendered).splitlines(), "doc", "rendered", lineterm="")
        print("\n".join(diff))
        sys.exit(f"{args.doc}: the outputs differ from what the commands print now; "
                 "run scripts/render_docs_outputs.py to update them")
    print(f"{args.doc}: every output matches")


if __name__ == "__main__":
    main()
