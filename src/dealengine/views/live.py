"""The materialised funnel and pipeline views of one store: opened on first use, caught up
before a query (on SQLite; on PostgreSQL only when no worker owns the view), followed by
workers (`dealengine project --follow`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import cast

from dealengine.domain.definitions import FunnelDefinition, Pipelines
from dealengine.domain.errors import DealEngineError
from dealengine.projections.funnel import FunnelProjection, FunnelView
from dealengine.projections.pipeline import PipelineProjection, PipelineView
from dealengine.store.errors import translated
from dealengine.store.recorders import Partition
from dealengine.views.materialised import (
    BATCH,
    Adapter,
    FunnelAdapter,
    Lag,
    MaterialisedView,
    PipelineAdapter,
    ProjectionName,
    Source,
)
from dealengine.views.signals import stop_on_signals
from dealengine.views.tables import ViewTables
from dealengine.views.worker import Owner, follow

Progress = Callable[[int], None] | None  # told of each batch of n events a catch-up folds


class LiveViews:
    """`open_tables` opens the views' tables (once); `open_owner` takes the workers' locks on
    PostgreSQL (None on SQLite, where a query catches up itself); `channel` is the store's
    NOTIFY channel a worker listens on."""

    def __init__(
        self,
        funnel: FunnelDefinition,
        pipelines: Pipelines,
        source: Source,
        open_tables: Callable[[], ViewTables] | None,
        open_owner: Callable[[], Owner] | None,
        channel: str | None,
        batch: int = BATCH,
        partitions: int = 1,
    ) -> None:
        self.funnel_definition = funnel
        self.pipelines = pipelines
        self.source = source
        self.open_tables = open_tables
        self.open_owner = open_owner
        self.channel = channel
        self.batch = batch  # events per read (Settings.view_batch)
        self.partitions = partitions  # each view's (Settings.view_partitions)
        self.tables: ViewTables | None = None
        self._views: dict[str, MaterialisedView] = {}
        self._opening = threading.Lock()
        self._catching_up = threading.Lock()
        self._owner: Owner | None = None  # the catch-ups' (PostgreSQL), under _catching_up

    def view(self, name: ProjectionName) -> MaterialisedView:
        """The materialised `funnel` or `pipeline` view (tables beside the store)."""
        if self.open_tables is None:
            raise DealEngineError("the store is open read-only: no materialised views (use --full)")
        with self._opening:
            if name not in self._views:
                if self.tables is None:
                    self.tables = self.open_tables()
                funnel, pipelines = self.funnel_definition, self.pipelines
                interactions = self.source.interactions

                def adapter_of(part: Partition | None) -> Adapter:
                    if name == "funnel":
                        return FunnelAdapter(FunnelProjection(funnel, part, interactions))
                    folds = [
                        PipelineProjection(
                            p,
                            default=p is pipelines.default,
                            interactions=interactions,
                            defined=pipelines.by_name,
                        )
                        for p in pipelines.pipelines
                    ]
                    return PipelineAdapter(folds, part)

                self._views[name] = MaterialisedView(
                    name, adapter_of, self.tables, self.source, self.batch, self.partitions
                )
            return self._views[name]

    def funnel(self, *, catch_up: bool = True, progress: Progress = None) -> tuple[FunnelView, Lag]:
        """The funnel from its materialised view; the Lag says how far behind it is.
        `progress(n)` is told of each batch of n events the catch-up applies."""
        view = self.view("funnel")
        if catch_up:
            self.catch_up(view, progress)
        funnel, lag = view.read()
        return cast(FunnelView, funnel), lag

    def pipeline(
        self, name: str, *, catch_up: bool = True, progress: Progress = None
    ) -> tuple[PipelineView | None, Lag]:
        """Pipeline `name` from the materialised view (None: it holds deals in other
        currencies, which no counter can convert: `Engine.live_pipeline` folds them)."""
        view = self.view("pipeline")
        if catch_up:
            self.catch_up(view, progress)
        pipelines, lag = view.read()
        return cast(dict[str, PipelineView | None], pipelines)[name], lag

    def follow(self, names: Sequence[ProjectionName], poll: float = 1.0) -> None:
        """Run as a projection worker on PostgreSQL until SIGINT/SIGTERM (views/worker.py)."""
        with stop_on_signals() as stopping:
            self.follow_until(stopping, names, poll)

    def follow_until(
        self, stopping: threading.Event, names: Sequence[ProjectionName], poll: float = 1.0
    ) -> None:
        """`follow` until `stopping` is set (from any thread: one worker, many tenants)."""
        if self.open_owner is None or self.channel is None:
            raise DealEngineError("following the views needs PostgreSQL")
        owner = self.open_owner()
        try:
            with translated("following the store"):
                follow([self.view(n) for n in names], owner, self.channel, stopping, poll)
        finally:
            owner.close()

    def catch_up(self, view: MaterialisedView, progress: Progress = None) -> None:
        """On SQLite, catch up now. On PostgreSQL only when no worker owns the view. One
        thread at a time: the others then find the view caught up."""
        with self._catching_up:
            self._catch_up_now(view, progress)

    def _catch_up_now(self, view: MaterialisedView, progress: Progress) -> None:
        """On PostgreSQL, through this engine's one owner connection (opened on the first
        catch-up, and again when it was lost): the partitions no worker holds are taken for
        the catch-up and let go after it."""
        if self.open_owner is None:
            view.catch_up(progress)
            return
        if self._owner is not None and not self._owner.alive():
            self._owner.close()
            self._owner = None
        if self._owner is None:
            self._owner = self.open_owner()
        owner, keys = self._owner, [view.owner_key(i) for i in range(view.partitions)]
        try:
            free = [i for i, key in enumerate(keys) if owner.try_take(key)]
            try:
                if free:
                    view.catch_up(progress, partitions=free)
            finally:
                for i in free:
                    owner.release(keys[i])
        except BaseException:
            self._owner = None
            owner.close()  # its locks go with it
            raise

    def close(self) -> None:
        if self._owner is not None:
            self._owner.close()
        if self.tables is not None and self.tables.owns_datastore:
            self.tables.datastore.close()  # type: ignore[attr-defined]
