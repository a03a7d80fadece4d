"""`dealengine ingest FILE.jsonl`: one interaction per line, recorded in file order, in batches.

A bad line is reported with its number and reason and stores nothing; the good lines are kept.
`strict` stops at the first bad line with nothing from the file stored. Every line has an
idempotency key (its `id`, or a digest of its content), so re-ingesting a file adds nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dealengine.domain.catalogue import Interactions
from dealengine.domain.errors import DealEngineError, InvalidEvent, StoreError
from dealengine.domain.interaction import Command, Outcome, Writer
from dealengine.domain.lines import RawLine, parse_line
from dealengine.logs import get_logger
from dealengine.projections.stream import collector_paused

log = get_logger("dealengine.ingest")

BATCH_LINES = 2000


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


@dataclass(slots=True)
class IngestReport:
    file: str
    lines: int = 0  # non-blank lines read
    recorded: int = 0  # lines that stored events
    events: int = 0
    duplicates: int = 0  # lines whose idempotency key was already recorded
    rejected: list[Rejected] = field(default_factory=list)
    strict: bool = False
    stored_through: int = 0  # the last line of the last batch stored (what an interrupt keeps)

    @property
    def ok(self) -> bool:
        return not self.rejected


def numbered_lines(
    path: Path, progress: Callable[[int], None] | None
) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if progress:
                progress(len(raw))
            if number == 1:
                raw = raw.removeprefix(UTF8_BOM)  # an editor's byte-order mark is not data
                check_first_line(path, raw)
            if raw.strip():
                yield number, raw


UTF8_BOM = b"\xef\xbb\xbf"


def check_first_line(path: Path, raw: bytes) -> None:
    """A file that is not JSONL at all (a CSV header first) is refused once, before any line,
    rather than as one 'not valid JSON' for every line."""
    first = raw.strip()
    if not first or first.startswith(b"{"):
        return
    if any(sep in first for sep in (b",", b";", b"\t", b"|")):
        raise DealEngineError(
            f"{path}: line 1 is not a JSON object but looks like a CSV header: "
            "a CSV needs --mapping MAPPING.toml (see projections/mappings)"
        )


def ingest_jsonl(
    engine: Writer,
    path: Path,
    *,
    actor: str,
    strict: bool = False,
    batch_lines: int = BATCH_LINES,
    progress: Callable[[int], None] | None = None,
    report: IngestReport | None = None,
) -> IngestReport:
    """Record the interactions of a JSONL file; `progress` is told the bytes read; `report`
    (if given) is filled as the batches are stored, so an interrupted caller can tell what."""
    report = report or IngestReport(file=str(path), strict=strict)
    return ingest_lines(
        engine, numbered_lines(path, progress), report, path.name, actor, batch_lines
    )


def ingest_lines(
    engine: Writer,
    numbered: Iterable[tuple[int, RawLine]],
    report: IngestReport,
    source: str,
    actor: str,
    batch_lines: int = BATCH_LINES,
) -> IngestReport:
    """Record numbered lines (bytes, or dicts already decoded) in batches, into `report`."""
    if report.strict:
        _ingest_strict(engine, numbered, source, actor, report)
    else:
        for batch in _batches(numbered, batch_lines):
            # A batch's commands, events and states make no reference cycles: freed by their
            # counts, they cost the cyclic collector only its scans (a fifth of the time of a
            # batched ingest, mostly full collections over everything the process holds).
            # Paused for one batch at a time, so it still runs between batches.
            with collector_paused():
                _ingest_batch(engine, batch, source, actor, report)
    return report


def _parse_all(
    numbered: Iterable[tuple[int, RawLine]],
    source: str,
    actor: str,
    report: IngestReport,
    *,
    stop: bool,
    interactions: Interactions,
) -> list[tuple[int, Command]]:
    """The lines as commands; the interactions of one CSV row (one line number) as one unit,
    stored whole or not at all: a row with one bad interaction is rejected once, whole."""
    parsed: list[tuple[int, Command]] = []
    last = refused = None
    for number, raw in numbered:
        if number == refused:
            continue
        try:
            cmd = parse_line(raw, source, actor, interactions)
        except DealEngineError as e:
            if number != last:
                report.lines += 1
            elif parsed and parsed[-1][0] == number:
                parsed.pop()  # the row's interactions before this one
            last = refused = number
            report.rejected.append(Rejected(number, str(e)))
            if stop:
                break
            continue
        if number != last:
            report.lines += 1
            last = number
            parsed.append((number, cmd))
        else:
            before = parsed[-1][1]
            parsed[-1] = (number, [*before, cmd] if isinstance(before, list) else [before, cmd])
    return parsed


def _ingest_batch(
    engine: Writer, batch: list[tuple[int, RawLine]], source: str, actor: str, report: IngestReport
) -> None:
    started = time.perf_counter()
    parsed = _parse_all(batch, source, actor, report, stop=False, interactions=engine.interactions)
    commands = [cmd for _, cmd in parsed]
    try:
        outcomes = engine.execute_batch(commands)
    except StoreError as e:
        # The store refused what the boundary let through: line by line, the culprit is
        # named and the other lines are stored.
        log.warning("ingest.batch_refused", file=source, error=_first_line(e))
        outcomes = [_alone(engine, cmd) for cmd in commands]
    report.stored_through = batch[-1][0]
    events = 0
    for (number, _), outcome in zip(parsed, outcomes, strict=True):
        if isinstance(outcome, DealEngineError):
            report.rejected.append(Rejected(number, str(outcome)))
        elif outcome.duplicate:
            report.duplicates += 1
        else:
            report.recorded += 1
            events += len(outcome.events)
    report.events += events
    report.rejected.sort(key=lambda r: r.line)
    log.info(
        "ingest.batch",
        file=source,
        lines=len(batch),
        events=events,
        seconds=round(time.perf_counter() - started, 3),
    )


def _alone(engine: Writer, command: Command) -> Outcome:
    try:
        return engine.execute_batch([command])[0]
    except StoreError as e:
        return InvalidEvent(f"not stored: {_first_line(e)}")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _ingest_strict(
    engine: Writer,
    numbered: Iterable[tuple[int, RawLine]],
    source: str,
    actor: str,
    report: IngestReport,
) -> None:
    parsed = _parse_all(
        numbered, source, actor, report, stop=True, interactions=engine.interactions
    )
    commands = [cmd for _, cmd in parsed]
    # A refusal before the first unparsable line is the first bad line: check, store nothing.
    outcomes = (
        engine.check(commands) if report.rejected else engine.execute_batch(commands, strict=True)
    )
    for (number, _), outcome in zip(parsed, outcomes, strict=False):
        if isinstance(outcome, DealEngineError):
            report.rejected[:] = [Rejected(number, str(outcome))]
            return
    if report.rejected:
        return
    for outcome in outcomes:
        assert not isinstance(outcome, DealEngineError)
        if outcome.duplicate:
            report.duplicates += 1
        else:
            report.recorded += 1
            report.events += len(outcome.events)


def _batches(
    items: Iterable[tuple[int, RawLine]], size: int
) -> Iterator[list[tuple[int, RawLine]]]:
    """`size` lines at a time; the interactions of one line (a CSV row) in the same batch."""
    batch: list[tuple[int, RawLine]] = []
    for item in items:
        if len(batch) >= size and item[0] != batch[-1][0]:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch
