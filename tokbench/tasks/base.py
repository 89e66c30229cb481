"""The task interface. A task turns (tokenizer, dataset, params) into metrics.

Task modules import torch only inside ``run`` so that validating suites and
planning stay light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

if TYPE_CHECKING:  # pragma: no cover
    from tokbench.api import Tokenizer
    from tokbench.runtime.context import BuildContext


@dataclass
class TaskContext:
    build: "BuildContext"
    tokenizer: "Tokenizer"
    tokenizer_name: str
    tokenizer_fingerprint: str
    dataset: Any
    dataset_name: str
    unit_key: str
    #: the task's ``train_dataset`` (tasks registered with ``train_dataset="required"``/"optional")
    train_dataset: Any = None
    train_dataset_name: str | None = None
    #: ``publish(name, output, params)`` stores a partial result of this unit (a ladder rung) as
    #: its own record of type ``rung`` right away, ``params`` overriding the task's; set by the runner
    publish: Any = None


@dataclass
class TaskOutput:
    #: metric name -> value; ``None`` means not measured (see ``unavailable``)
    metrics: dict[str, float | None]
    #: metric name -> why it could not be measured (never a fake number)
    unavailable: dict[str, str] = field(default_factory=dict)
    #: the evaluators behind the numbers (weights hashes, library versions, ...)
    evaluator: dict[str, Any] = field(default_factory=dict)
    #: store keys of artifacts the result was computed from
    artifacts: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class Task:
    """Subclass with a ``Params`` pydantic model, a ``protocol_version`` and ``run``."""

    protocol_version: ClassVar[str] = "0"
    #: params that change speed or memory, never the numbers (compile, fused kernels, ...):
    #: left out of the result key, so switching them reuses the stored result
    execution_params: ClassVar[frozenset[str]] = frozenset()
    #: a unit's expected cost relative to other tasks' units: only orders ready units for the
    #: local workers (heaviest first, so the run does not end on one long unit and an idle worker)
    schedule_weight: ClassVar[float] = 1.0

    def __init__(self, params: BaseModel):
        self.params = params

    def key_params(self) -> dict[str, Any]:
        """The params that enter the result key (all but ``execution_params``)."""
        return self.params.model_dump(mode="json", exclude=set(self.execution_params))

    def key_inputs(self) -> dict[str, Any]:
        """Things besides params that change the numbers (e.g. evaluator weight hashes)."""
        return {}

    def run(self, ctx: TaskContext) -> TaskOutput:
        raise NotImplementedError
