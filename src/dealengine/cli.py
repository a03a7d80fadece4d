"""`dealengine`: parse, call the engine, render (Rich tables for people, JSON for programs).

Start-up is kept short (`dealengine --help`): this module imports only Typer; the engine, the
event models, PostgreSQL's driver, Rich's tables and Plotly are imported inside the commands
that use them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    from rich.console import Console

    from dealengine.engine import Engine
    from dealengine.ingest.jsonl import IngestReport
    from dealengine.projections.funnel import FunnelView
    from dealengine.projections.pipeline import PipelineView
    from dealengine.settings import Settings
    from dealengine.views.materialised import Lag, ProjectionName

FunnelMode = Literal["reached", "ordered", "strict"]
GLOBAL_OPTIONS = ("--log-format", "--log-level", "--tenant", "--definitions")


def _plain_help(params: list[Any], ctx: Any) -> list[Any]:
    """Help as command lines write it: `--actor ACTOR`, `--mode reached|ordered|strict`, a
    flag alone (Typer shows `<str>`, `<reached|ordered|strict>`, `<bool>`)."""
    for param in params:
        if isinstance(param, TyperArgument):
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        if not isinstance(param, TyperOption) or param.metavar is not None:
            continue
        if param.is_flag:
            param.metavar = ""
        else:
            shown = param.display_type(ctx)
            choices = "|" in shown and not shown.startswith("<list")
            param.metavar = shown.strip("<>") if choices else (param.name or "").upper()
    return params


def _usage(params: list[Any], ctx: Any) -> list[str]:
    """The usage line: `[OPTIONS] FILE [MORE]...` (Typer writes a required one as `{FILE}`)."""
    pieces = ["[OPTIONS]"]
    for param in params:
        if isinstance(param, TyperArgument):
            name = param.metavar or (param.name or "").upper()
            name = name if param.required else f"[{name}]"
            pieces.append(name if param.nargs == 1 or name.endswith("...") else f"{name}...")
    return pieces


class Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_help(super().get_params(ctx), ctx)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _usage(self.get_params(ctx), ctx)


class Commands(TyperGroup):
    """The command group: global options are accepted after the command too."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_help(super().get_params(ctx), ctx)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Each command's first sentence whole (wrapped), not cut at the terminal's width."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1000)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def hoist_global_options(args: list[str]) -> list[str]:
    """`dealengine funnel --log-level info` as `dealengine --log-level info funnel`."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg in GLOBAL_OPTIONS and i + 1 < len(args):
            front += args[i : i + 2]
            i += 2
            continue
        if arg.startswith(tuple(f"{o}=" for o in GLOBAL_OPTIONS)):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


app = typer.Typer(
    help="An event-sourced engine for sales funnels and deal pipelines.",
    cls=Commands,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
command = app.command  # every command is a `Command` (see `_command`)
R = TypeVar("R")


def _command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return command(*args, cls=Command, **kwargs)


@cache
def out() -> Console:
    """stdout, made on first use (Rich is imported then)."""
    from dealengine.render import plain_console

    return plain_console(width=None if sys.stdout.isatty() else 160)


@cache
def err() -> Console:
    from dealengine.render import plain_console

    return plain_console(stderr=True, soft_wrap=True)


class Format(StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    Format,
    typer.Option("--format", metavar="table|json", help="table for people, json for programs"),
]


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        sys.stdout.write(f"dealengine {version('dealengine')}\n")
        raise typer.Exit()


@app.callback()
def main_options(
    log_format: Annotated[
        str,
        typer.Option(metavar="console|json", help="logs go to stderr; after the command too"),
    ] = "console",
    log_level: Annotated[
        str, typer.Option(metavar="debug|info|warning|error", help="after the command too")
    ] = "warning",
    definitions: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="the model folder (dealengine init DIR); default: DEALENGINE_DEFINITIONS",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="print the version"),
    ] = False,
    tenant: Annotated[
        str | None,
        typer.Option(
            envvar="DEALENGINE_TENANT", metavar="NAME", help="the workspace; after the command too"
        ),
    ] = None,
) -> None:
    """An event-sourced engine for sales funnels and deal pipelines.

    The store is a SQLite file (DEALENGINE_DB, default in your data directory), or PostgreSQL
    when DEALENGINE_DATABASE_URL=postgresql://... is set; --tenant NAME (DEALENGINE_TENANT):
    a tenant's own store (dealengine tenants). The definitions are the shipped ones, or the
    model folder of --definitions or DEALENGINE_DEFINITIONS.
    """
    from dealengine.logs import configure

    configure(log_format, log_level)
    chosen.tenant = tenant
    chosen.definitions = definitions
    chosen.model_source = None


class Chosen:
    """What the global options chose for this invocation."""

    tenant: str | None = None
    definitions: Path | None = None
    model_source: str | None = None  # where the engine opened read its definitions


chosen = Chosen()


def chosen_settings(**overrides: Any) -> Settings:
    """The environment's settings, with --definitions if given."""
    from dealengine.settings import Settings

    if chosen.definitions is not None:
        overrides.setdefault("definitions", chosen.definitions)
    return Settings(**overrides)


def using_engine(action: Callable[[Engine], R]) -> R:
    """Open the configured store, run `action` on it, close it."""

    def act() -> R:
        from dealengine.engine import Engine

        with Engine(chosen_settings(), tenant=chosen.tenant) as e:
            chosen.model_source = e.model.source
            return action(e)

    return run(act)


