"""The ordered event stream as the folds see it: decoded JSON, no model built per event.

The data was validated when it was written; a fold reads only the fields it needs.

Corrections: the folds never see a voided event, nor the `event_voided` events themselves;
the engine passes the voided ids (`skip_ids`), read with one indexed query.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple, NoReturn, Protocol, TypeVar

import orjson

from dealengine.domain.catalogue import BUILT_IN, Reading
from dealengine.domain.chain import topic_of
from dealengine.domain.errors import UndefinedInModel
from dealengine.domain.rates import RATE_EVENTS
from dealengine.store.recorders import Row

V = TypeVar("V")

Topics = Mapping[str, Reading]  # a model's stored topics: Interactions.reading
VOIDED = "event_voided"
# Exchange rates are read apart, up front (`Store.rate_events`): no fold sees them.
RATE_TOPICS = frozenset(topic_of(cls) for cls in RATE_EVENTS)


class StreamEvent(NamedTuple):
    position: int  # notification id: the order events were recorded in
    stream: str  # a lead's or a deal's stream id (domain/streams.py)
    type: str
    data: dict[str, Any]  # the event's stored JSON: envelope and fields


class Fold(Protocol[V]):
    """A view built by folding the stream: `initial()`, then `apply(view, event)` per event.

    A fold may also say which event types it reads (`event_types`, a set of names): the pass
    then hands it only those, and decodes no event that no fold reads. Without it, a fold is
    given every event. One that reads the deals' streams only says so (`deals_only = True`):
    a pass for such folds alone reads no other stream.
    """

    def initial(self) -> V: ...

    def apply(self, view: V, event: StreamEvent) -> None: ...


FoldPass = Callable[[Sequence[Fold[Any]], datetime | None], list[Any]]
"""A pass over the stream: the folds' views from the events that occurred by a time."""


def deals_only(folds: Sequence[Fold[Any]]) -> bool:
    """Whether every one of `folds` reads the deals' streams only."""
    return all(getattr(fold, "deals_only", False) for fold in folds)


def event_types_of(fold: Fold[Any]) -> Collection[str] | None:
    """The event types `fold` reads (None: all of them)."""
    types: Collection[str] | None = getattr(fold, "event_types", None)
    return types


def decode(
    rows: Iterable[Row],
    topics: Topics = BUILT_IN.reading,
    *,
    types: Collection[str] | None = None,
) -> Iterator[StreamEvent]:
    """Stored rows as stream events: the JSON decoded (and upcast to its type's version), the
    topic turned into the event type, by the model's `topics`. A rate's event is left out
    (the reports read rates apart), and with `types`, every event but those types' and the
    voids. An event of a type the model does not define closes the rows (their cursor)
    before it is raised."""
    loads, new = orjson.loads, tuple.__new__
    for position, stream, topic, state in rows:
        reading = topics.get(topic)
        if reading is None:
            if topic not in RATE_TOPICS:
                close_rows(rows)
                _unknown(position, stream, topic)
            continue
        event_type, upcast = reading
        if types is not None and event_type not in types and event_type != VOIDED:
            continue
        data = loads(state) if upcast is None else upcast(loads(state))
        yield new(StreamEvent, (position, stream, event_type, data))


def close_rows(rows: Iterable[Row]) -> None:
    close = getattr(rows, "close", None)
    if close is not None:
        close()


def _unknown(position: int, stream: str, topic: str) -> NoReturn:
    raise UndefinedInModel(
        f"event {position} of {stream} is of type {topic!r}, which the definitions in use "
        "do not define"
    )


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a fold builds its (long-lived) state: its
    generation scans over millions of new dicts cost about a third of a large rebuild. The
    folds make no reference cycles; collection resumes afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def fold_all(events: Iterable[StreamEvent], folds: Sequence[Fold[Any]]) -> list[Any]:
    """Feed one pass over `events` to every fold; return their views."""
    views = [f.initial() for f in folds]
    pairs = list(zip([f.apply for f in folds], views, strict=True))
    if len(pairs) == 1:
        apply, view = pairs[0]
        for event in events:
            apply(view, event)
    else:
        for event in events:
            for apply, view in pairs:
                apply(view, event)
    return views


def corrected(events: Iterable[StreamEvent], skip_ids: Collection[str]) -> Iterator[StreamEvent]:
    """`events` without the voided ones (ids in `skip_ids`) and without the voids themselves."""
    if not skip_ids:
        yield from events  # no voids recorded: nothing to leave out
        return
    for event in events:
        if event.type != VOIDED and event.data["id"] not in skip_ids:
            yield event


def fold_rows(
    rows: Iterable[Row],
    folds: Sequence[Fold[Any]],
    skip_ids: Collection[str] | None = None,
    bound: str | None = None,
    topics: Topics = BUILT_IN.reading,
) -> list[Any]:
    """Decode `rows` and feed each event to the folds that read its type, in one loop: the
    rebuild's hot path. Events in `skip_ids` (voided) and the voids themselves are left out
    when `skip_ids` is given; with `bound` (a fixed-width UTC time), so are the events that
    occurred after it. An event no fold reads is not decoded; one stored at an older version
    of its type is upcast (`topics`: the model's)."""
    views = [f.initial() for f in folds]
    wanted = [event_types_of(f) for f in folds]
    table: dict[str, tuple[str, list[tuple[Any, Any]], Any]] = {}
    for topic, (event_type, upcast) in topics.items():
        pairs = [
            (f.apply, v)
            for f, v, types in zip(folds, views, wanted, strict=True)
            if types is None or event_type in types
        ]
        table[topic] = (event_type, [] if skip_ids and event_type == VOIDED else pairs, upcast)
    table.update((topic, ("", [], None)) for topic in RATE_TOPICS)
    loads, new = orjson.loads, tuple.__new__
    for position, stream, topic, state in rows:
        entry = table.get(topic)
        if entry is None:
            _unknown(position, stream, topic)
        event_type, pairs, upcast = entry
        if not pairs:
            continue
        data = loads(state) if upcast is None else upcast(loads(state))
        if (bound is not None and data["occurred_at"] > bound) or (
            skip_ids and data["id"] in skip_ids
        ):
            continue
        event = new(StreamEvent, (position, stream, event_type, data))
        for apply, view in pairs:
            apply(view, event)
    return views
