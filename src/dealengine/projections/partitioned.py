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
A partition can also hand partition 0 a value before its result (`Early`): the what-if's
selections of leads, which partition 0 needs for its pipeline reports on the selected leads.
"""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from dealengine.domain.errors import DealEngineError
from dealengine.store.recorders import Partition, Row

Rows = Callable[[Partition], Iterable[Row]]
T = TypeVar("T")


class Early:
    """A value each partition hands partition 0 before its result: `send` it (in a child:
    down the pipe at once; in partition 0: kept), `gather` them in partition 0 (waiting for
    the children's). A partition that sends calls `send` once, and the same partitions send
    in every process."""

    def __init__(self, conn: Connection | None = None) -> None:
        self.conn = conn  # a child's end of the pipe to partition 0
        self.children: list[tuple[Any, Connection]] = []  # in partition 0
        self.results: dict[int, Any] = {}  # a child's result read while gathering
        self.mine: Any = None
        self.sending: threading.Thread | None = None

    def send(self, value: Any) -> None:
        """In a child, sent by a thread: the pipe holds little, and partition 0 reads it only
        when it gathers; the child goes on meanwhile (`sent` waits for the thread)."""
        if self.conn is None:
            self.mine = value
        else:
            self.sending = threading.Thread(target=self.conn.send, args=(("early", value),))
            self.sending.start()

    def sent(self) -> None:
        if self.sending is not None:
            self.sending.join()

    def gather(self) -> list[Any]:
        """Partition 0's value, then each child's (None from one that sent none)."""
        values = [self.mine]
        for n, (child, reader) in enumerate(self.children):
            status, value = _receive(child, reader)
            if status == "early":
                values.append(value)
            else:  # its result: it sent none
                self.results[n] = value
                values.append(None)
        return values


Work = Callable[[Partition, Iterable[Row], Early], T]


def split_pass(rows: Rows, rows_in_child: Rows, processes: int, work: Work[T]) -> list[T]:
    """`work(part, rows, early)` for each partition `(i, processes)`: partition 0 in this
    process, the others in forked children (reading `rows_in_child`), which send their result
    back (pickled). The results, in partition order."""
    context = multiprocessing.get_context("fork")
    children: list[tuple[Any, Connection]] = []
    early = Early()
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
        early.children = children
        results = [work(part, rows(part), early)]
        for n, (child, reader) in enumerate(children):
            if n in early.results:
                results.append(early.results[n])
                continue
            status, value = _receive(child, reader)
            if status == "early":  # sent, not gathered: its result follows
                status, value = _receive(child, reader)
            results.append(value)
        done = True
        return results
    finally:
        for child, reader in children:
            reader.close()
            child.join(timeout=10 if done else 0)
            if child.is_alive():
                child.kill()
                child.join()


def _receive(child: Any, reader: Connection) -> tuple[str, Any]:
    """A child's next message: ("early", value) or ("ok", result); its error raised here."""
    try:
        status, value = reader.recv()
    except EOFError:
        child.join()
        raise DealEngineError(
            f"rebuild process {child.name} ended without its result (exit code {child.exitcode})"
        ) from None
    if status == "error":
        raise value
    return status, value


def _child(conn: Connection, rows: Rows, part: Partition, work: Work[T]) -> None:
    early = Early(conn)
    try:
        result: tuple[str, Any] = ("ok", work(part, rows(part), early))
    except BaseException as e:  # sent to the parent, which raises it
        result = ("error", e if _picklable(e) else DealEngineError(f"{type(e).__name__}: {e}"))
    early.sent()
    conn.send(result)
    conn.close()


def _picklable(e: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:
        return False
    return True
