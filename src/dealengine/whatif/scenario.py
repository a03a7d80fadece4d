"""What-if scenarios: the TOML schema (examples in projections/scenarios/) and its resolution.

A scenario overrides parts of the funnel and pipeline definitions, filters and transforms the
stream, adds hypothetical events and sets the as-of time. `load_scenario(path)` validates a
file with the definitions' own `load()` (an error names file, key and reason); `resolve()`
merges the overrides into the engine's definitions and validates the result with the same
models, so a bad override fails the same way, naming the scenario's key.

The rules (what each key means, in which order they apply) are in projections/scenarios/README.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from dealengine.domain.definitions import (
    Definition,
    FunnelDefinition,
    KeyedError,
    Pipelines,
    event_types,
    load,
)
from dealengine.domain.errors import InvalidDefinition
from dealengine.domain.events import format_time, parse_moment
from dealengine.domain.values import Days, SignedDays, UtcDatetime

M = TypeVar("M", bound=BaseModel)


def _moment(value: object, *, end: bool) -> object:
    """A TOML date or date-time, or text: a date means the start (`from`) or the end (`to`,
    `as_of`) of that day in UTC; a time without an offset is UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time.max if end else time.min, tzinfo=UTC)
    if isinstance(value, str):
        if len(value) == 10 and not end:
            return _moment(date.fromisoformat(value), end=False)
        return parse_moment(value)  # a ValueError here is reported with its key
    return value


StartMoment = Annotated[UtcDatetime, BeforeValidator(lambda v: _moment(v, end=False))]
EndMoment = Annotated[UtcDatetime, BeforeValidator(lambda v: _moment(v, end=True))]


class Selection(Definition):
    """Values to keep (`only`) or leave out (`except`). Channels and campaigns select leads
    by their attributed touch (the funnel's `attribution`) with their deals; owners and
    pipelines select deals (their `deal_opened`), whose events then leave both views."""

    channels: list[str] | None = None
    campaigns: list[str] | None = None
    owners: list[str] | None = None
    pipelines: list[str] | None = None


class StreamFilter(Definition):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    start: StartMoment | None = Field(default=None, alias="from")
    end: EndMoment | None = Field(default=None, alias="to")
    only: Selection = Selection()
    except_: Selection = Field(default=Selection(), alias="except")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise KeyedError("to", f"{format_time(self.end)} is before `from`")
        return self


class Shift(Definition):
    """Move the events of a pipeline stage (the events that move a deal into it), of a
    funnel step, or of the listed types, by `days` (negative: earlier)."""

    stage: str | None = None
    step: str | None = None
    events: list[str] | None = None
    days: SignedDays

    @model_validator(mode="after")
    def _one_target(self, info: ValidationInfo) -> Self:
        given = [k for k in ("stage", "step", "events") if getattr(self, k) is not None]
        if len(given) != 1:
            raise KeyedError("stage", "give exactly one of stage, step or events")
        for event in self.events or ():
            if event not in event_types(info):
                raise KeyedError("events", f"unknown event type {event!r}")
        return self


class Transform(Definition):
    drop: list[str] = Field(default_factory=list)
    """Event types left out of the stream."""
    lost_after_days: Days | dict[str, Days] | None = None
    """A deal open in a stage longer than this (one number, or per stage name) counts as lost
    at that moment; its later events are left out."""
    scale_amounts: Decimal | None = Field(default=None, gt=0, le=1000, allow_inf_nan=False)
    """Every amount multiplied by this factor (at most 1000: the largest amount scaled stays
    far inside the decimal context, see domain/values.py)."""
    shift: list[Shift] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known(self, info: ValidationInfo) -> Self:
        for event in self.drop:
            if event not in event_types(info):
                raise KeyedError("drop", f"unknown event type {event!r}")
        return self


