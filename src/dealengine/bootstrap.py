"""The composition root: the one place that builds a store and everything that works on it
(the definitions, the clock, the evolver, the passes over the stream and the child-process
stores they fork, the views' tables and the workers' locks) and hands them to the Engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import Environment

from dealengine.audit.integrity import Integrity
from dealengine.domain.catalogue import Interactions
from dealengine.domain.decider import Evolvers, evolver
from dealengine.domain.definitions import FunnelDefinition, PipelineDefinition, Pipelines
from dealengine.domain.errors import VersionConflict
from dealengine.domain.events import DomainEvent
from dealengine.domain.model import SalesModel, load_model
from dealengine.domain.personal import LeadKeys
from dealengine.projections.passes import StreamPasses
from dealengine.service.commands import Commands
from dealengine.service.keys import ApiKeys
from dealengine.service.rates import ExchangeRateBook
from dealengine.service.reports import Reports
from dealengine.service.states import States
from dealengine.settings import Settings
from dealengine.store.application import Store, store_file, tables_lock, views_env
from dealengine.store.errors import translated
from dealengine.store.lead_keys import StoredLeadKeys
from dealengine.store.tenants import definition_file, definitions_folder, located
from dealengine.subscriptions.dispatch import AdvisoryLock, FileLock, Lock, Subscriptions
from dealengine.subscriptions.notices import Notices
from dealengine.subscriptions.tables import SubscriptionTables
from dealengine.subscriptions.webhooks import load_webhooks
from dealengine.views.live import LiveViews
from dealengine.views.tables import (
    TRACKING_TABLE,
    VIEWS,
    PostgresViewRecorder,
    SQLiteViewRecorder,
    ViewTables,
)
from dealengine.views.worker import Owner

Clock = Callable[[], datetime]
InteractionModels = Interactions | Sequence[type[DomainEvent]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Wiring:
    tenant: str | None
    tenant_definitions: Path | None  # the tenant's own definitions folder, if it has one
    settings: Settings
    store: Store
    model: SalesModel
    pipelines: Pipelines
    funnel: FunnelDefinition
    interactions: Interactions
    clock: Clock
    evolve: Evolvers
    passes: StreamPasses
    states: States
    reports: Reports
    live: LiveViews
    subscriptions: Subscriptions
    keys: ApiKeys
    commands: Commands
    integrity: Integrity
    rates: ExchangeRateBook


def bootstrap(
    settings: Settings | None = None,
    *,
    pipeline: PipelineDefinition | Pipelines | None = None,
    funnel: FunnelDefinition | None = None,
    definitions: Path | None = None,
    clock: Clock = utc_now,
    interactions: InteractionModels | None = None,
    lead_keys: LeadKeys | None = None,
) -> Wiring:
    """Everything an Engine works with, for these settings and definitions: the models given,
    else those of the `definitions` folder, else of the settings' folder, else the shipped
    ones; a tenant's own definition files replace that folder's. `interactions`: the model's
    whole catalogue, or pydantic models to declare beside the folder's; leads' data keys in
    `lead_keys` (default: the store's own table)."""
    asked = settings or Settings()
    settings = located(asked)  # the tenant's store, if a tenant is asked for
    if isinstance(pipeline, PipelineDefinition):
        pipeline = Pipelines(pipelines=[pipeline])
    folder = definitions or asked.definitions
    catalogue, models = (
        (interactions, ()) if isinstance(interactions, Interactions) else (None, interactions)
    )
    model = load_model(
        folder, definitions_folder(asked), pipelines=pipeline, funnel=funnel,
        interactions=catalogue, models=models or (),
    )  # fmt: skip
    pipelines, funnel, interactions = model.pipelines, model.funnel, model.interactions
    webhooks = definition_file(asked, "webhooks.toml") or _beside(folder, "webhooks.toml")
    store = Store(settings, interactions)
    store.recorder.model = (model.digest, model.content)  # recorded with each write
    evolve = evolver(pipelines)
    passes = StreamPasses(store, settings.rebuild_processes, _child_stores(settings, interactions))
    lead_keys = lead_keys or StoredLeadKeys(store.recorder.datastore, bool(settings.database_url))
    states = States(store, evolve, lead_keys)
    key = settings.audit_key_bytes()  # the hashes' HMAC key, if any
    rates = ExchangeRateBook(store, clock, key)
    return Wiring(
        tenant=asked.tenant,
        tenant_definitions=definitions_folder(asked),
        settings=settings,
        store=store,
        model=model,
        pipelines=pipelines,
        funnel=funnel,
        interactions=interactions,
        clock=clock,
        evolve=evolve,
        passes=passes,
        states=states,
        reports=Reports(funnel, pipelines, passes, clock, rates.rates),
        live=_live_views(settings, store, funnel, pipelines),
        subscriptions=_subscriptions(settings, store, states, evolve, funnel, webhooks),
        keys=ApiKeys(store.recorder.datastore, bool(settings.database_url), asked.tenant),
        commands=Commands(
            store, pipelines, evolve, states.load, states.which, clock, key, lead_keys
        ),
        integrity=Integrity(store, key, clock),
        rates=rates,
    )


def _beside(folder: Path | None, file: str) -> Path | None:
    """`file` in the model folder, if one is given (else load_webhooks looks beside the
    shipped definitions)."""
    return folder / file if folder is not None else None


def _child_stores(settings: Settings, interactions: Interactions) -> Callable[[], Store] | None:
    """How a forked child opens the store (read-only, its own connection); None when it
    cannot: an in-memory store lives in this process only."""
    if settings.db == ":memory:" and not settings.database_url:
        return None
    read_only = settings.model_copy(update={"read_only": True})
    return lambda: Store(read_only, interactions)


def _live_views(
    settings: Settings, store: Store, funnel: FunnelDefinition, pipelines: Pipelines
) -> LiveViews:
    def create_tables() -> ViewTables:
        """On SQLite, in a file of their own beside the store; on PostgreSQL, in the store's
        schema through the store's own pool (no second pool per engine)."""
        with tables_lock(settings.database_url), translated("opening the views"):
            if not settings.database_url:
                env = Environment(VIEWS, views_env(settings, store.env))
                factory = InfrastructureFactory.construct(env)
                return cast(ViewTables, factory.tracking_recorder(SQLiteViewRecorder))
            datastore = cast(PostgresDatastore, store.recorder.datastore)
            tables = PostgresViewRecorder(datastore, tracking_table_name=TRACKING_TABLE)
            tables.create_table()
            return tables

    def open_tables() -> ViewTables:
        try:
            return create_tables()
        except VersionConflict:  # SQLite: another process created the tables first: open them
            return create_tables()

    database_url = settings.database_url
    if database_url is None:
        owner, channel = None, None
    else:
        schema: str = store.recorder.datastore.schema  # type: ignore[union-attr]
        channel = store.recorder.channel_name  # type: ignore[union-attr]

        def owner() -> Owner:
            return Owner(database_url, schema)

    return LiveViews(
        funnel,
        pipelines,
        store,
        None if settings.read_only else open_tables,
        owner,
        channel,
        settings.view_batch,
        settings.view_partitions,
    )


def _subscriptions(
    settings: Settings, store: Store, states: States, evolve: Evolvers, funnel: FunnelDefinition,
    webhooks: Path | None,
) -> Subscriptions:  # fmt: skip
    """Subscribers' positions in the store's own database; one owner per subscriber: an
    advisory lock on PostgreSQL, a file lock beside a SQLite file."""
    database_url = settings.database_url
    tables = SubscriptionTables(store.recorder.datastore, postgres=bool(database_url))

    def open_lock() -> Lock:
        if database_url:
            schema: str = store.recorder.datastore.schema  # type: ignore[union-attr]
            return AdvisoryLock(Owner(database_url, schema))
        return FileLock(None if settings.db == ":memory:" else str(store_file(settings.db)))

    subscriptions = Subscriptions(
        store, tables, lambda: Notices(store, states.load, evolve, funnel), open_lock
    )
    subscriptions.webhooks = load_webhooks(
        Path(settings.webhooks) if settings.webhooks else webhooks, store.interactions.context
    ).webhooks
    return subscriptions
