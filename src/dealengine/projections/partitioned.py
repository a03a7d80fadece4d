"""A pass over the stream split over processes, each taking a partition of the leads.

The funnel's state is per lead, so the leads can be folded apart: process i of n reads the
events of the leads in partition i (selected in SQL by the last character of the stream id:
`projections.funnel.in_partition`) and the events of every deal (a deal counts for the lead it
was opened from), folds them with the same `FunnelProjection` (told its partition), and sends
back what its leads add to the reports (`FunnelTotals`: a few hundred counters and the days
between steps), which add up. The rebuild folds the pipeline, a small part of the stream,
whole in this process, beside partition 0; the what-if makes each pipeline report in one
partition. The engine's rebuild and the what-if pass both use it.

Processes are forked (Linux), so a child starts with the definitions and the voided ids in
memory; it opens its own read of the store (`rows_in_child`), never this process's connections.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from dealengine.domain.errors import DealEngineError
from dealengine.store.recorders import Partition, Row

Rows = Callable[[Partition], Iterable[Row]]
T = TypeVar("T")


Work = Callable[[Partition, Iterable[Row]], T]


def split_pass(rows: Rows, rows_in_child: Rows, processes: int, work: Work[T]) -> list[T]:
    """`work(part, rows)` for each partition `(i, processes)`: partition 0 in this process,
    the others in forked children (reading `rows_in_child`), which send their result back
    (pickled). The results, in partition order."""
    context = multiprocessing.get_context("fork")
    children: list[tuple[Any, Connection]] = []
    done = False
    try:
        for i in range(1, processes):
            reader, writer = context.Pipe(duplex=False)
            child = context.Process(
                target=_child,
                args=(writer, rows_in_child, (i, processes), work),
                name=f"dealengine-rebuild-{i}",
                daemon=True,
            )
            child.start()
            writer.close()  # the child holds the only writer: its death ends the reader
            children.append((child, reader))
        part = (0, processes)
        results = [work(part, rows(part))]
        results += [_receive(child, reader) for child, reader in children]
        done = True
        return results
    finally:
        for child, reader in children:
            reader.close()
            child.join(timeout=10 if done else 0)
            if child.is_alive():
                child.kill()
                child.join()


def _receive(child: Any, reader: Connection) -> Any:
    """A child's result; its error raised here."""
    try:
        status, value = reader.recv()
    except EOFError:
        child.join()
        raise DealEngineError(
            f"rebuild process {child.name} ended without its result (exit code {child.exitcode})"
        ) from None
    if status == "error":
        raise value
    return value


def _child(conn: Connection, rows: Rows, part: Partition, work: Work[T]) -> None:
    try:
        result: tuple[str, Any] = ("ok", work(part, rows(part)))
    except BaseException as e:  # sent to the parent, which raises it
        result = ("error", e if _picklable(e) else DealEngineError(f"{type(e).__name__}: {e}"))
    conn.send(result)
    conn.close()


def _picklable(e: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:
        return False
    return True
