"""CSV import by mapping: a TOML file (validated by pydantic) turns each row into events.

Every value is a template over the row's columns ("olist-{mql_id}") or a column spec with a
value map, a default, a date format and timezone. The events go through the same ingest as
JSONL lines: same errors (now naming line and column), same batches, idempotency, `strict`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator

from dealengine.domain.definitions import Definition, event_types, load
from dealengine.domain.errors import DealEngineError, InvalidEvent
from dealengine.domain.interaction import Writer
from dealengine.domain.lines import RawLine, undecodable
from dealengine.ingest.jsonl import IngestReport, ingest_lines

PLACEHOLDER = re.compile(r"{([^{}]+)}")
ESCAPED = re.compile("[\udc80-\udcff]")  # an undecodable byte, read with surrogateescape


class Column(Definition):
    """A value from one column: mapped, defaulted, or read as a time."""

    column: str
    map: dict[str, str] = Field(default_factory=dict)
    only_mapped: bool = False  # a value missing from `map` is an error ("unknown value")
    default: str | None = None  # for an empty cell; without it an empty cell is an error
    optional: bool = False  # an empty cell leaves the field out
    format: str | None = None  # strptime format: the column holds a time
    timezone: str = "UTC"  # the time's zone when the format has none

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


Value = str | Column


class Condition(Definition):
    column: str
    equals: str | None = None
    not_equals: str | None = None


class EventMapping(Definition):
    type: str
    lead_id: Value | None = None
    deal_id: Value | None = None
    occurred_at: Value
    id: Value  # the idempotency key: the same row always makes the same key
    fields: dict[str, Value] = Field(default_factory=dict)
    when: Condition | None = None  # the row makes this event only when the condition holds

    @field_validator("type")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        if value not in event_types(info):
            raise ValueError(f"unknown event type {value!r}")
        return value


class Mapping(Definition):
    """A CSV mapping file: how rows become events."""

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    events: list[EventMapping] = Field(min_length=1)


class BadCell(InvalidEvent):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column '{column}': {reason}")


def load_mapping(path: Path, context: dict[str, Any] | None = None) -> Mapping:
    """The mapping file; `context`: the model's interactions (`Interactions.context`), whose
    types it may map rows to (default: the built-in ones)."""
    return load(Mapping, path, context)


def value_of(spec: Value, row: dict[str, str]) -> Any:
    """One value from a row, by template or column spec; BadCell names the column."""
    if isinstance(spec, str):
        return _render(spec, row)
    if spec.column not in row:
        raise BadCell(spec.column, "missing from the file")
    cell = (row[spec.column] or "").strip()
    if cell in spec.map:
        cell = spec.map[cell]
    elif spec.only_mapped:
        raise BadCell(spec.column, f"unknown value {cell!r} (known: {', '.join(spec.map)})")
    if cell == "":
        if spec.default is not None:
            cell = spec.default
        elif spec.optional:
            return None
        else:
            raise BadCell(spec.column, "empty")
    if spec.format is None:
        return cell
    try:
        moment = datetime.strptime(cell, spec.format)
    except ValueError:
        raise BadCell(
            spec.column, f"{cell!r} does not match the date format {spec.format!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(spec.timezone))
    return moment.isoformat()


def _render(template: str, row: dict[str, str]) -> str:
    def cell(match: re.Match[str]) -> str:
        column = match.group(1)
        if column not in row:
            raise BadCell(column, "missing from the file")
        value = (row[column] or "").strip()
        if not value:
            raise BadCell(column, f"empty (needed by {template!r})")
        return value

    return PLACEHOLDER.sub(cell, template)


def interactions(mapping: Mapping, row: dict[str, str]) -> list[dict[str, Any]]:
    """The JSONL-shaped interactions one row maps to (in the mapping's order)."""
    made = []
    for event in mapping.events:
        if event.when and not _holds(event.when, row):
            continue
        line: dict[str, Any] = {"type": event.type}
        for key in ("lead_id", "deal_id", "occurred_at", "id"):
            spec = getattr(event, key)
            if spec is not None:
                line[key] = value_of(spec, row)
        for name, spec in event.fields.items():
            value = value_of(spec, row)
            if value is not None:
                line[name] = value
        made.append(line)
    return made


def _holds(condition: Condition, row: dict[str, str]) -> bool:
    if condition.column not in row:
        raise BadCell(condition.column, "missing from the file")
    cell = (row[condition.column] or "").strip()
    if condition.equals is not None and cell != condition.equals:
        return False
    return condition.not_equals is None or cell != condition.not_equals


def mapped_rows(
    path: Path, mapping: Mapping, progress: Callable[[int], None] | None
) -> Iterator[tuple[int, RawLine]]:
    """(line number, interaction) for every event of every row; a row that cannot be mapped
    or decoded gives its error instead, reported like a bad line."""
    encoding = mapping.encoding
    with path.open(encoding=reading(encoding), errors="surrogateescape", newline="") as f:
        text: list[str] = []  # the text of the row being read

        def lines() -> Iterator[str]:
            for physical in f:
                text.append(physical)
                yield physical

        reader = csv.DictReader(lines(), delimiter=mapping.delimiter)
        if reader.fieldnames is None:  # reads the header; an empty file has none
            return
        text.clear()  # the header's text is not the first row's
        for row in reader:
            if progress:
                progress(1)
            line = reader.line_num
            read = "".join(text)
            text.clear()
            if ESCAPED.search(read):
                raw = read.encode(encoding, "surrogateescape")
                yield line, InvalidEvent(undecodable(raw, encoding) or f"not valid {encoding}")
                continue
            try:
                made = interactions(mapping, row)
            except InvalidEvent as e:
                yield line, e
                continue
            for interaction in made:
                yield line, interaction


def reading(encoding: str) -> str:
    """The codec to read a file of `encoding` with: UTF-8 skips a byte-order mark (as Excel
    writes one), which would otherwise be part of the first column's name."""
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def columns_needed(mapping: Mapping) -> list[str]:
    """Every column the mapping reads: column specs, template placeholders, conditions."""
    needed: dict[str, None] = {}

    def add(spec: Value | None) -> None:
        if isinstance(spec, Column):
            needed[spec.column] = None
        elif isinstance(spec, str):
            needed.update(dict.fromkeys(PLACEHOLDER.findall(spec)))

    for event in mapping.events:
        for spec in (event.lead_id, event.deal_id, event.occurred_at, event.id):
            add(spec)
        for spec in event.fields.values():
            add(spec)
        if event.when is not None:
            needed[event.when.column] = None
    return list(needed)


def check_header(path: Path, mapping: Mapping) -> None:
    """Refuse, once and before any row, a file whose header does not fit the mapping: a
    wrong delimiter, or columns the mapping needs that the file lacks (the wrong mapping)."""
    with path.open(encoding=reading(mapping.encoding), errors="replace", newline="") as f:
        header = next(csv.reader(f, delimiter=mapping.delimiter), None)
    if header is None:
        return  # an empty file: no rows, reported as such
    missing = [c for c in columns_needed(mapping) if c not in header]
    if not missing:
        return
    if len(header) == 1:
        found = [d for d in (",", ";", "\t", "|") if d != mapping.delimiter and d in header[0]]
        if found:
            raise DealEngineError(
                f"{path}: the header has one column with {found[0]!r} in it: the file is "
                f"delimited by {found[0]!r}, the mapping says {mapping.delimiter!r} "
                f"(set delimiter = {found[0]!r} in the mapping)"
            )
    shown = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
    raise DealEngineError(
        f"{path}: the mapping needs columns the file lacks: {', '.join(missing)} "
        f"(the file has: {shown}); is it the right mapping for this file?"
    )


def ingest_csv(
    engine: Writer,
    path: Path,
    mapping: Mapping,
    *,
    actor: str,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
    report: IngestReport | None = None,
) -> IngestReport:
    """Record the events a CSV file maps to; bad rows are named by line and column (`report`:
    as for ingest_jsonl)."""
    check_header(path, mapping)
    report = report or IngestReport(file=str(path), strict=strict)
    return ingest_lines(engine, mapped_rows(path, mapping, progress), report, path.name, actor)
