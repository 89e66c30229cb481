"""The plugin contract: hooks a tokbench plugin may implement.

A plugin is a module registered under the ``tokbench`` entry-point group that
implements any of these hooks with ``@tokbench.hookimpl``. Registration passes
lazy ``"module:attr"`` targets, so loading a plugin imports no model code.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("tokbench")
hookimpl = pluggy.HookimplMarker("tokbench")


@hookspec
def tokbench_register_tokenizers(register):
    """Register tokenizer families.

    Call ``register(name, factory="module:attr", params="module:attr",
    capabilities={...}, description="...")``. ``params`` names a pydantic
    model (importable without torch) validated in suites; ``factory`` names a
    callable ``factory(params, context) -> Tokenizer`` imported only when a
    tokenizer is built.
    """


@hookspec
def tokbench_register_tasks(register):
    """Register task kinds: ``register(name, task="module:attr",
    params="module:attr", requires={capabilities}, description="...",
    train_dataset="none"|"optional"|"required")``. A params model may add
    requirements that depend on its values with a ``required_capabilities()``
    method (e.g. a protocol that reads image features instead of latents)."""


@hookspec
def tokbench_register_datasets(register):
    """Register dataset kinds: ``register(name, dataset="module:attr",
    params="module:attr", description="...")``."""


@hookspec
def tokbench_register_exporters(register):
    """Register leaderboard exporters: ``register(name, exporter="module:attr",
    description="...")``; the callable takes a results DataFrame."""


@hookspec
def tokbench_register_commands(cli):
    """Add click commands to the ``tokbench`` command group ``cli``."""
