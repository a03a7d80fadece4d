"""Pydantic models of the declarative definitions in `projections/*.toml`.

A bad definition fails at load with the file, the key and the reason.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from dealengine.domain.errors import InvalidDefinition
from dealengine.domain.events import EVENT_TYPES
from dealengine.domain.values import Days

STAGE_EVENTS = (
    "discovery_completed",
    "proposal_sent",
    "negotiation_started",
    "deal_won",
    "deal_lost",
)


EVENT_TYPES_KEY = "event_types"  # in a validation context: the model's interaction names


def event_types(info: ValidationInfo) -> Collection[str]:
    """The interactions a definition may name: the model's (the validation context's, given
    by the loaders for a model with declared ones), else the built-in ones."""
    known: Collection[str] = (info.context or {}).get(EVENT_TYPES_KEY, EVENT_TYPES)
    return known


class KeyedError(ValueError):
    """A rule across several keys was broken; `key` names the one to fix."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


class Definition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


ForecastCategory = Literal["pipeline", "best_case", "commit", "closed", "omitted"]
FORECAST_CATEGORIES: tuple[ForecastCategory, ...] = (
    "pipeline",
    "best_case",
    "commit",
    "closed",
    "omitted",
)


class Stage(Definition):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    probability: float = Field(ge=0.0, le=1.0)
    closed: Literal["won", "lost"] | None = None
    forecast: ForecastCategory | None = None
    """The forecast category of deals in this stage (closed stages: closed / omitted)."""
    stale_after_days: Days | None = None
    """An open deal with no event for longer than this is stale ("rotting")."""


class Moves(Definition):
    skip: bool = True
    backward: Literal["with_reason", "never"] = "with_reason"


class PipelineDefinition(Definition):
    """Stages in order, which are closed, their win probabilities, and which moves are allowed."""

    name: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    initial_stage: str
    stages: list[Stage] = Field(min_length=2)
    events: dict[str, str]
    moves: Moves = Moves()

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Self:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise KeyedError("stages", f"stage names repeat: {names}")
        for kind in ("won", "lost"):
            if sum(s.closed == kind for s in self.stages) != 1:
                raise KeyedError("stages", f"exactly one stage must be closed = {kind!r}")
        if self.initial_stage not in self.open_stages:
            raise KeyedError("initial_stage", f"{self.initial_stage!r} is not an open stage")
        declared = set(event_types(info)) - EVENT_TYPES.keys()  # a declared stage (catalogue)
        for event, stage in self.events.items():
            if event not in STAGE_EVENTS and event not in declared:
                raise KeyedError(
                    f"events.{event}", f"not a stage event (one of {', '.join(STAGE_EVENTS)})"
                )
            if stage not in names:
                raise KeyedError(f"events.{event}", f"unknown stage {stage!r}")
        if self.events.get("deal_won") != self.won_stage:
            raise KeyedError("events.deal_won", "must name the stage closed as won")
        if self.events.get("deal_lost") != self.lost_stage:
            raise KeyedError("events.deal_lost", "must name the stage closed as lost")
        return self

    @cached_property
    def index(self) -> dict[str, int]:
        return {s.name: i for i, s in enumerate(self.stages)}

    @cached_property
    def stage(self) -> dict[str, Stage]:
        return {s.name: s for s in self.stages}

    def forecast_category(self, stage: str) -> ForecastCategory:
        s = self.stage[stage]
        if s.closed is not None:
            return "closed" if s.closed == "won" else "omitted"
        return s.forecast or "pipeline"

    @cached_property
    def probability(self) -> dict[str, float]:
        return {s.name: s.probability for s in self.stages}

    @cached_property
    def open_stages(self) -> list[str]:
        return [s.name for s in self.stages if s.closed is None]

    @cached_property
    def won_stage(self) -> str:
        return next(s.name for s in self.stages if s.closed == "won")

    @cached_property
    def lost_stage(self) -> str:
        return next(s.name for s in self.stages if s.closed == "lost")

    def is_closed(self, stage: str) -> bool:
        return stage in (self.won_stage, self.lost_stage)