def run(action: Callable[[], R]) -> R:
    """Run a command; expected failures become one line on stderr and exit status 1."""
    from eventsourcing.persistence import PersistenceError
    from pydantic import ValidationError
    from rich.text import Text

    from dealengine.domain.errors import DealEngineError, UndefinedInModel

    try:
        return action()
    except (DealEngineError, PersistenceError, OSError, ValidationError) as e:
        line = _one_line(e)
        if isinstance(e, UndefinedInModel):
            line += f"; definitions in use: {_definitions_in_use()}"
        err().print(Text.assemble(("error:", "red"), f" {line}"))
        raise typer.Exit(1) from None


def _definitions_in_use() -> str:
    """Where the engine of this command read its definitions."""
    from dealengine.domain.definitions import definitions_dir

    if chosen.model_source is not None:
        return chosen.model_source
    return str((chosen_settings().definitions or definitions_dir()).resolve())


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def emit_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


@_command()
def demo(
    leads: Annotated[int, typer.Option(min=1, help="how many leads to generate")] = 3000,
    seed: Annotated[int, typer.Option(help="the same seed gives the same history")] = 7,
    fmt: FormatOption = Format.table,
) -> None:
    """Record a realistic seeded history in the store, then show the funnel and the pipeline."""
    from dealengine import demo as demo_history
    from dealengine.ingest.jsonl import IngestReport, ingest_lines
    from dealengine.render import show_funnel, show_pipeline

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
    err().print(
        f"recorded {report.events} events from {report.recorded} interactions "
        f"({report.duplicates} already recorded)"
    )
    show_funnel(out(), funnel)
    show_pipeline(out(), pipeline)


