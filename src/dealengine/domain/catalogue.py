"""The interactions a model knows, in one registry per model: the built-in catalogue and the ones
a business declares (in `interactions.toml`, or as pydantic models given to the Engine).

Every interaction is a pydantic model on the DomainEvent envelope; a declared one is made by
`create_model` from the value types of domain/values.py, so it is validated, stored, hashed,
read back and upcast exactly as a built-in one. Its stored topic is `dealengine.declared:NAME`
(a declared class lives in no module). Each model carries its version (`class_version`) and
one upcaster per version step (events.upcast).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self, cast

from pydantic import Field, create_model, model_validator

from dealengine.domain.chain import topic_of
from dealengine.domain.definitions import (
    EVENT_TYPES_KEY,
    Definition,
    KeyedError,
    PipelineDefinition,
    Pipelines,
    definitions_dir,
    load,
)
from dealengine.domain.errors import InvalidDefinition
from dealengine.domain.events import (
    DEAL_EVENTS,
    ENVELOPE_FIELDS,
    LEAD_EVENTS,
    VERSION_KEY,
    VOID_EVENTS,
    DealEvent,
    DomainEvent,
    LeadEvent,
    LeadForgotten,
    check_upcasters,
    upcast,
)
from dealengine.domain.personal import PERSONAL
from dealengine.domain.rates import RATE_EVENTS
from dealengine.domain.values import Amount, Text, UtcDatetime

DECLARED_MODULE = "dealengine.declared"  # the module part of a declared interaction's topic

FIELD_TYPES: dict[str, Any] = {
    "text": Text,
    "integer": Annotated[int, Field(ge=-(2**63), le=2**63 - 1)],  # what JSON readers hold
    "decimal": Annotated[Decimal, Field(allow_inf_nan=False)],
    "amount": Amount,
    "boolean": bool,
    "date": date,
    "datetime": UtcDatetime,
}
FieldType = Literal["text", "integer", "decimal", "amount", "boolean", "date", "datetime"]
NAME = r"^[a-z][a-z0-9_]*$"
# Keys a line or a stored event uses for itself: no declared field may take them.
RESERVED = frozenset(
    {*ENVELOPE_FIELDS, "type", "lead_id", "deal_id", "to_stage", VERSION_KEY, "hash"}
)

Reading = tuple[str, Callable[[dict[str, Any]], dict[str, Any]] | None]
"""How a fold reads a stored topic: its event type, and its upcast (None: at version 1)."""


# Events the engine records itself, beside the interactions: corrections, erasures, rates.
RECORDED_BY_THE_ENGINE: tuple[type[DomainEvent], ...] = (*VOID_EVENTS, LeadForgotten, *RATE_EVENTS)


class Interactions:
    """The interactions of one model, by name (`types`) and by stored topic (`by_topic`, the
    corrections and the exchange rates too). Immutable once made: share it between threads."""

    def __init__(
        self, models: Iterable[type[DomainEvent]], sources: Mapping[str, str] | None = None
    ) -> None:
        """`sources`: where each model not built in was declared (a file, "the API")."""
        self.sources: Mapping[str, str] = dict(sources or {})
        types: dict[str, type[DomainEvent]] = {}
        for model in models:
            if model.event_type in types:
                raise ValueError(f"interaction {model.event_type!r} is registered twice")
            check_upcasters(model)
            types[model.event_type] = model
        self.types: Mapping[str, type[DomainEvent]] = types
        # the model of an interaction, or None: the dict's own get (once per command)
        self.get: Callable[[str], type[DomainEvent] | None] = types.get
        self.by_topic: Mapping[str, type[DomainEvent]] = {
            topic_of(model): model for model in (*types.values(), *RECORDED_BY_THE_ENGINE)
        }
        self.reading: Mapping[str, Reading] = {  # the folds never read a rate (domain/rates.py)
            topic: (model.event_type, _upcast_of(model))
            for topic, model in self.by_topic.items()
            if model.aggregate != "rates"
        }

    def __getitem__(self, name: str) -> type[DomainEvent]:
        return self.types[name]

    @property
    def context(self) -> dict[str, Any]:
        """The validation context under which a definition may name these interactions."""
        return {EVENT_TYPES_KEY: self.types}

    def names(self) -> list[str]:
        return sorted(self.types)

    def stage_moves(self) -> dict[str, str]:
        """The stage each deal interaction that declares one moves a deal into."""
        moves: dict[str, str] = {}
        for name, model in self.types.items():
            stage = getattr(model, "moves_to_stage", None)
            if stage is not None:
                moves[name] = stage
        return moves

    def with_models(self, models: Iterable[type[DomainEvent]], where: str = "the API") -> Self:
        """These interactions and `models` beside them; a name taken already is refused,
        naming `where` the new one comes from."""
        models = list(models)
        for model in models:
            if model.event_type in self.types:
                kind = "a built-in" if model.event_type in BUILT_IN_NAMES else "an"
                raise InvalidDefinition(
                    where, model.event_type, f"{kind} interaction of that name exists already"
                )
        sources = {**self.sources, **{model.event_type: where for model in models}}
        return type(self)([*self.types.values(), *models], sources)


def _upcast_of(model: type[DomainEvent]) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    if model.class_version == 1:
        return None
    return lambda data: upcast(model, data)


BUILT_IN_NAMES = frozenset(m.event_type for m in (*LEAD_EVENTS, *DEAL_EVENTS))
BUILT_IN = Interactions((*LEAD_EVENTS, *DEAL_EVENTS))
"""The built-in catalogue: every model's interactions start from it."""