class Pipelines(Definition):
    """Every pipeline a deal can belong to (projections/pipeline.toml); the first is the default."""

    pipelines: list[PipelineDefinition] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [p.name for p in self.pipelines]
        if len(set(names)) != len(names):
            raise KeyedError("pipelines", f"pipeline names repeat: {names}")
        return self

    @cached_property
    def by_name(self) -> dict[str, PipelineDefinition]:
        return {p.name: p for p in self.pipelines}

    @property
    def default(self) -> PipelineDefinition:
        return self.pipelines[0]

    def __getitem__(self, name: str) -> PipelineDefinition:
        return self.by_name[name]


class FunnelStep(Definition):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    events: list[str] = Field(min_length=1)
    within_days: Days | None = None
    """Ordered modes: the most time allowed since the previous step (a per-step window)."""


FunnelMode = Literal["reached", "ordered", "strict"]


class FunnelDefinition(Definition):
    """Funnel steps in order, the events that put a lead at each step, and how to count.

    The counting rules are written down in docs/funnel-semantics.md.
    """

    mode: FunnelMode = "reached"
    conversion_window_days: Days = 90
    attribution: Literal["first_touch", "last_touch"] = "first_touch"
    breakdowns: list[str] = ["campaign"]
    cohort: Literal["week", "month"] = "month"
    exclusions: list[str] = []
    steps: list[FunnelStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Self:
        known = event_types(info)
        for event in self.exclusions:
            if event not in known:
                raise KeyedError("exclusions", f"unknown event type {event!r}")
        seen: dict[str, str] = {}
        for step in self.steps:
            for event in step.events:
                if event in self.exclusions:
                    raise KeyedError(f"steps.{step.name}", f"{event!r} is also an exclusion")
                if event not in known:
                    raise KeyedError(f"steps.{step.name}", f"unknown event type {event!r}")
                if event in seen:
                    raise KeyedError(
                        f"steps.{step.name}", f"event {event!r} is also in step {seen[event]!r}"
                    )
                seen[event] = step.name
        return self

    @cached_property
    def step_of_event(self) -> dict[str, int]:
        return {e: i for i, step in enumerate(self.steps) for e in step.events}

    @cached_property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]


T = TypeVar("T", bound=Definition)


def definitions_dir() -> Path:
    """`projections/` of the source tree, or its copy shipped inside the wheel."""
    shipped = Path(str(resources.files("dealengine"))) / "_projections"
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parents[3] / "projections"


def load(model: type[T], path: Path, context: dict[str, Any] | None = None) -> T:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidDefinition(str(path), "-", f"cannot read: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise InvalidDefinition(str(path), "-", f"not valid TOML: {e}") from e
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        err = max(e.errors(), key=lambda x: len(x["loc"]))  # in a union, the deepest is meant
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, KeyedError):
            where = ".".join(str(p) for p in (*err["loc"], cause.key))
            raise InvalidDefinition(str(path), where, cause.reason) from e
        key = ".".join(str(p) for p in err["loc"]) or "-"
        raise InvalidDefinition(str(path), key, err["msg"]) from e


def load_pipelines(path: Path | None = None) -> Pipelines:
    return load(Pipelines, path or definitions_dir() / "pipeline.toml")


def load_pipeline(path: Path | None = None) -> PipelineDefinition:
    """The default (first) pipeline."""
    return load_pipelines(path).default


def load_funnel(
    path: Path | None = None, context: dict[str, Any] | None = None
) -> FunnelDefinition:
    """The funnel; `context`: the model's interactions (`Interactions.context`), which its
    steps and exclusions may name (default: the built-in ones)."""
    return load(FunnelDefinition, path or definitions_dir() / "funnel.toml", context)
