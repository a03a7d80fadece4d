"""The funnel and pipeline reports folded from the whole stream: now, as of a time, with a
call's own funnel options; the stays in each stage and the waterfall. One pass each
(projections/passes.py), the collector paused for the whole read (see `views`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from dealengine.domain.catalogue import BUILT_IN, Interactions
from dealengine.domain.definitions import FunnelDefinition, Pipelines
from dealengine.domain.errors import DealEngineError, InvalidDefinition
from dealengine.domain.events import format_time
from dealengine.domain.personal import personal_fields
from dealengine.domain.rates import NO_RATES, ExchangeRates
from dealengine.projections.funnel import FunnelProjection, FunnelTotals, FunnelView
from dealengine.projections.passes import StreamPasses
from dealengine.projections.pipeline import (
    DealStageTimes,
    PipelineChanges,
    PipelineProjection,
    PipelineView,
    changes,
)
from dealengine.projections.stream import Fold, FoldPass, collector_paused
from dealengine.store.recorders import Partition


@lru_cache(maxsize=16)  # a few models per process; not one entry per engine for ever
def breakdown_fields(interactions: Interactions = BUILT_IN) -> list[str]:
    """The fields a breakdown can group by: those some interaction carries, beside the
    bookkeeping every event has (ids, versions, times, hashes) and personal data."""
    bookkeeping = {"originator_id", "originator_version", "id", "occurred_at", "recorded_at",
                   "idempotency_key", "prev_hash"}  # fmt: skip
    fields = {
        f
        for cls in interactions.types.values()
        for f in cls.model_fields
        if f not in personal_fields(cls)
    }
    return sorted(fields - bookkeeping)


class Reports:
    def __init__(
        self,
        funnel: FunnelDefinition,
        pipelines: Pipelines,
        passes: StreamPasses,
        clock: Callable[[], datetime],
        rates: Callable[[], ExchangeRates] = lambda: NO_RATES,
    ) -> None:
        self.funnel_definition = funnel
        self.pipelines = pipelines
        self.passes = passes
        self.clock = clock
        self.rates = rates  # the exchange rates known now (service/rates.py)

    @collector_paused()
    def views(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> tuple[FunnelView, PipelineView]:
        """Funnel and pipeline, rebuilt together in one pass over the stream.

        Python's cyclic collector is paused for the whole call, not only for the fold: once it
        resumes, its next young-generation scan covers every object made while it was paused,
        and a large fold's states (a second at 1,000,000 events) are alive until the reports
        are made. They die (by reference counting) when the call returns."""
        funnel = self.funnel_projection(self.funnel_definition)
        pipeline = self.projection(pipeline_name)
        totals, pipeline_state = self._funnel_pass(funnel, pipeline, as_of)
        pipeline = self.converting(pipeline)
        return funnel.assemble(totals, as_of), pipeline.report(pipeline_state, as_of, self.clock())

    @collector_paused()  # see views()
    def funnel(self, *, as_of: datetime | None = None, **overrides: Any) -> FunnelView:
        funnel = self.funnel_projection(self.funnel_with(overrides))
        return funnel.assemble(self._funnel_pass(funnel, None, as_of)[0], as_of)

    @collector_paused()  # see views()
    def pipeline(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> PipelineView:
        pipeline = self.projection(pipeline_name)
        state = self.passes.fold([pipeline], as_of)[0]
        return self.converting(pipeline).report(state, as_of, self.clock())

    @collector_paused()  # see views()
    def stage_times(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> list[DealStageTimes]:
        pipeline = self.projection(pipeline_name)
        state = self.passes.fold([pipeline], as_of)[0]
        return self.converting(pipeline).stage_times(state, as_of or self.clock())

    @collector_paused()  # see views()
    def pipeline_changes(
        self, start: datetime, end: datetime, *, pipeline_name: str | None = None
    ) -> PipelineChanges:
        """How the open pipeline moved in the window from `start` to `end`, both included: open
        at the start means opened before `start` (an event at `start` itself is in the window),
        open at the end means as of `end` (one pass: two as-of folds)."""
        if end < start:
            raise DealEngineError(f"--changes: {format_time(end)} is before {format_time(start)}")
        pipeline = self.projection(pipeline_name)
        before, after = pipeline.initial(), pipeline.initial()
        first, last = format_time(start), format_time(end)
        for event in self.passes.events():
            at = event.data["occurred_at"]
            if at <= last:
                pipeline.apply(after, event)
                if at < first:
                    pipeline.apply(before, event)
        return changes(self.converting(pipeline), before, after, start, end)

    def projection(self, name: str | None) -> PipelineProjection:
        """The fold of pipeline `name` (None: the default one)."""
        if name is not None and name not in self.pipelines.by_name:
            known = ", ".join(self.pipelines.by_name)
            raise DealEngineError(f"unknown pipeline {name!r} (known: {known})")
        definition = self.pipelines[name] if name else self.pipelines.default
        return PipelineProjection(
            definition,
            default=definition is self.pipelines.default,
            interactions=self.passes.store.interactions,
            defined=self.pipelines.by_name,
        )

    def funnel_projection(
        self, definition: FunnelDefinition, part: Partition | None = None
    ) -> FunnelProjection:
        """The fold of this funnel over the store's interactions (of partition `part`)."""
        return FunnelProjection(definition, part, self.passes.store.interactions)

    def converting(self, pipeline: PipelineProjection) -> PipelineProjection:
        """`pipeline` with the exchange rates known now, read after its pass (the fold needs
        none: only its reports convert)."""
        pipeline.rates = self.rates()
        return pipeline

    def funnel_with(self, overrides: dict[str, Any]) -> FunnelDefinition:
        """The funnel definition with this call's options (None: the definition's own)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self.funnel_definition
        interactions = self.passes.store.interactions
        fields = breakdown_fields(interactions)
        unknown = [f for f in given.get("breakdowns", []) if f not in fields]
        if unknown:
            raise DealEngineError(
                f"--breakdown {unknown[0]}: no event type carries that field "
                f"(known: {', '.join(fields)})"
            )
        try:
            return FunnelDefinition.model_validate(
                self.funnel_definition.model_dump() | given, context=interactions.context
            )
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or next(iter(given))
            raise InvalidDefinition("funnel (this call)", key, err["msg"]) from e

    def _funnel_pass(
        self, funnel: FunnelProjection, pipeline: PipelineProjection | None, as_of: datetime | None
    ) -> tuple[list[FunnelTotals], Any]:
        """The funnel's totals (and the pipeline's state, with a pipeline) from one pass,
        split over processes by lead when the store is large (`Settings.rebuild_processes`)."""
        pipeline_state: list[Any] = []

        def work(part: Partition | None, fold_pass: FoldPass) -> FunnelTotals:
            mine = self.funnel_projection(funnel.definition, part)
            folds: list[Fold[Any]] = [mine]
            if pipeline is not None and (part is None or part[0] == 0):  # whole, in this process
                folds.append(pipeline)
            states = fold_pass(folds, as_of)
            pipeline_state.extend(states[1:])
            return mine.summarise(states[0])

        totals = self.passes.over_partitions(work)
        return totals, pipeline_state[0] if pipeline_state else None