@_command()
def ingest(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="JSONL (a line each) or CSV (--mapping)")
    ],
    mapping: Annotated[
        Path | None, typer.Option(help="a TOML mapping: how each CSV row becomes events")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="stop at the first bad line; store nothing from the file")
    ] = False,
    actor: Annotated[
        str | None, typer.Option(help="who records these (default: your user name)")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Record the interactions in FILE, in file order; bad lines are reported and skipped."""
    import getpass

    from dealengine.ingest.jsonl import IngestReport, ingest_jsonl
    from dealengine.ingest.mapping import ingest_csv, load_mapping

    if mapping is None and file.suffix.lower() in (".csv", ".tsv"):
        err().print(
            f"error: {file} is a CSV: give --mapping MAPPING.toml, how each row becomes "
            "events (see projections/mappings)"
        )
        raise typer.Exit(1)

    so_far = IngestReport(file=str(file), strict=strict)

    def act(e: Engine) -> IngestReport:
        who = actor or getpass.getuser()
        if mapping is not None:
            rules = load_mapping(mapping, e.interactions.context)
            with _progress(_rows(file), f"ingesting {file.name}", bytes_=False) as advance:
                return ingest_csv(
                    e, file, rules, actor=who, strict=strict, progress=advance, report=so_far
                )
        with _progress(file.stat().st_size, f"ingesting {file.name}") as advance:
            return ingest_jsonl(e, file, actor=who, strict=strict, progress=advance, report=so_far)

    try:
        report = using_engine(act)
    except KeyboardInterrupt:
        _interrupted(file, so_far)
        raise typer.Exit(130) from None
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
            err().print(f"{file}:{r.line}: {r.reason}")
        stored = (
            "nothing stored (--strict)"
            if strict and report.rejected
            else (
                f"{report.recorded} interactions recorded ({report.events} events), "
                f"{report.duplicates} already recorded"
            )
        )
        err().print(f"{file}: {report.lines} lines: {stored}, {len(report.rejected)} rejected")
    if report.lines == 0:
        err().print(f"warning: {file}: no lines: nothing to record (an empty file?)")
    if report.rejected or report.lines == 0:
        raise typer.Exit(1)


PipelineOption = Annotated[
    str | None, typer.Option("--pipeline", metavar="NAME", help="default: the first")
]


def _interrupted(file: Path, report: IngestReport) -> None:
    """One line after Ctrl-C: what was stored, that the store is intact, how to resume."""
    through = report.stored_through
    stored = (
        f"lines 1-{through} stored ({report.recorded} interactions recorded, "
        f"{report.duplicates} already recorded)"
        if through
        else "nothing stored"
    )
    err().print(
        f"interrupted: {file}: {stored}; the store is intact (a batch is stored whole or not "
        "at all); run the same command again to resume: lines already stored are skipped by "
        "their idempotency keys"
    )


@_command()
def init(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="a new or empty folder")],
) -> None:
    """Write a working copy of the shipped definitions into DIR (pipeline.toml, funnel.toml,
    interactions.toml, scenarios/, mappings/), to edit and use with --definitions DIR."""
    from dealengine.domain.model import init_model_folder

    written = run(lambda: init_model_folder(folder))
    for path in written:
        out().print(str(path))
    err().print(f"use it: dealengine --definitions {folder} ... or DEALENGINE_DEFINITIONS={folder}")


@_command()
def info(fmt: FormatOption = Format.table) -> None:
    """The store in use, the definitions in use (folder and digests), and how many events."""
    from dealengine.store.application import store_name
    from dealengine.views.materialised import digest

    def act(e: Engine) -> dict[str, Any]:
        changes = e.model_changes()
        return ({"tenant": e.tenant} if e.tenant else {}) | {
            "store": store_name(e.settings),
            "backend": "postgresql" if e.settings.database_url else "sqlite",
            "definitions": e.model.source,
            "model_digest": e.model.digest,
            "models_recorded": len({c.digest for c in changes}),
            "last_recorded_model": changes[-1].digest if changes else None,
            "funnel_digest": digest(e.funnel_definition),
            "pipelines_digest": digest(e.pipelines),
            "pipelines": list(e.pipelines.by_name),
            "events": e.store.count(),
            "position": e.store.position(),
        }

    found = using_engine(act)
    if fmt is Format.json:
        emit_json(found)
        return
    for key, value in found.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        out().print(f"{key.replace('_', ' ')}: {shown}")


FullOption = Annotated[
    bool, typer.Option("--full", help="fold the whole stream: every metric, not only the view's")
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="DATE",
        help="only what occurred by then: 2026-03-31 (end of day UTC), a time",
    ),
]


def moment(text: str) -> datetime:
    from dealengine.domain.errors import DealEngineError
    from dealengine.domain.events import parse_moment

    try:
        return parse_moment(text)
    except ValueError as e:
        raise DealEngineError(str(e)) from None


def window_start(text: str) -> datetime:
    """FROM of a window: a date means the start of that day (UTC), so its events are in the
    window; TO (`moment`) means the end of its day."""
    start = moment(text)
    return start.replace(hour=0, minute=0, second=0, microsecond=0) if len(text) == 10 else start


def maybe_moment(text: str | None) -> datetime | None:
    return None if text is None else moment(text)


@_command()
def funnel(
    as_of: AsOfOption = None,
    mode: Annotated[FunnelMode | None, typer.Option(help="how steps are counted")] = None,
    window: Annotated[
        float | None, typer.Option(metavar="DAYS", help="conversion window, days")
    ] = None,
    attribution: Annotated[
        str | None, typer.Option(metavar="first_touch|last_touch", help="which touch counts")
    ] = None,
    breakdown: Annotated[
        list[str] | None, typer.Option(metavar="FIELD", help="an event field to group by")
    ] = None,
    cohort: Annotated[str | None, typer.Option(metavar="week|month", help="cohort period")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(metavar="TYPE", help="an event type dropping a lead")
    ] = None,
    full: FullOption = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Leads per funnel step, conversion, drop-off; by channel, field, cohort; time to convert.

    Without options it reads the materialised view; any option (or --full) folds the stream.
    """
    from dealengine.render import show_funnel

    overrides = {"mode": mode, "conversion_window_days": window, "attribution": attribution,
                 "breakdowns": breakdown, "cohort": cohort, "exclusions": exclude}  # fmt: skip
    lag = None
    if full or as_of or any(v is not None for v in overrides.values()):
        view = using_engine(lambda e: e.funnel(as_of=maybe_moment(as_of), **overrides))
    else:
        view, lag = using_engine(
            lambda e: _caught_up(e, "funnel", lambda advance: e.live_funnel(progress=advance))
        )
    _emit(view, lag, fmt, show_funnel)


@_command()
def pipeline(
    as_of: AsOfOption = None,
    changes: Annotated[
        tuple[str, str] | None,
        typer.Option(
            metavar="FROM TO",
            help="how the open pipeline moved from the start of FROM to the end of TO",
        ),
    ] = None,
    deals: Annotated[bool, typer.Option("--deals", help="every deal's time in each stage")] = False,
    full: FullOption = False,
    name: PipelineOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Open deals per stage, weighted forecast, time in stage, win rates, velocity, stale deals."""
    from dealengine.render import show_changes, show_pipeline, show_stage_times

    if changes is not None:
        start, end = changes
        moved = using_engine(
            lambda e: e.pipeline_changes(window_start(start), moment(end), pipeline_name=name)
        )
        emit_json(moved.model_dump(mode="json")) if fmt is Format.json else show_changes(
            out(), moved
        )
        warn_missing_rates(moved.missing_rates)
    elif deals:
        times, defn = using_engine(
            lambda e: (
                e.stage_times(as_of=maybe_moment(as_of), pipeline_name=name),
                e.pipelines[name] if name else e.pipelines.default,
            )
        )
        # by stage in the pipeline's order (open stages, then won and lost), then by deal
        times.sort(key=lambda d: (defn.index.get(d.stage, len(defn.index)), d.deal_id))
        warn_missing_rates(missing_of(times, defn))
        if fmt is Format.json:
            emit_json([d.model_dump(mode="json") for d in times])
        else:
            show_stage_times(out(), times, defn)
    elif full or as_of:
        view, others = using_engine(
            lambda e: _with_others(
                e, name, lambda n: e.pipeline(as_of=maybe_moment(as_of), pipeline_name=n)
            )
        )
        _emit(view, None, fmt, show_pipeline, others)
    else:
        (live, lag), others = using_engine(
            lambda e: _caught_up(
                e,
                "pipeline",
                lambda advance: _with_others(
                    e, name, lambda n: e.live_pipeline(pipeline_name=n, progress=advance)
                ),
            )
        )
        _emit(live, lag, fmt, show_pipeline, others)


def _with_others(engine: Engine, name: str | None, view_of: Callable[[str | None], R]) -> Any:
    """The view of pipeline `name`, and, when no name was given and the default pipeline has
    no deals, the other pipelines that have (name, deals)."""
    from dealengine.render import has_deals

    found = view_of(name)
    view: Any = found[0] if isinstance(found, tuple) else found
    if name is not None or has_deals(view):
        return found, []
    others = []
    for other in list(engine.pipelines.by_name)[1:]:
        got: Any = view_of(other)
        theirs = got[0] if isinstance(got, tuple) else got
        if has_deals(theirs):
            deals = theirs.won.deals + theirs.lost.deals + sum(s.open_deals for s in theirs.stages)
            others.append((other, deals))
    return found, others


def _emit(
    view: Any,
    lag: Lag | None,
    fmt: Format,
    show: Callable[[Console, Any], None],
    others: list[tuple[str, int]] | None = None,
) -> None:
    """A view as JSON or tables; from a materialised view, say which and how far behind; for
    an empty default pipeline, where the deals are (`others`), in one line instead."""
    if others and fmt is not Format.json:
        where = ", ".join(f"{n} ({deals:,} deals)" for n, deals in others)
        err().print(
            f"pipeline {view.name} (the default) has no deals; deals are in: {where}: "
            f"dealengine pipeline --pipeline {others[0][0]}"
        )
        return
    warn_missing_rates(getattr(view, "missing_rates", []))
    if fmt is Format.json:
        data = view.model_dump(mode="json")
        if lag is not None:
            data["view"] = {"name": lag.view, "position": lag.position, "behind": lag.behind}
        emit_json(data)
        return
    show(out(), view)
    if lag is not None:
        err().print(
            f"from view {lag.view} at event {lag.position} ({lag.behind} behind the store); "
            "--full for times to convert, days in stage, cycle, velocity and stale deals"
        )


def _caught_up(
    engine: Engine, name: ProjectionName, query: Callable[[Callable[[int], None]], R]
) -> R:
    """`query(advance)` with a progress bar (on a terminal) while the `name` view catches up.
    Ctrl-C stops the catch-up after the batch it is folding, which keeps the events applied
    (stored with their position): one line says so and how to resume; exit status 130."""
    applied = [0]
    total = engine.view(name).lag().behind
    try:
        with _progress(total, f"bringing the {name} view up to date", bytes_=False) as advance:

            def counted(n: int) -> None:
                applied[0] += n
                advance(n)

            return query(counted)
    except KeyboardInterrupt:
        err().print(
            f"interrupted: the {name} view keeps the {applied[0]} events applied so far (stored "
            "with their position); run the same command again to resume from there"
        )
        raise typer.Exit(130) from None


@_command()
def rebuild(
    projection: Annotated[
        str, typer.Argument(metavar="funnel|pipeline|all", help="default: all")
    ] = "all",
) -> None:
    """Replay the store into fresh views while the old ones keep answering, then switch."""
    names = _projections(projection)

    def act(e: Engine) -> list[tuple[str, int]]:
        done: list[tuple[str, int]] = []
        for name in names:
            with _progress(e.store.position(), f"rebuilding {name}", bytes_=False) as advance:
                done.append((name, e.view(name).rebuild(advance)))
        return done

    for name, events in using_engine(act):
        err().print(f"{name}: rebuilt from {events} events and switched")


@_command()
def project(
    projection: Annotated[
        str, typer.Argument(metavar="funnel|pipeline|all", help="default: all")
    ] = "all",
    follow: Annotated[bool, typer.Option(help="keep following the store (PostgreSQL)")] = False,
) -> None:
    """Bring the materialised views up to date; with --follow, run as a projection worker
    until SIGINT/SIGTERM: one owner per view across machines (PostgreSQL advisory locks),
    for the store and every tenant (--tenant: that one)."""
    names = _projections(projection)

    def act(e: Engine) -> None:
        for name in names:
            applied = _caught_up(e, name, e.view(name).catch_up)
            err().print(f"{name}: {applied} events applied")

    if not follow:
        using_engine(act)
        return
    from dealengine.tenants import follow_views

    no_postgres = "--follow needs PostgreSQL: on SQLite the views catch up before each query"
    _every_tenant(follow_views(names), needs_postgres=no_postgres)


def _every_tenant(
    work: Callable[[Engine, Any], None],
    *,
    alone: Callable[[Engine, Any], None] | None = None,
    needs_postgres: str | None = None,
) -> None:
    """A worker's `work` until SIGINT/SIGTERM for the tenant chosen (--tenant), or else for
    the store and every tenant, tenants created meanwhile too (dealengine.tenants); `alone`
    instead when there is no tenant at all."""

    def act() -> None:
        from dealengine.domain.errors import DealEngineError
        from dealengine.tenants import Tenants, work_every_tenant
        from dealengine.views.signals import stop_on_signals

        settings = chosen_settings()
        if needs_postgres and not settings.database_url:
            raise DealEngineError(needs_postgres)
        with Tenants(settings) as tenants, stop_on_signals() as stopping:
            if chosen.tenant is not None:
                work_every_tenant(tenants, alone or work, stopping, [chosen.tenant])
            elif alone is not None and not tenants.names():
                work_every_tenant(tenants, alone, stopping, [None])
            else:
                work_every_tenant(tenants, work, stopping)

    run(act)


def _projections(text: str) -> list[ProjectionName]:
    from dealengine.views.materialised import PROJECTIONS

    if text == "all":
        return list(PROJECTIONS)
    if text not in PROJECTIONS:
        raise typer.BadParameter(f"{text!r}: expected funnel, pipeline or all")
    return [text]


# --- audit: history, corrections, tamper evidence, audit reports ---------------------------


class HistoryFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class ReportFormat(StrEnum):
    table = "table"
    html = "html"
    json = "json"
    csv = "csv"


@_command()
def history(
    id: Annotated[
        str, typer.Argument(metavar="ID", help="a lead or deal id (or lead:ID / deal:ID)")
    ],
    as_of: AsOfOption = None,
    known_at: Annotated[
        str | None,
        typer.Option(
            "--known-at", metavar="DATE", help="only what had been recorded by then (same forms)"
        ),
    ] = None,
    version: Annotated[int | None, typer.Option(min=0, help="only the first N events")] = None,
    fmt: Annotated[
        HistoryFormat, typer.Option("--format", metavar="table|json|csv", help="table, json or csv")
    ] = HistoryFormat.table,
) -> None:
    """Every event of one lead or deal in order, and the stage (amount; a lead: status) after it."""
    from dealengine.audit.report import fields_text, history_csv, history_json
    from dealengine.audit.states import state_fields

    bounds: dict[str, Any] = {"as_of": as_of, "known_at": known_at, "version": version}
    entries = using_engine(lambda e: e.timeline(id, **bounds))
    if fmt is HistoryFormat.json:
        emit_json(history_json(entries))
        return
    if fmt is HistoryFormat.csv:
        sys.stdout.write(history_csv(entries))
        return
    from rich.table import Table

    given = [f"{k.replace('_', ' ')} {v}" for k, v in bounds.items() if v is not None]
    table = Table(
        "v", "occurred at", "recorded at", "actor", "source", "type", "fields", "after",
        title=" ".join([f"history of {id}", *given]),
    )  # fmt: skip
    for entry in entries:
        ev = entry.event
        after = state_fields(entry.after)
        after.pop("currency_after", None)  # the table: on deal_opened's fields (as recorded)
        state = " ".join(str(v) for v in after.values())
        kind = ev.event_type + (f" (voided by v{entry.voided_by})" if entry.voided_by else "")
        table.add_row(
            str(ev.originator_version), _time(ev.occurred_at), _time(ev.recorded_at), ev.actor,
            ev.source, kind, fields_text(entry), state,
            style="strike dim" if entry.voided_by else None,
        )  # fmt: skip
    out().print(table)


@_command()
def void(
    id: Annotated[
        str, typer.Argument(metavar="ID", help="the lead or deal (or lead:ID / deal:ID)")
    ],
    event_id: Annotated[
        str, typer.Argument(metavar="EVENT", help="the event's id, or vN: its version")
    ],
    reason: Annotated[str, typer.Option(help="why the event is a mistake")],
    actor: Annotated[str | None, typer.Option(help="who voids it (default: your user)")] = None,
) -> None:
    """Void a mistaken event: a new event_voided event; nothing is rewritten."""
    import getpass

    who = actor or getpass.getuser()
    recorded = using_engine(lambda e: e.void(id, event_id, reason=reason, actor=who, source="cli"))
    for ev in recorded.events:
        err().print(f"recorded {ev.originator_id} v{ev.originator_version}: event_voided")


@_command()
def forget(
    lead_id: Annotated[str, typer.Argument(metavar="LEAD", help="the lead whose data to erase")],
    reason: Annotated[str, typer.Option(help="why (a request, a retention rule)")],
    actor: Annotated[str | None, typer.Option(help="who asks (default: your user)")] = None,
) -> None:
    """Erase a lead's personal data: destroy its key, record lead_forgotten; its funnel and
    pipeline figures stay (docs/privacy.md)."""
    import getpass

    who = actor or getpass.getuser()
    recorded = using_engine(lambda e: e.forget(lead_id, reason=reason, actor=who, source="cli"))
    for ev in recorded.events:
        err().print(f"recorded {ev.originator_id} v{ev.originator_version}: lead_forgotten")


@_command()
def verify(
    seal: Annotated[
        str | None, typer.Option(help="a seal printed by `dealengine seal`: compare with it")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="the seal's manifest (seal --manifest): name each stream")
    ] = None,
    seals: Annotated[
        bool,
        typer.Option(
            "--seals", help="also check the seal log: its chain and each seal against the store"
        ),
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Recompute every hash chain and each event's own hash (HMAC under DEALENGINE_AUDIT_KEY
    when set); report each event modified, removed, inserted or reordered.

    Exit status 1 on any finding. With --seal or --seals, also events removed from the end of
    a stream and whole streams deleted since a seal was taken."""

    def act(e: Engine) -> Any:
        with _progress(e.store.count(), "verifying", bytes_=False) as advance:
            return e.verify(seal=seal, manifest=manifest, seals=seals, progress=advance)

    report = using_engine(act)
    if fmt is Format.json:
        emit_json(report.as_json())
    else:
        for finding in report.findings:
            out().print(str(finding))
        against = f" against {report.seal}" if report.seal else ""
        if seals:
            against += f" and the seal log's {report.seals} seal{'' if report.seals == 1 else 's'}"
        verdict = "intact" if report.ok else f"{len(report.findings)} findings"
        if report.ok and report.authenticated:
            verdict += ", authenticated under the audit key"
        elif report.ok and report.unchecked:
            verdict = "links intact, authenticity NOT checked"
        err().print(
            f"verified {report.events} events in {report.streams} streams{against}: {verdict}"
        )
        for note in report.notes():
            err().print(f"note: {note}")
    if not report.ok:
        raise typer.Exit(1)


@_command()
def seal(
    manifest: Annotated[
        Path | None,
        typer.Option(help="also write the per-stream manifest here (lets verify name streams)"),
    ] = None,
) -> None:
    """Print a digest over every stream's head hash and event count: keep it outside the system.

    The chains are checked on the way; findings are reported (exit status 1), the seal is
    printed all the same. A seal of an intact store is also appended to the seal log kept in
    the store (each entry chained to the one before): `verify --seals` checks them all."""

    def act(e: Engine) -> Any:
        with _progress(e.store.count(), "sealing", bytes_=False) as advance:
            return e.seal(manifest=manifest, progress=advance)

    report = using_engine(act)
    for finding in report.findings:
        err().print(f"warning: {finding}")
    sys.stdout.write(f"{report.sealed}\n")
    if report.seals:
        err().print(f"seal #{report.seals} appended to the seal log")
    else:
        err().print("not appended to the seal log: the store has findings")
    if not report.ok:
        raise typer.Exit(1)


@_command()
def audit(
    id: Annotated[str, typer.Argument(metavar="ID", help="a deal id")],
    fmt: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            metavar="table|html|json|csv",
            help="default: table on the terminal; with -o, by the file's suffix (html)",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="the file to write")
    ] = None,
) -> None:
    """One audit report of a deal: timeline, stage durations, amount changes, who did what,
    corrections, integrity; exit status 1 when its integrity is broken.

    Without -o it prints the tables; the HTML report goes to a file (-o audit.html), or to
    stdout only when asked for and stdout is not a terminal."""
    from dealengine.audit.report import build_report, report_csv, report_html

    chosen = fmt or _format_for(output)
    if chosen is ReportFormat.html and output is None and sys.stdout.isatty():
        err().print("error: an HTML report is for a browser, not a terminal: -o audit.html")
        raise typer.Exit(1)
    report = using_engine(lambda e: build_report(e, id))
    if chosen is ReportFormat.table:
        from dealengine.render import show_audit

        show_audit(out(), report)
    else:
        if chosen is ReportFormat.json:
            import orjson

            data = report.model_dump(mode="json")
            text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
        else:
            text = report_csv(report) if chosen is ReportFormat.csv else report_html(report)
        if output is None:
            sys.stdout.write(text)
        else:
            run(lambda: output.write_text(text, encoding="utf-8"))
            err().print(f"wrote {output}")
    if not report.integrity.intact:
        findings = len(report.integrity.findings)
        err().print(f"integrity BROKEN: {findings} findings (dealengine verify names them)")
        raise typer.Exit(1)