class Scenario(Definition):
    """One what-if scenario (a TOML file in projections/scenarios/, or built in Python)."""

    name: str | None = Field(default=None, min_length=1, max_length=80)
    """Default: the file's name without `.toml`."""
    question: str = ""
    """The question the scenario answers (shown beside its results)."""
    as_of: EndMoment | None = None
    """The scenario's views as of this time (default: the run's as-of, if any)."""
    events_file: str | None = None
    """Hypothetical events in the JSONL ingest format: a file in the scenario file's folder
    (a relative path that stays inside it, symlinks resolved)."""
    funnel: dict[str, Any] = Field(default_factory=dict)
    """Overrides of funnel.toml: any key; `steps` as a list replaces them all, as a table by
    step name changes those steps."""
    pipelines: dict[str, Any] | list[Any] = Field(default_factory=dict)
    """Overrides of pipeline.toml by pipeline name (`[pipelines.new_business.stages.proposal]`),
    or a list that replaces them all."""
    filter: StreamFilter = StreamFilter()
    transform: Transform = Transform()
    events: list[dict[str, Any]] = Field(default_factory=list)
    """Hypothetical events, inline: the JSONL ingest format as TOML tables."""


def load_scenario(path: Path, context: dict[str, Any] | None = None) -> Scenario:
    """A scenario file, validated; its name defaults to the file's stem. An empty file is
    refused: it would only repeat the baseline, and is more likely the wrong file."""
    scenario = load(Scenario, path, context)  # context: the model's interactions
    if not scenario.model_fields_set:
        raise InvalidDefinition(
            str(path), "-", "an empty scenario: give overrides, filters, transforms or events"
        )
    return scenario if scenario.name else scenario.model_copy(update={"name": path.stem})


def validated(
    model: type[M],
    data: object,
    file: str,
    prefix: str = "",
    context: dict[str, Any] | None = None,
) -> M:
    """`model.model_validate(data)`, failing as `definitions.load()` does (file, key, reason),
    with keys written the way the scenario names them: list items by their `name`."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        err = max(e.errors(), key=lambda x: len(x["loc"]))  # in a union, the deepest is meant
        cause = err.get("ctx", {}).get("error")
        loc = _named(data, err["loc"])
        if isinstance(cause, KeyedError):
            raise InvalidDefinition(file, _key(prefix, *loc, cause.key), cause.reason) from e
        raise InvalidDefinition(file, _key(prefix, *loc) or "-", err["msg"]) from e


def _named(data: object, loc: tuple[int | str, ...]) -> list[str]:
    """A validation error's location with each index into a list of named items (steps,
    stages, pipelines) replaced by the item's name."""
    named: list[str] = []
    for part in loc:
        if isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
            name = data.get("name") if isinstance(data, dict) else None
            named.append(str(name) if isinstance(name, str) else str(part))
        else:
            data = data.get(part) if isinstance(data, dict) else None
            named.append(str(part))
    return named