# --- interactions.toml -----------------------------------------------------------------------


class DeclaredField(Definition):
    type: FieldType
    personal: bool = False  # personal data (domain/personal.py)
    required: bool = False  # without it, a line may leave the field out


class UpcastStep(Definition):
    """One version step of a declared interaction: fields renamed (old = "new") and fields
    added with the value an older event gets."""

    rename: dict[str, str] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)

    def __call__(self, data: dict[str, Any]) -> None:
        for old, new in self.rename.items():
            if old in data:
                data[new] = data.pop(old)
        for name, value in self.defaults.items():
            data.setdefault(name, value)


class DeclaredInteraction(Definition):
    name: str = Field(pattern=NAME, max_length=64)
    on: Literal["lead", "deal"]
    fields: dict[str, FieldType | DeclaredField] = Field(default_factory=dict)
    stage: str | None = Field(default=None, pattern=NAME)
    version: int = Field(default=1, ge=1, le=1000)
    upcasts: dict[str, UpcastStep] = Field(default_factory=dict)  # "v1_v2": from 1 to 2, ...

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.name in BUILT_IN_NAMES:
            raise KeyedError("name", f"{self.name!r} is a built-in interaction")
        for field in self.fields:
            if field in RESERVED:
                raise KeyedError(f"fields.{field}", "a name every interaction uses already")
            if not re.fullmatch(NAME, field):
                raise KeyedError(f"fields.{field}", "a field name is a-z, 0-9 and _")
            if field == "amount" and _type_of(self.fields[field]) != "amount":
                # a deal's amount follows any event's `amount` (deal.py, the pipeline fold)
                raise KeyedError("fields.amount", "an amount field must be of type amount")
        if self.stage is not None and self.on != "deal":
            raise KeyedError("stage", "only a deal interaction moves a deal to a stage")
        steps = [f"v{v}_v{v + 1}" for v in range(1, self.version)]
        if sorted(self.upcasts) != sorted(steps):
            expected = ", ".join(steps) or "none"
            raise KeyedError("upcasts", f"version {self.version} needs the steps: {expected}")
        return self

    def model(self) -> type[DomainEvent]:
        """The pydantic model of this interaction, on the envelope every event shares: one
        class per declaration in a process, whichever engines load it."""
        return _model_of(self.model_dump_json())

    def build(self) -> type[DomainEvent]:
        fields: dict[str, Any] = {}
        for field, declared in self.fields.items():
            spec = DeclaredField(type=declared) if isinstance(declared, str) else declared
            value_type = FIELD_TYPES[spec.type]
            if not spec.required:
                value_type = value_type | None
            if spec.personal:
                value_type = Annotated[value_type, PERSONAL]
            fields[field] = (value_type, ...) if spec.required else (value_type, None)
        base: type[DomainEvent] = LeadEvent if self.on == "lead" else DealEvent
        model = cast(
            type[DomainEvent],
            create_model(
                _class_name(self.name), __base__=base, __module__=DECLARED_MODULE, **fields
            ),
        )
        model.event_type = self.name
        model.class_version = self.version
        if self.stage is not None:
            cast(type[DealEvent], model).moves_to_stage = self.stage
        for step, upcast_step in self.upcasts.items():
            setattr(model, f"upcast_{step}", staticmethod(upcast_step))
        model.__qualname__ = self.name  # its topic: dealengine.declared:NAME
        return model


def _class_name(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def _type_of(declared: FieldType | DeclaredField) -> FieldType:
    return declared if isinstance(declared, str) else declared.type


@lru_cache(maxsize=256)
def _model_of(declaration: str) -> type[DomainEvent]:
    return DeclaredInteraction.model_validate_json(declaration).build()


class InteractionsFile(Definition):
    """interactions.toml: the interactions a business declares beside the built-in ones."""

    interactions: list[DeclaredInteraction] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [i.name for i in self.interactions]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise KeyedError(f"interactions.{i}.name", f"{name!r} is declared twice")
        return self


def load_interactions(path: Path | None = None) -> Interactions:
    """The built-in interactions and those `path` declares (default: interactions.toml of the
    definitions folder, if it has one)."""
    path = path or definitions_dir() / "interactions.toml"
    if not path.exists():
        return BUILT_IN
    declared = load(InteractionsFile, path)
    return BUILT_IN.with_models((i.model() for i in declared.interactions), str(path))


def with_stage_moves(pipelines: Pipelines, interactions: Interactions) -> Pipelines:
    """The pipelines with each declared deal interaction's `stage` among their stage events,
    in every pipeline that has that open stage: the stage rules then decide and evolve it as
    they do `proposal_sent` (a pipeline without the stage: it moves no deal there). A stage no
    pipeline has open is refused."""
    moves = interactions.stage_moves()
    if not moves:
        return pipelines
    for name, stage in moves.items():
        if not any(stage in p.open_stages for p in pipelines.pipelines):
            raise InvalidDefinition(
                interactions.sources.get(name, "the API"),
                f"{name}.stage",
                f"no pipeline has an open stage {stage!r}",
            )
    return Pipelines.model_construct(
        pipelines=[
            PipelineDefinition.model_construct(
                **{
                    **dict(p),
                    "events": p.events
                    | {name: stage for name, stage in moves.items() if stage in p.open_stages},
                }
            )
            for p in pipelines.pipelines
        ]
    )