def _format_for(output: Path | None) -> ReportFormat:
    """The report's format by the file's suffix (.json, .csv; else HTML); the table without."""
    if output is None:
        return ReportFormat.table
    suffix = output.suffix.lower().lstrip(".")
    return ReportFormat(suffix) if suffix in ("json", "csv") else ReportFormat.html


def _time(value: Any) -> str:
    return str(value.strftime("%Y-%m-%d %H:%M:%S"))


def _rows(path: Path) -> int:
    with path.open("rb") as f:
        return max(0, sum(1 for _ in f) - 1)


@contextmanager
def _progress(total: int, label: str, *, bytes_: bool = True) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for work of `total` units; yields `advance(n)`."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [TextColumn("{task.description}", markup=False), BarColumn()]
    columns += [DownloadColumn()] if bytes_ else [TextColumn("{task.completed}/{task.total}")]
    with Progress(
        *columns,
        TimeRemainingColumn(),
        console=err(),
        transient=True,
        disable=not err().is_terminal,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@_command()
def report(
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="the HTML file to write")
    ] = Path("report.html"),
    as_of: AsOfOption = None,
    changes: Annotated[
        tuple[str, str] | None,
        typer.Option(
            metavar="FROM TO", help="the waterfall's window (default: the 90 days to --as-of)"
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--pipeline", metavar="NAME", help="only this pipeline's section"),
    ] = None,
    all_pipelines: Annotated[
        bool, typer.Option("--all-pipelines", help="every pipeline, even one with no deals")
    ] = False,
) -> None:
    """Write one self-contained HTML report (charts and their tables; works offline).

    The funnel, and a section for every pipeline that has deals (--pipeline NAME: that one;
    --all-pipelines: every one)."""
    from dealengine.report import render_report

    if name is not None and all_pipelines:
        err().print("error: --pipeline NAME or --all-pipelines, not both")
        raise typer.Exit(1)

    def act(e: Engine) -> int:
        moved = (window_start(changes[0]), moment(changes[1])) if changes else None
        page = render_report(
            e, maybe_moment(as_of), moved, pipeline_name=name, all_pipelines=all_pipelines
        )
        return output.write_text(page, encoding="utf-8")

    written = using_engine(act)
    err().print(f"wrote {output} ({written / 1e6:.1f} MB)")


