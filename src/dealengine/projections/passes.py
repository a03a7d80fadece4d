"""Passes over the stored stream for any folds: the voided events left out, as of a time, and
split over processes by lead on a large store (projections/partitioned.py).

Every read that folds the whole stream (a rebuild of the views, an as-of view, the stays, the
waterfall, a what-if) goes through `StreamPasses`, so they read the stream the same way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from dealengine.domain.events import format_time
from dealengine.projections.partitioned import split_pass
from dealengine.projections.stream import (
    Fold,
    FoldPass,
    StreamEvent,
    Topics,
    close_rows,
    corrected,
    deals_only,
    decode,
    fold_rows,
)
from dealengine.store.application import Store
from dealengine.store.recorders import Partition, Row

T = TypeVar("T")
PartWork = Callable[[Partition | None, FoldPass], T]
PARALLEL_FROM = 50_000  # events: below, a pass stays in one process (forking costs ~10 ms)
MAX_PROCESSES = 4


class StreamPasses:
    """Folds over one store's stream. `processes` is the configured split (None: by size);
    `open_child_store` opens a store in a forked child (its own connection), or is None when
    a child cannot read this store (an in-memory one)."""

    def __init__(
        self,
        store: Store,
        processes: int | None,
        open_child_store: Callable[[], Store] | None,
    ) -> None:
        self.store = store
        self.processes = processes
        self.open_child_store = open_child_store

    def events(self, gt: int = 0) -> Iterator[StreamEvent]:
        """The whole event stream in recorded order, as the folds see it: without voided
        events and without the `event_voided` events themselves."""
        stop = self.store.position()
        rows = self.store.stream(gt, stop)
        return corrected(decode(rows, self.store.interactions.reading), self.store.voided_ids(stop))

    def fold(self, folds: Sequence[Fold[Any]], as_of: datetime | None) -> list[Any]:
        """One pass over the stream for every fold, in this process (over the deals' streams
        only, when the folds read no other)."""
        stop = self.store.position()  # the voids and the stream read at the same point
        rows = self.store.stream(0, stop, deals=deals_only(folds))
        topics = self.store.interactions.reading
        return fold_pass(rows, self.store.voided_ids(stop), topics)(folds, as_of)

    def over_partitions(self, work: PartWork[T]) -> list[T]:
        """`work(part, fold_pass)` for each partition of the leads, where `fold_pass(folds,
        as_of)` folds that partition's events: in one process, [work(None, fold_pass)]; on a
        large store, one partition per process (projections/partitioned.py)."""
        stop = self.store.position()  # the voids and the stream read at the same point
        skip_ids = self.store.voided_ids(stop)
        topics = self.store.interactions.reading
        processes = self.split(stop)
        if processes == 1:
            return [work(None, fold_pass(self.store.stream(0, stop), skip_ids, topics))]
        open_store = self.open_child_store
        assert open_store is not None

        def rows_in_child(part: Partition) -> Iterator[Row]:
            store = open_store()  # its own connection: never the parent's
            try:
                yield from store.stream(0, stop, part)
            finally:
                store.close()

        def in_part(part: Partition, rows: Iterable[Row]) -> T:
            return work(part, fold_pass(rows, skip_ids, topics))

        return split_pass(
            lambda part: self.store.stream(0, stop, part), rows_in_child, processes, in_part
        )

    def split(self, events: int) -> int:
        """How many processes a pass over `events` events is split over."""
        if self.open_child_store is None or sys.platform != "linux":
            return 1  # a child cannot open this store, or fork is not what makes it cheap
        if self.processes is not None:
            return self.processes
        if events < PARALLEL_FROM:
            return 1
        return idle_cores()


def idle_cores() -> int:
    """The cores this process may run on that no other work keeps busy: their number less
    the load average of the last minute, rounded; at least 1 (this process), at most
    MAX_PROCESSES. On a loaded machine a split only adds forking and contention."""
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores - round(os.getloadavg()[0]), MAX_PROCESSES))


def fold_pass(rows: Iterable[Row], skip_ids: set[str], topics: Topics) -> FoldPass:
    """The pass over `rows` (stored under `topics`) for any folds: the voided events left
    out; as of a time, the events that occurred after it skipped too (the same folds, fed
    less). Its callers pause the collector for the whole read (see `Queries.views`)."""

    def fold(folds: Sequence[Fold[Any]], as_of: datetime | None) -> list[Any]:
        bound = None if as_of is None else format_time(as_of)
        try:
            return fold_rows(rows, folds, skip_ids, bound, topics)
        finally:  # a fold that raised leaves the rows' cursor open: close it while the store is
            close_rows(rows)

    return fold
