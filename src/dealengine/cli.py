"""`dealengine`: parse, call the engine, render (Rich tables for people, JSON for programs)."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dealengine import demo as demo_history
from dealengine.domain.errors import DealEngineError
from dealengine.engine import Engine
from dealengine.ingest.jsonl import IngestReport, ingest_jsonl, ingest_lines
from dealengine.logs import configure
from dealengine.projections.funnel import FunnelBreakdown, FunnelView
from dealengine.projections.pipeline import PipelineBreakdown, PipelineView, money
from dealengine.settings import Settings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)
R = TypeVar("R")


class Format(StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    Format, typer.Option("--format", help="table for people, json for programs")
]


@app.callback()
def main_options(
    log_format: Annotated[
        str, typer.Option(help="console or json (logs go to stderr)")
    ] = "console",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "warning",
) -> None:
    """An event-sourced engine for sales funnels and deal pipelines.

    The store is a SQLite file (DEALENGINE_DB, default in your data directory), or PostgreSQL
    when DEALENGINE_DATABASE_URL=postgresql://... is set.
    """
    configure(log_format, log_level)


def using_engine(action: Callable[[Engine], R]) -> R:
    """Open the configured store, run `action` on it, close it."""

    def act() -> R:
        with Engine(Settings()) as e:
            return action(e)

    return run(act)


def run(action: Callable[[], R]) -> R:
    """Run a command; expected failures become one line on stderr and exit status 1."""
    try:
        return action()
    except (DealEngineError, PersistenceError, OSError, ValidationError) as e:
        err.print(f"[red]error:[/red] {_one_line(e)}", highlight=False)
        raise typer.Exit(1) from None


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def emit_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
def demo(
    leads: Annotated[int, typer.Option(min=1, help="how many leads to generate")] = 3000,
    seed: Annotated[int, typer.Option(help="the same seed gives the same history")] = 7,
    fmt: FormatOption = Format.table,
) -> None:
    """Record a realistic seeded history in the store, then show the funnel and the pipeline."""

    def act(e: Engine) -> tuple[IngestReport, FunnelView, PipelineView]:
        lines = demo_history.generate(leads, seed)
        report = IngestReport(file=f"demo (seed {seed})")
        with _progress(len(lines), "recording demo history", bytes_=False) as advance:
            numbered = ((n, line) for n, line in enumerate(lines, 1) if advance(1) is None)
            ingest_lines(e, numbered, report, f"demo-seed-{seed}", "dealengine demo")
        return report, *e.views()

    report, funnel, pipeline = using_engine(act)
    if fmt is Format.json:
        emit_json(
            {"funnel": funnel.model_dump(mode="json"), "pipeline": pipeline.model_dump(mode="json")}
        )
        return
    err.print(
        f"recorded {report.events} events from {report.recorded} interactions "
        f"({report.duplicates} already recorded)"
    )
    _show_funnel(funnel)
    _show_pipeline(pipeline)


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="JSONL: one interaction per line")],
    strict: Annotated[
        bool, typer.Option(help="stop at the first bad line; store nothing from the file")
    ] = False,
    actor: Annotated[
        str | None, typer.Option(help="who records these (default: your user name)")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Record the interactions in FILE, in file order; bad lines are reported and skipped."""

    def act(e: Engine) -> IngestReport:
        with _progress(file.stat().st_size, f"ingesting {file.name}") as advance:
            return ingest_jsonl(
                e, file, actor=actor or getpass.getuser(), strict=strict, progress=advance
            )

    report = using_engine(act)
    if fmt is Format.json:
        emit_json(
            {
                "file": report.file,
                "lines": report.lines,
                "recorded": report.recorded,
                "events": report.events,
                "duplicates": report.duplicates,
                "rejected": [{"line": r.line, "reason": r.reason} for r in report.rejected],
            }
        )
    else:
        for r in report.rejected:
            err.print(f"{file}:{r.line}: {r.reason}", highlight=False, markup=False)
        stored = (
            "nothing stored (--strict)"
            if strict and report.rejected
            else (
                f"{report.recorded} recorded ({report.events} events), "
                f"{report.duplicates} already recorded"
            )
        )
        err.print(
            f"{file}: {report.lines} lines: {stored}, {len(report.rejected)} rejected",
            highlight=False,
        )
    if report.rejected:
        raise typer.Exit(1)