@_command()
def whatif(
    scenarios: Annotated[
        list[Path],
        typer.Argument(metavar="SCENARIO.toml", help="see projections/scenarios"),
    ],
    as_of: AsOfOption = None,
    name: PipelineOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Re-project the recorded events under other rules: the baseline and every scenario side by
    side, folded in one read of the store, which is opened read-only (nothing is written)."""
    from dealengine.whatif.render import show_what_if, what_if_json
    from dealengine.whatif.result import WhatIf

    def act() -> WhatIf:
        from dealengine.engine import Engine

        with Engine(chosen_settings(read_only=True), tenant=chosen.tenant) as e:
            chosen.model_source = e.model.source
            return e.what_ifs(scenarios, as_of=maybe_moment(as_of), pipeline_name=name)

    result = run(act)
    if fmt is Format.json:
        emit_json(what_if_json(result))
    else:
        show_what_if(out(), result)


# --- the host: subscribers and webhooks ------------------------------------------------------

subscribers_app = typer.Typer(
    help="Durable subscribers and the webhooks built on them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(subscribers_app, name="subscribers")


@subscribers_app.command("run", cls=Command)
def subscribers_run() -> None:
    """Deliver the webhooks of webhooks.toml until SIGINT/SIGTERM: one owner per webhook
    (a PostgreSQL advisory lock, a file lock beside a SQLite store); run any number."""

    from dealengine.tenants import deliver_webhooks

    _every_tenant(deliver_webhooks, alone=lambda e, stopping: e.subscriptions.work(stopping))


@subscribers_app.command("status", cls=Command)
def subscribers_status(fmt: FormatOption = Format.table) -> None:
    """Each subscriber's position, how far behind the store it is, and its parked event."""
    rows = using_engine(lambda e: e.subscriptions.status())
    data = [
        {
            "name": p.name, "position": p.position, "head": head, "lag": max(0, head - p.position),
            "parked_position": p.parked_position, "parked_notice": p.parked_notice,
            "parked_error": p.parked_error, "updated_at": p.updated_at,
        }
        for p, head in rows
    ]  # fmt: skip
    if fmt is Format.json:
        emit_json(data)
        return
    from rich.table import Table

    table = Table("subscriber", "position", "lag", "parked at", "error", box=None)
    for row in data:
        parked = row["parked_position"]
        table.add_row(
            str(row["name"]), str(row["position"]), str(row["lag"]),
            "" if parked is None else f"{parked} ({row['parked_notice']})",
            str(row["parked_error"] or ""),
        )  # fmt: skip
    out().print(table if data else "no subscribers")


@subscribers_app.command("replay", cls=Command)
def subscribers_replay(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    from_: Annotated[
        int | None,
        typer.Option("--from", metavar="N", help="first event to hand again (default: parked)"),
    ] = None,
) -> None:
    """Rewind a subscriber: it handles the events from position N again, and is unparked."""
    position = using_engine(lambda e: e.subscriptions.replay(name, from_))
    err().print(f"{name}: at {position.position}, the next event handled is after it")


# --- exchange rates (docs/currencies.md) -----------------------------------------------------

rates_app = typer.Typer(
    help="Exchange rates: dated events, replayed by every view.", no_args_is_help=True,
    rich_markup_mode=None,
)  # fmt: skip
app.add_typer(rates_app, name="rates")


@rates_app.command("set", cls=Command)
def rates_set(
    from_currency: Annotated[str, typer.Argument(metavar="FROM", help="e.g. EUR")],
    to_currency: Annotated[str, typer.Argument(metavar="TO", help="e.g. USD")],
    rate: Annotated[str, typer.Argument(metavar="RATE", help="TO per one FROM, e.g. 1.10")],
    effective_from: Annotated[
        str, typer.Option("--from", metavar="DATE", help="in force from this day (UTC) on")
    ],
    source: Annotated[str, typer.Option(help="where the rate comes from")] = "cli",
    actor: Annotated[str | None, typer.Option(help="who sets it (default: your user)")] = None,
) -> None:
    """Record a rate, in force from DATE until the pair's next one (the same again: nothing)."""
    import getpass

    who = actor or getpass.getuser()
    recorded = using_engine(
        lambda e: e.set_rate(
            from_currency, to_currency, rate, effective_from, actor=who, source=source
        )
    )
    _rates_recorded(recorded.events, 1)


@rates_app.command("import", cls=Command)
def rates_import(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv", help="from,to,rate,effective_from")],
    actor: Annotated[str | None, typer.Option(help="who records them (default: your user)")] = None,
) -> None:
    """Record every rate of a CSV file, all or none; those already recorded are left out."""
    import getpass

    who = actor or getpass.getuser()
    recorded = using_engine(lambda e: e.import_rates(file, actor=who, source=file.name))
    _rates_recorded(recorded.events, None)


def _rates_recorded(events: list[Any], asked: int | None) -> None:
    for ev in events:
        err().print(
            f"recorded {ev.originator_id} v{ev.originator_version}: {ev.from_currency} "
            f"{ev.to_currency} {ev.rate} from {ev.effective_from} (id {ev.id})"
        )
    if not events:
        err().print("recorded nothing: " + ("the rate is" if asked else "every rate was")
                    + " already recorded")  # fmt: skip


@rates_app.command("list", cls=Command)
def rates_list(as_of: AsOfOption = None, fmt: FormatOption = Format.table) -> None:
    """Every rate recorded (voided ones left out); --as-of: the one in force per pair then."""
    found = using_engine(lambda e: e.rates(as_of=maybe_moment(as_of)))
    rows = [r.as_json() for r in found]
    if fmt is Format.json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(*(k.replace("_", " ") for k in rows[0]) if rows else (), box=None)
    for row in rows:
        table.add_row(*row.values())
    out().print(table if rows else "no exchange rates")


@rates_app.command("void", cls=Command)
def rates_void(
    from_currency: Annotated[str, typer.Argument(metavar="FROM")],
    to_currency: Annotated[str, typer.Argument(metavar="TO")],
    event_id: Annotated[str, typer.Argument(metavar="EVENT", help="the rate's id (rates list)")],
    reason: Annotated[str, typer.Option(help="why the rate is a mistake")],
    actor: Annotated[str | None, typer.Option(help="who voids it (default: your user)")] = None,
) -> None:
    """Void a mistaken rate: a new exchange_rate_voided event; set the right one after it."""
    import getpass

    who = actor or getpass.getuser()
    recorded = using_engine(
        lambda e: e.void_rate(
            from_currency, to_currency, event_id, reason=reason, actor=who, source="cli"
        )
    )
    for ev in recorded.events:
        err().print(f"recorded {ev.originator_id} v{ev.originator_version}: exchange_rate_voided")


def missing_of(times: list[Any], definition: Any) -> list[Any]:
    """The missing rates of `pipeline --deals`' unconverted deals."""
    from dealengine.projections.pipeline import PipelineProjection

    needs = ((t.currency, t.rate_day) for t in times if t.converted_amount is None)
    return PipelineProjection(definition).missing_for(needs)


def warn_missing_rates(missing: list[Any]) -> None:
    """One warning line for the deals left unconverted: the first missing pair and day, and
    how to add its rate."""
    if missing:
        more = f" (and {len(missing) - 1} more pair(s): see missing_rates)" if missing[1:] else ""
        err().print(f"warning: {missing[0].advice()}{more}")


# --- the host: API keys and the HTTP API -----------------------------------------------------

keys_app = typer.Typer(help="Keys for the HTTP API.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(keys_app, name="keys")


@keys_app.command("create", cls=Command)
def keys_create(
    name: Annotated[str, typer.Option(help="who or what uses the key")],
    scope: Annotated[str, typer.Option(metavar="read|write|audit|admin", help="what it may do")],
) -> None:
    """Make a key and print it, once: the store keeps only its hash."""
    made, key = using_engine(lambda e: e.keys.create(name, scope))
    err().print(f"key {made.id} ({made.name}, {made.scope}): shown once, keep it now")
    sys.stdout.write(f"{key}\n")


@keys_app.command("list", cls=Command)
def keys_list(fmt: FormatOption = Format.table) -> None:
    """Every key: id, name, scope, when made and revoked (never the key)."""
    found = using_engine(lambda e: e.keys.all())
    rows = [
        {"id": k.id, "name": k.name, "scope": k.scope, "created_at": k.created_at,
         "revoked_at": k.revoked_at}
        for k in found
    ]  # fmt: skip
    if fmt is Format.json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table("id", "name", "scope", "created", "revoked", box=None)
    for row in rows:
        table.add_row(*(str(v or "") for v in row.values()))
    out().print(table if rows else "no keys")


@keys_app.command("revoke", cls=Command)
def keys_revoke(
    key: Annotated[str, typer.Argument(metavar="ID", help="the key's id or name")],
) -> None:
    """Revoke a key: refused within seconds (servers remember a good key for 5 s)."""
    revoked = using_engine(lambda e: e.keys.revoke(key))
    err().print(f"revoked key {revoked.id} ({revoked.name})")


# --- tenants: workspaces, each with a store of its own ---------------------------------------

tenants_app = typer.Typer(
    help="Tenants: workspaces, each with its own store, views, subscriptions, keys and "
    "definitions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(tenants_app, name="tenants")
TenantArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="a lowercase letter, then a-z, 0-9, single _; 1-40")
]


def _with_tenants(action: Callable[[Any], R]) -> R:
    """Run `action` on the configured store's Tenants (dealengine.tenants), then close them."""

    def act() -> R:
        from dealengine.tenants import Tenants

        with Tenants(chosen_settings()) as tenants:
            return action(tenants)

    return run(act)


@tenants_app.command("create", cls=Command)
def tenants_create(name: TenantArgument) -> None:
    """Make a tenant: a store of its own (a folder beside the store file, or a PostgreSQL
    schema); then use it with --tenant NAME or DEALENGINE_TENANT=NAME."""
    _with_tenants(lambda t: t.create(name))
    err().print(f"tenant {name} created")


@tenants_app.command("list", cls=Command)
def tenants_list(fmt: FormatOption = Format.table) -> None:
    """Every tenant of the configured store, by name."""
    names = _with_tenants(lambda t: t.names())
    if fmt is Format.json:
        emit_json(names)
        return
    out().print("\n".join(names) if names else "no tenants")


@tenants_app.command("drop", cls=Command)
def tenants_drop(
    name: TenantArgument,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Delete a tenant and everything it holds: events, views, subscriptions, keys (and its
    folder, with its definitions). Asks first, unless --yes."""
    from dealengine.domain.errors import UnknownTenant
    from dealengine.store.tenants import tenant_name

    def check(tenants: Any) -> None:
        if tenant_name(name) not in tenants.names():
            raise UnknownTenant(f"no tenant {name!r}: nothing dropped (dealengine tenants list)")

    _with_tenants(check)
    if not yes and not typer.confirm(
        f"drop tenant {name} and all its events, views, subscriptions and keys?", default=False
    ):
        err().print(f"tenant {name} not dropped")
        raise typer.Exit(1)
    _with_tenants(lambda t: t.drop(name))
    err().print(f"tenant {name} dropped")


@_command()
def serve(
    host: Annotated[str, typer.Option(help="the address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="the port")] = 8765,
    webhooks: Annotated[
        bool, typer.Option(help="deliver webhooks.toml's webhooks from this process too")
    ] = False,
) -> None:
    """Serve the HTTP API (needs dealengine[http]): OpenAPI at /openapi.json, docs at /docs.

    For the store and every tenant, each request going to the tenant its key names (a key
    made with --tenant); with --tenant, for that tenant only."""

    def act() -> None:
        import threading

        try:
            import uvicorn

            from dealengine.http.app import create_app
            from dealengine.http.tenants import TenantRouter
        except ImportError as missing:
            from dealengine.domain.errors import DealEngineError

            raise DealEngineError(
                f"serve needs the http extra: pip install 'dealengine[http]' ({missing})"
            ) from None
        from dealengine.tenants import Tenants
        from dealengine.views.signals import stop_on_signals

        class Server(uvicorn.Server):
            """Stops on SIGINT/SIGTERM like the workers: finishes, closes the engine, exit 0
            (uvicorn's own handling re-raises the signal, killing the process)."""

            @contextmanager
            def capture_signals(self) -> Iterator[None]:
                with stop_on_signals() as stopping:
                    threading.Thread(target=self._stop_when, args=(stopping,), daemon=True).start()
                    yield

            def _stop_when(self, stopping: Any) -> None:
                stopping.wait()
                self.should_exit = True

        def opened(e: Engine) -> None:
            if webhooks:
                e.subscriptions.start_webhooks()

        with Tenants(chosen_settings()) as tenants:
            api: Any
            if chosen.tenant is not None:
                api = create_app(tenants.engine(chosen.tenant))
                opened(tenants.engine(chosen.tenant))
            else:
                api = TenantRouter(tenants, on_open=opened)
                api.app_for(None)  # the store opens now: a bad one fails here, not per request
            config = uvicorn.Config(
                api, host=host, port=port, log_config=None, access_log=False,
                timeout_keep_alive=5, limit_concurrency=200, timeout_graceful_shutdown=10,
            )  # fmt: skip
            Server(config).run()

    run(act)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