def _key(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def merged(base: Any, override: Any, file: str, key: str) -> Any:
    """`override` deep-merged into `base`: tables merge key by key; a table merges into a
    list of named items (steps, stages, pipelines) item by name; anything else replaces."""
    if not isinstance(override, Mapping):
        return override
    if isinstance(base, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merged(base[k], v, file, _key(key, k)) if k in base else v
        return out
    if isinstance(base, list) and all(isinstance(x, dict) and "name" in x for x in base):
        items = list(base)
        names = [x["name"] for x in base]
        for k, v in override.items():
            if k not in names:
                raise InvalidDefinition(
                    file, _key(key, k), f"no such name here (known: {', '.join(names)})"
                )
            i = names.index(k)
            items[i] = merged(items[i], v, file, _key(key, k))
        return items
    return dict(override)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A scenario with its definitions built: what the what-if pass runs."""

    name: str
    source: str  # the scenario file, or `<name>` for one built in Python
    events_file: Path | None  # resolved: inside the scenario's folder
    scenario: Scenario
    funnel: FunnelDefinition
    pipelines: Pipelines
    as_of: datetime | None

    @property
    def changes_stream(self) -> bool:
        """Whether the scenario's folds are fed other events than the real stream."""
        f, t, s = self.scenario.filter, self.scenario.transform, self.scenario
        return bool(
            f.start or f.end or f.only.owners is not None or f.only.pipelines is not None
            or f.except_.owners or f.except_.pipelines or t.drop or t.lost_after_days
            or t.scale_amounts is not None or t.shift or s.events or s.events_file
        )  # fmt: skip

    @property
    def selects_leads(self) -> bool:
        """Whether leads (and their deals) are selected by their attributed touch."""
        f = self.scenario.filter
        return bool(
            f.only.channels is not None or f.only.campaigns is not None
            or f.except_.channels or f.except_.campaigns
        )  # fmt: skip


def resolve(
    scenario: Scenario,
    source: str,
    folder: Path,
    funnel: FunnelDefinition,
    pipelines: Pipelines,
    as_of: datetime | None,
    context: dict[str, Any] | None = None,
) -> Resolved:
    """Build the scenario's definitions on the engine's, and check its references
    (`context`: the model's interactions, `Interactions.context`)."""
    name = scenario.name or "scenario"
    funnel_data = merged(funnel.model_dump(), scenario.funnel, source, "funnel")
    funnel_def = validated(FunnelDefinition, funnel_data, source, "funnel", context)
    base = {"pipelines": [p.model_dump() for p in pipelines.pipelines]}
    pipelines_data = merged(base, {"pipelines": scenario.pipelines}, source, "")
    pipelines_def = validated(Pipelines, pipelines_data, source, "", context)
    _check_references(scenario, source, funnel_def, pipelines_def)
    events_file = _inside(folder, scenario.events_file, source, "events_file")
    return Resolved(
        name, source, events_file, scenario, funnel_def, pipelines_def, scenario.as_of or as_of
    )


def _inside(folder: Path, name: str | None, source: str, key: str) -> Path | None:
    """The file `name` names in `folder`, refused unless it lies inside it once resolved
    (no absolute path, no `..` or symlink out of it): a scenario reads its own files only."""
    if name is None:
        return None
    root = folder.resolve()
    path = (root / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(root):
        raise InvalidDefinition(source, key, f"not a file inside the scenario's folder {root}")
    return path


def _check_references(
    scenario: Scenario, source: str, funnel: FunnelDefinition, pipelines: Pipelines
) -> None:
    """Names a scenario refers to (stages, steps, pipelines, attributed fields) must exist."""
    f, t = scenario.filter, scenario.transform
    fields = ("channel", *funnel.breakdowns)
    for side, selection in (("only", f.only), ("except", f.except_)):
        if selection.campaigns is not None and "campaign" not in fields:
            raise InvalidDefinition(
                source,
                f"filter.{side}.campaigns",
                "campaigns are attributed by the funnel: keep 'campaign' in funnel.breakdowns",
            )
        for name in selection.pipelines or ():
            if name not in pipelines.by_name:
                known = ", ".join(pipelines.by_name)
                raise InvalidDefinition(
                    source, f"filter.{side}.pipelines", f"unknown pipeline {name!r} ({known})"
                )
    open_stages = {s for p in pipelines.pipelines for s in p.open_stages}
    if isinstance(t.lost_after_days, dict):
        for stage in t.lost_after_days:
            if stage not in open_stages:
                raise InvalidDefinition(
                    source,
                    f"transform.lost_after_days.{stage}",
                    f"not an open stage of any pipeline ({', '.join(sorted(open_stages))})",
                )
    stages = {s.name for p in pipelines.pipelines for s in p.stages}
    for i, shift in enumerate(t.shift):
        if shift.stage is not None and shift.stage not in stages:
            raise InvalidDefinition(
                source, f"transform.shift.{i}.stage", f"unknown stage {shift.stage!r}"
            )
        if shift.step is not None and shift.step not in funnel.names:
            raise InvalidDefinition(
                source,
                f"transform.shift.{i}.step",
                f"unknown funnel step {shift.step!r} ({', '.join(funnel.names)})",
            )
