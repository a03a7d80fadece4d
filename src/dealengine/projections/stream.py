"""The ordered event stream as the folds see it: decoded JSON, no model built per event.

The data was validated when it was written; a fold reads only the fields it needs.

Corrections: the folds never see a voided event, nor the `event_voided` events themselves;
the engine passes the voided ids (`skip_ids`), read with one indexed query.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple, NoReturn, Protocol, TypeVar

import orjson

from dealengine.domain.chain import topic_of
from dealengine.domain.events import EVENT_TYPES, VOID_EVENTS
from dealengine.store.recorders import Row

V = TypeVar("V")

TYPE_OF_TOPIC: dict[str, str] = {topic_of(cls): name for name, cls in EVENT_TYPES.items()}
TYPE_OF_TOPIC.update({topic_of(cls): cls.event_type for cls in VOID_EVENTS})
VOIDED = "event_voided"


class StreamEvent(NamedTuple):
    position: int  # notification id: the order events were recorded in
    stream: str  # "lead:<id>" or "deal:<id>"
    type: str
    data: dict[str, Any]  # the event's stored JSON: envelope and fields


class Fold(Protocol[V]):
    """A view built by folding the stream: `initial()`, then `apply(view, event)` per event.

    A fold may also say which event types it reads (`event_types`, a set of names): the pass
    then hands it only those, and decodes no event that no fold reads. Without it, a fold is
    given every event.
    """

    def initial(self) -> V: ...

    def apply(self, view: V, event: StreamEvent) -> None: ...


FoldPass = Callable[[Sequence[Fold[Any]], datetime | None], list[Any]]
"""A pass over the stream: the folds' views from the events that occurred by a time."""


def event_types_of(fold: Fold[Any]) -> Collection[str] | None:
    """The event types `fold` reads (None: all of them)."""
    types: Collection[str] | None = getattr(fold, "event_types", None)
    return types


def decode(rows: Iterable[Row]) -> Iterator[StreamEvent]:
    """Stored rows as stream events: the JSON decoded, the topic turned into the event type."""
    type_of, loads, new = TYPE_OF_TOPIC, orjson.loads, tuple.__new__
    for position, stream, topic, state in rows:
        event_type = type_of.get(topic) or _unknown(position, stream, topic)
        yield new(StreamEvent, (position, stream, event_type, loads(state)))


def decode_batch(rows: Iterator[Row], size: int, types: Collection[str]) -> list[StreamEvent]:
    """The next `size` rows as stream events (as `decode`), but only the events of `types`
    and the voids decoded: the others come with empty data, to be counted as read (a
    materialised view's position), not applied."""
    type_of, loads, new = TYPE_OF_TOPIC, orjson.loads, tuple.__new__
    events = []
    for position, stream, topic, state in itertools.islice(rows, size):
        event_type = type_of.get(topic) or _unknown(position, stream, topic)
        data = loads(state) if event_type in types or event_type == VOIDED else {}
        events.append(new(StreamEvent, (position, stream, event_type, data)))
    return events


def _unknown(position: int, stream: str, topic: str) -> NoReturn:
    raise ValueError(f"event {position} of {stream} has an unknown topic {topic!r}")


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
) -> list[Any]:
    """Decode `rows` and feed each event to the folds that read its type, in one loop: the
    rebuild's hot path. Events in `skip_ids` (voided) and the voids themselves are left out
    when `skip_ids` is given; with `bound` (a fixed-width UTC time), so are the events that
    occurred after it. An event no fold reads is not decoded."""
    views = [f.initial() for f in folds]
    wanted = [event_types_of(f) for f in folds]
    table: dict[str, tuple[str, list[tuple[Any, Any]]]] = {}
    for topic, event_type in TYPE_OF_TOPIC.items():
        pairs = [
            (f.apply, v)
            for f, v, types in zip(folds, views, wanted, strict=True)
            if types is None or event_type in types
        ]
        table[topic] = (event_type, [] if skip_ids and event_type == VOIDED else pairs)
    loads, new = orjson.loads, tuple.__new__
    for position, stream, topic, state in rows:
        entry = table.get(topic)
        if entry is None:
            _unknown(position, stream, topic)
        event_type, pairs = entry
        if not pairs:
            continue
        data = loads(state)
        if (bound is not None and data["occurred_at"] > bound) or (
            skip_ids and data["id"] in skip_ids
        ):
            continue
        event = new(StreamEvent, (position, stream, event_type, data))
        for apply, view in pairs:
            apply(view, event)
    return views
