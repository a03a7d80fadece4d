"""The facade an embedding product uses: record interactions, read leads and deals, get views.

Thin: the parts are built by dealengine.bootstrap; reads go to the states (service/states.py),
the reports (service/reports.py), the live views (views/live.py) and the what-if; writes to
the commands (service/commands.py); verify and seal to the store's integrity (audit/).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dealengine.audit.verify import (
    VerifyReport,
)
from dealengine.bootstrap import Clock, InteractionModels, bootstrap, utc_now
from dealengine.domain.deal import Deal
from dealengine.domain.definitions import FunnelDefinition, PipelineDefinition, Pipelines
from dealengine.domain.errors import (
    DealEngineError,
)
from dealengine.domain.events import DomainEvent
from dealengine.domain.interaction import Command, Interaction, Outcome, Recorded
from dealengine.domain.lead import Lead
from dealengine.domain.model import ModelChange, SalesModel
from dealengine.domain.personal import LeadKeys
from dealengine.domain.rates import KnownRate, day_of
from dealengine.domain.replay import Moment, TimelineEntry
from dealengine.projections.funnel import FunnelView
from dealengine.projections.pipeline import DealStageTimes, PipelineChanges, PipelineView
from dealengine.projections.stream import StreamEvent
from dealengine.service.rates import rate_line, read_rates_csv
from dealengine.settings import Settings
from dealengine.subscriptions.dispatch import Handler
from dealengine.subscriptions.tables import Position
from dealengine.views.materialised import Lag, MaterialisedView, ProjectionName

if TYPE_CHECKING:  # imported when used: dealengine.whatif builds on this module
    from dealengine.whatif.result import WhatIf
    from dealengine.whatif.run import ScenarioLike


class Engine:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        pipeline: PipelineDefinition | Pipelines | None = None,
        funnel: FunnelDefinition | None = None,
        definitions: Path | None = None,
        clock: Clock = utc_now,
        tenant: str | None = None,
        interactions: InteractionModels | None = None,
        lead_keys: LeadKeys | None = None,
    ) -> None:
        """An engine on the store `settings` name (default: the environment's), or on its
        tenant `tenant` (default: settings.tenant), which must exist (dealengine.Tenants);
        under the model of the `definitions` folder (default: the settings', else the shipped
        one; a tenant's own definition files replace its files); `pipeline` and `funnel` given
        as loaded models replace the folder's. `interactions`: pydantic models of
        interactions to record beside the built-in ones and the folder's (interactions.toml),
        or a whole `Interactions` catalogue. `lead_keys`: where leads' data keys live
        (default: the store's own table)."""
        if tenant is not None:
            settings = (settings or Settings()).model_copy(update={"tenant": tenant})
        parts = bootstrap(
            settings,
            pipeline=pipeline,
            funnel=funnel,
            definitions=definitions,
            clock=clock,
            interactions=interactions,
            lead_keys=lead_keys,
        )
        self.tenant = parts.tenant  # None: the store without a tenant
        self.tenant_definitions = parts.tenant_definitions  # its own folder, if it has one
        self.settings, self.store, self.clock = parts.settings, parts.store, parts.clock
        self.model: SalesModel = parts.model  # the definitions in force and their digest
        self.pipelines, self.funnel_definition = parts.pipelines, parts.funnel
        self.interactions = parts.interactions  # the model's catalogue
        self.pipeline_definition = self.pipelines.default
        self.states, self.reports, self.live = parts.states, parts.reports, parts.live
        self.passes = parts.passes
        self.subscriptions, self.keys = parts.subscriptions, parts.keys
        self.commands, self.integrity = parts.commands, parts.integrity
        self.evolve = parts.evolve  # evolve(state, event): a lead's or a deal's next state
        self.exchange_rates = parts.rates  # record, void and read the exchange rates

    @classmethod
    def in_memory(cls, **kwargs: Any) -> Engine:
        """An engine on a private in-memory SQLite store (for tests and experiments)."""
        return cls(Settings(db=":memory:", database_url=None), **kwargs)

    @property
    def retries(self) -> int:
        """Writes re-read and re-decided because another writer stored a version of the same
        lead or deal first (in another process: this engine's own threads take turns)."""
        return self.commands.retries

    def close(self) -> None:
        self.subscriptions.close()
        self.live.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------------------

    def record(
        self,
        type: str,
        id: str,
        occurred_at: datetime | str,
        *,
        actor: str = "api",
        source: str = "api",
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Recorded:
        """Record one interaction on lead or deal `id`; raises a DealEngineError if refused."""
        cmd = Interaction(
            type, id, occurred_at, fields, actor, source, idempotency_key, self.interactions
        )
        outcome = self.execute_batch([cmd])[0]
        if isinstance(outcome, DealEngineError):
            raise outcome
        return outcome

    def execute_batch(self, commands: Sequence[Command], *, strict: bool = False) -> list[Outcome]:
        """Decide every command in order and store all their events in one transaction (a
        refused command stores nothing; a list of commands is one unit, stored whole or not
        at all; with `strict`, the first refusal ends the batch and nothing is stored)."""
        return self.commands.execute_batch(commands, strict=strict)

    def check(self, commands: Sequence[Command]) -> list[Outcome]:
        """What `execute_batch(commands, strict=True)` would decide, storing nothing."""
        return self.commands.check(commands)

    # --- reading -------------------------------------------------------------------------------

    def lead(
        self, lead_id: str, *, as_of: Moment = None, known_at: Moment = None,
        version: int | None = None,
    ) -> Lead:  # fmt: skip
        """The lead now, or as of a time (what had happened by then, by occurred_at), as known
        at a time (what was recorded by then), or at a version (dealengine.domain.replay)."""
        return self.states.lead(lead_id, as_of, known_at, version)

    def deal(
        self, deal_id: str, *, as_of: Moment = None, known_at: Moment = None,
        version: int | None = None,
    ) -> Deal:  # fmt: skip
        """The deal now, or as of / known at a time, or at a version (like `lead`)."""
        return self.states.deal(deal_id, as_of, known_at, version)

    def history(
        self, id: str, *, as_of: Moment = None, known_at: Moment = None,
        version: int | None = None,
    ) -> list[DomainEvent]:  # fmt: skip
        """Every event of one lead or deal, in order (`id` may be `lead:ID` or `deal:ID`); the
        ones that count as of / known at a time, or up to a version, when given."""
        return self.states.history(id, as_of, known_at, version)

    def timeline(
        self, id: str, *, as_of: Moment = None, known_at: Moment = None,
        version: int | None = None,
    ) -> list[TimelineEntry]:  # fmt: skip
        """`history` with the state after each event and which correction voids it."""
        return self.states.timeline(id, as_of, known_at, version)

    def events(self, gt: int = 0) -> Iterator[StreamEvent]:
        """The whole event stream in recorded order, as the folds see it: without voided
        events and without the `event_voided` events themselves."""
        return self.passes.events(gt)

    def views(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> tuple[FunnelView, PipelineView]:
        """Funnel and pipeline, rebuilt together in one pass over the stream."""
        return self.reports.views(as_of=as_of, pipeline_name=pipeline_name)

    def funnel(self, *, as_of: datetime | None = None, **overrides: Any) -> FunnelView:
        """The funnel from the events that occurred by `as_of` (default: all of them).

        `overrides` replace keys of the funnel definition for this call: mode,
        conversion_window_days, attribution, breakdowns, cohort, exclusions, steps.
        """
        return self.reports.funnel(as_of=as_of, **overrides)

    def pipeline(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> PipelineView:
        """A pipeline (default: the first) from the events that occurred by `as_of`."""
        return self.reports.pipeline(as_of=as_of, pipeline_name=pipeline_name)

    def stage_times(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> list[DealStageTimes]:
        """Every deal's stays in each stage: entered, left, latest and cumulative days."""
        return self.reports.stage_times(as_of=as_of, pipeline_name=pipeline_name)

    def pipeline_changes(
        self, start: datetime, end: datetime, *, pipeline_name: str | None = None
    ) -> PipelineChanges:
        """How the open pipeline moved between two dates (one pass: two as-of folds)."""
        return self.reports.pipeline_changes(start, end, pipeline_name=pipeline_name)

    # --- exchange rates (dealengine.domain.rates, docs/currencies.md) -----------------------

    def set_rate(
        self, from_currency: str, to_currency: str, rate: Decimal | str,
        effective_from: date | str, *, actor: str = "api", source: str = "api",
    ) -> Recorded:  # fmt: skip
        """Record that one `from_currency` is `rate` `to_currency` from `effective_from` (a
        day, UTC) until the pair's next rate; the same rate recorded again stores nothing."""
        values = {"from": from_currency, "to": to_currency, "rate": rate,
                  "effective_from": effective_from}  # fmt: skip
        line = rate_line(values, f"rate {from_currency} {to_currency}")
        return self.exchange_rates.set([line], actor=actor, source=source)

    def import_rates(self, path: Path, *, actor: str = "api", source: str = "api") -> Recorded:
        """Record the rates of a CSV file (columns from,to,rate,effective_from), all or none;
        the rates already recorded are left out."""
        lines = read_rates_csv(path)
        return self.exchange_rates.set(lines, actor=actor, source=source or str(path))

    def void_rate(
        self, from_currency: str, to_currency: str, event_id: str, *, reason: str,
        actor: str = "api", source: str = "api",
    ) -> Recorded:  # fmt: skip
        """Void a mistaken rate (its event id) with an `exchange_rate_voided` event."""
        pair = (from_currency.upper(), to_currency.upper())
        return self.exchange_rates.void(pair, event_id, reason=reason, actor=actor, source=source)

    def rates(self, *, as_of: date | datetime | None = None) -> list[KnownRate]:
        """Every rate recorded and not voided, in recorded order; with `as_of`, the one in force
        on that day for each pair."""
        known = self.exchange_rates.rates()
        if as_of is None:
            return known.rates
        return known.in_force(day_of(as_of) if isinstance(as_of, datetime) else as_of)

    # --- materialised views ----------------------------------------------------------------

    def view(self, name: ProjectionName) -> MaterialisedView:
        """The materialised `funnel` or `pipeline` view (tables beside the store)."""
        return self.live.view(name)

    def live_funnel(
        self, *, catch_up: bool = True, progress: Callable[[int], None] | None = None
    ) -> tuple[FunnelView, Lag]:
        """The funnel from its materialised view (brought up to date first, unless a worker
        owns it, telling `progress(n)` of each batch of n events); the Lag says how far
        behind the stream it is."""
        return self.live.funnel(catch_up=catch_up, progress=progress)

    def live_pipeline(
        self,
        *,
        pipeline_name: str | None = None,
        catch_up: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[PipelineView, Lag]:
        """Pipeline `name` from its materialised view; when it holds deals in other currencies
        (converted deal by deal at the rates in force now), folded from the stream instead."""
        name = self.reports.projection(pipeline_name).definition.name
        view, lag = self.live.pipeline(name, catch_up=catch_up, progress=progress)
        if view is None:
            return self.reports.pipeline(pipeline_name=name), lag
        return view, lag

    def follow(self, names: Sequence[ProjectionName], poll: float = 1.0) -> None:
        """Run as a projection worker on PostgreSQL until SIGINT/SIGTERM (see views/worker.py)."""
        self.live.follow(names, poll)

    # --- subscriptions ----------------------------------------------------------------------

    def subscribe(self, name: str, handler: Handler, **options: Any) -> Position:
        """A durable subscriber: every event and derived notice, in recorded order, at least
        once (exactly once for a `transactional` handler's own writes); see
        dealengine.subscriptions.dispatch for `types`, `from_start`, `retry`, `run`."""
        return self.subscriptions.subscribe(name, handler, **options)

    # --- audit: corrections, tamper evidence -----------------------------------------------

    def void(
        self,
        id: str,
        event_id: str,
        *,
        reason: str,
        actor: str = "api",
        source: str = "api",
        idempotency_key: str | None = None,
    ) -> Recorded:
        """Void the event `event_id` of lead or deal `id` with an `event_voided` event (the rule,
        and what is refused: dealengine.domain.corrections). Nothing is rewritten."""
        return self.commands.void(
            id, event_id, reason=reason, actor=actor, source=source,
            idempotency_key=idempotency_key,
        )  # fmt: skip

    def forget(
        self, lead_id: str, *, reason: str, actor: str = "api", source: str = "api"
    ) -> Recorded:
        """Erase a lead's personal data: its key destroyed, a `lead_forgotten` recorded (who,
        when, why); its personal fields read `[erased]` from then on, in every history and
        report; its funnel and pipeline figures stay (docs/privacy.md)."""
        return self.commands.forget(lead_id, reason=reason, actor=actor, source=source)

    def verify(
        self, *, seal: str | None = None, manifest: Path | None = None, seals: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> VerifyReport:  # fmt: skip
        """Recompute every stream's hash chain and each event's own hash (under the audit key,
        if set), streaming the store; with a `seal` (and its `manifest`), also compare the
        streams with it; with `seals`, check the seal log's chain and each of its seals
        against the store, and that a given `seal` is in it (dealengine.audit.verify)."""
        return self.integrity.verify(seal=seal, manifest=manifest, seals=seals, progress=progress)

    def seal(
        self, *, manifest: Path | None = None, progress: Callable[[int], None] | None = None
    ) -> VerifyReport:
        """The store's seal at its current position (`report.sealed`; keep it outside the
        system), checking every chain on the way; with `manifest`, also write the seal's
        per-stream manifest there. A seal of a store found intact is appended to the seal
        log (`report.seals`: its number; 0 when it was not)."""
        return self.integrity.seal(manifest=manifest, progress=progress)

    def model_changes(self) -> list[ModelChange]:
        """Which model (its digest) the stored events were decided under, from which position
        on; [] for a store written before models were recorded."""
        return self.store.model_changes()

    def recorded_model(self, digest: str) -> bytes | None:
        """The canonical content (JSON) of a model the store recorded: the rules in force."""
        return self.store.model_content(digest)

    # --- what-if ---------------------------------------------------------------------------

    def what_if(
        self, scenario: ScenarioLike, *, as_of: datetime | None = None,
        pipeline_name: str | None = None,
    ) -> WhatIf:  # fmt: skip
        """The views under a scenario (a TOML file, a `Scenario`, or a mapping of its keys)
        beside the baseline, from one read of the store; nothing is written. See
        `what_ifs` and projections/scenarios/README.md."""
        return self.what_ifs([scenario], as_of=as_of, pipeline_name=pipeline_name)

    def what_ifs(
        self, scenarios: Sequence[ScenarioLike], *, as_of: datetime | None = None,
        pipeline_name: str | None = None,
    ) -> WhatIf:  # fmt: skip
        """The baseline (as of `as_of`, pipeline `pipeline_name`, like `views`) and every
        scenario, folded in the same pass over the stream (dealengine.whatif; the collector
        paused there, as in views())."""
        from dealengine.whatif.run import run_what_if

        return run_what_if(
            self, scenarios, self.passes.over_partitions, as_of=as_of,
            pipeline_name=pipeline_name,
        )  # fmt: skip
