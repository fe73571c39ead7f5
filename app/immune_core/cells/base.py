"""The small base class every innate cell type derives from, and the registry of cell types.

A cell type is one module in ``immune_core.cells`` defining a ``Cell`` subclass with a ``cell_type``
name and a ``params_model`` (a pydantic model that forbids unknown keys). Subclasses register
themselves when their module is imported; ``Cell.create(type, params)`` validates the parameters and
builds the cell, so the engine and the API never switch on type names.
"""

from __future__ import annotations

import copy
import inspect
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from immune_core.cells.cytokine import Cytokine
from immune_core.cells.observation import Antigen, CellOutput, Finding, Signal
from immune_core.detection.intel import IntelStore
from immune_core.events.models import EndpointEvent, IntelItem, NetworkFlow

if TYPE_CHECKING:
    from immune_core.adaptive.state import AdaptiveState
    from immune_core.detection.threat import Threat
    from immune_core.responses.proposals import Proposal


class CellParams(BaseModel):
    """Base of every cell's typed parameters: immutable, unknown keys rejected."""

    # NaN and infinity pass no bound, so they are refused outright (Python's json reads both).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PopulationError(ValueError):
    """A change the cell population refuses: a cap reached, or the last cell of a kind detection needs.

    ``code`` is ``population_full`` or ``last_of_kind``; the message says which limit and how to proceed.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CellConfigError(ValueError):
    """Unknown cell type or invalid parameters; ``message`` names each offending parameter."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class CellContext(NamedTuple):
    """What the engine lends a cell for one event (a named tuple: built per event and stage, see Antigen)."""

    now: datetime  # when the event is evaluated: its event time, or the watermark if it is too late
    intel: IntelStore
    signals: Sequence[Signal] = ()  # signals the sensing cells raised for this event (for stage 1)
    # For the adaptive stages (2+): what the earlier stages found and emitted for this event, and the
    # engine's shared adaptive state (profiles, cytokines read, licences, memory, self, threat level).
    findings: Sequence[Finding] = ()
    cytokines: Sequence[Cytokine] = ()
    adaptive: AdaptiveState | None = None


_OUTPUT_COUNTERS = ("findings", "signals", "cytokines")

P = TypeVar("P", bound=CellParams)
AnyEvent = NetworkFlow | EndpointEvent | IntelItem


class Cell(ABC, Generic[P]):
    """One live cell. Subclasses set ``cell_type``, ``params_model`` and implement ``_observe``."""

    cell_type: ClassVar[str]
    params_model: ClassVar[type[CellParams]]
    # Stage 0 cells sense events; stage 1 cells (dendritic) read the signals stage 0 produced; stages
    # 2+ (the adaptive layer) run in ascending order and read everything the earlier stages produced.
    stage: ClassVar[int] = 0
    description: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[Cell[Any]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if inspect.isabstract(cls):
            return
        name = getattr(cls, "cell_type", None)
        if not name:
            raise TypeError(f"{cls.__name__} must define a cell_type")
        registered = Cell._registry.get(name)
        if registered is not None and registered.__qualname__ != cls.__qualname__:
            raise TypeError(f"cell type {name!r} already registered by {registered.__qualname__}")
        Cell._registry[name] = cls

    def __init__(self, params: P, cell_id: str) -> None:
        self.params: P = params
        self.cell_id = cell_id
        # The id of the cell this one was cloned from, transitively (its own id when created): clones
        # share their learned state, so their findings are one piece of evidence, not several.
        self.lineage = cell_id
        self.counters: Counter[str] = Counter()

    # -- registry -------------------------------------------------------------------------------
    @staticmethod
    def types() -> dict[str, type[Cell[Any]]]:
        from immune_core.cells import load_cell_types

        load_cell_types()
        return dict(sorted(Cell._registry.items()))

    @staticmethod
    def validate_params(cell_type: str, params: Mapping[str, Any] | None) -> CellParams:
        types = Cell.types()
        cls = types.get(cell_type)
        if cls is None:
            raise CellConfigError(
                f"unknown cell type {cell_type!r}; known types: {', '.join(types)}",
                [{"field": "type", "reason": "unknown cell type"}],
            )
        try:
            return cls.params_model.model_validate(dict(params or {}))
        except ValidationError as exc:
            errors = [
                {
                    "field": ".".join(str(part) for part in error["loc"]) or "(params)",
                    "reason": "unknown parameter"
                    if error["type"] == "extra_forbidden"
                    else str(error["msg"]).removeprefix("Value error, "),
                }
                for error in exc.errors(include_url=False, include_input=False)
            ]
            detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
            raise CellConfigError(f"invalid parameters for {cell_type}: {detail}", errors) from None

    @staticmethod
    def create(cell_type: str, params: Mapping[str, Any] | None, cell_id: str) -> Cell[Any]:
        validated = Cell.validate_params(cell_type, params)
        return Cell.types()[cell_type](validated, cell_id)

    # -- behaviour ------------------------------------------------------------------------------
    def observe(self, event: AnyEvent, context: CellContext) -> CellOutput:
        # Runs once per cell per event: the output counters are touched only when there is something to
        # count (most events yield nothing); ``describe`` shows the zeros (docs/performance.md).
        counters = self.counters
        counters["events_observed"] += 1
        output = self._observe(event, context)
        if output.findings:
            counters["findings"] += len(output.findings)
        if output.signals:
            counters["signals"] += len(output.signals)
        if output.cytokines:
            counters["cytokines"] += len(output.cytokines)
        return output

    @abstractmethod
    def _observe(self, event: AnyEvent, context: CellContext) -> CellOutput: ...

    def respond(self, threats: Sequence[Threat], context: CellContext) -> list[Proposal]:
        """Response proposals for the threats the engine just raised (cytotoxic T cells); none by default."""
        return []

    def antigen_mcav(self, antigen: Antigen) -> float | None:
        """The cell's MCAV for ``antigen`` when it computes one (dendritic cells), else None."""
        return None

    def state_summary(self) -> dict[str, Any]:
        """Size of the learned state, for inspection (override per cell)."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.cell_id,
            "lineage": self.lineage,
            "type": self.cell_type,
            "stage": self.stage,
            "description": self.description,
            "params": self.params.model_dump(mode="json"),
            "counters": dict(sorted(self._counters_shown().items())),
            "state": self.state_summary(),
        }

    def _counters_shown(self) -> dict[str, int]:
        # ``observe`` skips adding zero outputs: a cell that observed events shows them as 0.
        shown = dict(self.counters)
        if shown.get("events_observed"):
            for name in _OUTPUT_COUNTERS:
                shown.setdefault(name, 0)
        return shown

    def clone(self, cell_id: str) -> Cell[Any]:
        """Clonal expansion: a copy with the same parameters, learned state and lineage, fresh counters."""
        twin = copy.deepcopy(self)
        twin.cell_id = cell_id  # ``lineage`` is copied: a clone of a clone still names the first cell
        twin.counters = Counter()
        return twin