@app.command()
def funnel(fmt: FormatOption = Format.table) -> None:
    """Leads at each funnel step, conversion and drop-off, overall and by first-touch channel."""
    view = using_engine(Engine.funnel)
    emit_json(view.model_dump(mode="json")) if fmt is Format.json else _show_funnel(view)


@app.command()
def pipeline(fmt: FormatOption = Format.table) -> None:
    """Open deals per stage with amounts and weighted forecast; won, lost, win rate; per owner."""
    view = using_engine(Engine.pipeline)
    emit_json(view.model_dump(mode="json")) if fmt is Format.json else _show_pipeline(view)


@app.command()
def history(
    id: Annotated[str, typer.Argument(help="a lead or deal id (or lead:ID / deal:ID)")],
    fmt: FormatOption = Format.table,
) -> None:
    """Every event of one lead or deal, in order."""
    events = using_engine(lambda e: e.history(id))
    if fmt is Format.json:
        emit_json([{"type": ev.event_type, **ev.model_dump(mode="json")} for ev in events])
        return
    table = Table(
        "v",
        "occurred at",
        "recorded at",
        "actor",
        "source",
        "type",
        "fields",
        title=f"history of {id}",
    )
    for ev in events:
        fields = ", ".join(f"{k}={v}" for k, v in ev.payload().items() if v is not None)
        table.add_row(
            str(ev.originator_version),
            _time(ev.occurred_at),
            _time(ev.recorded_at),
            ev.actor,
            ev.source,
            ev.event_type,
            fields,
        )
    out.print(table)


def _time(value: Any) -> str:
    return str(value.strftime("%Y-%m-%d %H:%M:%S"))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _show_funnel(view: FunnelView) -> None:
    table = Table(
        "step",
        "leads",
        "from previous",
        "from first",
        "drop-off",
        title=f"funnel: {view.leads} leads",
        title_justify="left",
    )
    for s in view.steps:
        table.add_row(
            s.name,
            str(s.leads),
            _pct(s.conversion_from_previous),
            _pct(s.conversion_from_first),
            str(s.drop_off),
        )
    out.print(table)
    by_channel = Table(
        "channel",
        *(s.name for s in view.steps),
        "overall",
        title="leads by first-touch channel",
        title_justify="left",
    )
    for channel, breakdown in view.by_channel.items():
        by_channel.add_row(
            channel, *(str(s.leads) for s in breakdown.steps), _pct(_overall(breakdown))
        )
    out.print(by_channel)


def _overall(breakdown: FunnelBreakdown) -> float | None:
    return breakdown.steps[-1].conversion_from_first if breakdown.steps else None


def _show_pipeline(view: PipelineView) -> None:
    table = Table(
        "stage",
        "probability",
        "open deals",
        f"amount ({view.currency})",
        "weighted",
        title=f"pipeline {view.name}",
        title_justify="left",
    )
    for s in view.stages:
        table.add_row(
            s.name,
            f"{s.probability:.0%}",
            str(s.open_deals),
            money(s.amount),
            money(s.weighted_amount),
        )
    table.add_row("won", "", str(view.won.deals), money(view.won.amount), "", style="green")
    table.add_row("lost", "", str(view.lost.deals), money(view.lost.amount), "", style="red")
    out.print(table)
    out.print(f"win rate: {_pct(view.win_rate)}")
    owners = Table(
        "owner",
        "open deals",
        "open amount",
        "weighted",
        "won",
        "lost",
        "win rate",
        title="by owner",
        title_justify="left",
    )
    for owner, b in view.by_owner.items():
        owners.add_row(owner, *_owner_row(b))
    out.print(owners)


def _owner_row(b: PipelineBreakdown) -> list[str]:
    return [
        str(sum(s.open_deals for s in b.stages)),
        money(sum((s.amount for s in b.stages), start=b.won.amount * 0)),
        money(sum((s.weighted_amount for s in b.stages), start=b.won.amount * 0)),
        f"{b.won.deals} ({money(b.won.amount)})",
        str(b.lost.deals),
        _pct(b.win_rate),
    ]


@contextmanager
def _progress(total: int, label: str, *, bytes_: bool = True) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for work of `total` units; yields `advance(n)`."""
    columns: list[Any] = [TextColumn(label), BarColumn()]
    columns += [DownloadColumn()] if bytes_ else [TextColumn("{task.completed}/{task.total}")]
    with Progress(
        *columns, TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def main() -> None:
    app()
