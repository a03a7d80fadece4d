"""dealengine: an event-sourced stage-transition engine for sales funnels and deal pipelines.

Everything a host uses is importable from here (`__all__`). Importing the package is light and
configures nothing (not structlog, not logging): the names other than the errors are imported
from their modules when first used. dealengine logs through structlog as the host configured
it; until something configures structlog, only its warnings and errors are printed (logs.py).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from dealengine.domain.errors import (
    ConcurrencyConflict,
    DealEngineError,
    IllegalTransition,
    InvalidDefinition,
    InvalidEvent,
    InvalidFields,
    StoreError,
    UndefinedInModel,
    UnknownAggregate,
    UnknownEvent,
    UnknownEventType,
    UnknownTenant,
    VersionConflict,
    WebhookExists,
)

if TYPE_CHECKING:
    from dealengine.audit.verify import Finding, Seal, VerifyReport
    from dealengine.domain.catalogue import Interactions, load_interactions
    from dealengine.domain.deal import Deal
    from dealengine.domain.definitions import (
        FunnelDefinition,
        FunnelStep,
        Moves,
        PipelineDefinition,
        Pipelines,
        Stage,
        load_funnel,
        load_pipelines,
    )
    from dealengine.domain.events import DealEvent, DomainEvent, LeadEvent
    from dealengine.domain.interaction import Interaction, Recorded
    from dealengine.domain.lead import Lead
    from dealengine.domain.model import ModelChange, SalesModel, load_model
    from dealengine.domain.personal import LeadKey, LeadKeys, personal_fields
    from dealengine.domain.rates import ExchangeRates, KnownRate
    from dealengine.domain.replay import TimelineEntry
    from dealengine.domain.streams import deal_stream, lead_stream, parse_stream
    from dealengine.engine import Engine
    from dealengine.ingest.jsonl import IngestReport, Rejected, ingest_jsonl
    from dealengine.ingest.mapping import BadCell
    from dealengine.projections.funnel import (
        ConversionTime,
        FunnelBreakdown,
        FunnelStepView,
        FunnelView,
        HistogramBucket,
    )
    from dealengine.projections.pipeline import (
        ClosedView,
        CycleView,
        DealStageTimes,
        ForecastView,
        MissingRate,
        Money,
        Movement,
        PipelineBreakdown,
        PipelineChanges,
        PipelineView,
        StageStay,
        StageTime,
        StageView,
        StaleDeal,
    )
    from dealengine.settings import Settings
    from dealengine.tenants import Tenants
    from dealengine.views.materialised import Lag, OutOfDate
    from dealengine.whatif.result import (
        AmountChange,
        CountChange,
        Diff,
        RateChange,
        ScenarioResult,
        StageChange,
        StepChange,
        WhatIf,
    )
    from dealengine.whatif.scenario import RateOverride, Scenario

_MODULES: dict[str, tuple[str, ...]] = {  # where each name other than the errors lives
    "dealengine.engine": ("Engine",),
    "dealengine.settings": ("Settings",),
    "dealengine.tenants": ("Tenants",),
    "dealengine.domain.lead": ("Lead",),
    "dealengine.domain.deal": ("Deal",),
    "dealengine.domain.interaction": ("Interaction", "Recorded"),
    "dealengine.domain.events": ("DealEvent", "DomainEvent", "LeadEvent"),
    "dealengine.domain.model": ("ModelChange", "SalesModel", "load_model"),
    "dealengine.domain.catalogue": ("Interactions", "load_interactions"),
    "dealengine.domain.rates": ("ExchangeRates", "KnownRate"),
    "dealengine.domain.definitions": (
        "FunnelDefinition", "FunnelStep", "Moves", "PipelineDefinition", "Pipelines", "Stage",
        "load_funnel", "load_pipelines",
    ),
    "dealengine.projections.funnel": (
        "ConversionTime", "FunnelBreakdown", "FunnelStepView", "FunnelView", "HistogramBucket",
    ),
    "dealengine.projections.pipeline": (
        "ClosedView", "CycleView", "DealStageTimes", "ForecastView", "MissingRate", "Money",
        "Movement",
        "PipelineBreakdown", "PipelineChanges", "PipelineView", "StageStay", "StageTime",
        "StageView", "StaleDeal",
    ),
    "dealengine.views.materialised": ("Lag", "OutOfDate"),
    "dealengine.whatif.result": (
        "AmountChange", "CountChange", "Diff", "RateChange", "ScenarioResult", "StageChange",
        "StepChange", "WhatIf",
    ),
    "dealengine.whatif.scenario": ("RateOverride", "Scenario"),
    "dealengine.domain.replay": ("TimelineEntry",),
    "dealengine.domain.streams": ("deal_stream", "lead_stream", "parse_stream"),
    "dealengine.audit.verify": ("Finding", "Seal", "VerifyReport"),
    "dealengine.ingest.jsonl": ("IngestReport", "Rejected", "ingest_jsonl"),
    "dealengine.ingest.mapping": ("BadCell",),
    "dealengine.domain.personal": ("LeadKey", "LeadKeys", "personal_fields"),
}  # fmt: skip
_LAZY = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562), then keep it here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dealengine' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "AmountChange",
    "BadCell",
    "ClosedView",
    "ConcurrencyConflict",
    "ConversionTime",
    "CountChange",
    "CycleView",
    "Deal",
    "DealEngineError",
    "DealEvent",
    "DealStageTimes",
    "Diff",
    "DomainEvent",
    "Engine",
    "ExchangeRates",
    "Finding",
    "ForecastView",
    "FunnelBreakdown",
    "FunnelDefinition",
    "FunnelStep",
    "FunnelStepView",
    "FunnelView",
    "HistogramBucket",
    "IllegalTransition",
    "IngestReport",
    "Interaction",
    "Interactions",
    "InvalidDefinition",
    "InvalidEvent",
    "InvalidFields",
    "KnownRate",
    "Lag",
    "Lead",
    "LeadEvent",
    "LeadKey",
    "LeadKeys",
    "MissingRate",
    "ModelChange",
    "Money",
    "Movement",
    "Moves",
    "OutOfDate",
    "PipelineBreakdown",
    "PipelineChanges",
    "PipelineDefinition",
    "PipelineView",
    "Pipelines",
    "RateChange",
    "RateOverride",
    "Recorded",
    "Rejected",
    "SalesModel",
    "Scenario",
    "ScenarioResult",
    "Seal",
    "Settings",
    "Stage",
    "StageChange",
    "StageStay",
    "StageTime",
    "StageView",
    "StaleDeal",
    "StepChange",
    "StoreError",
    "Tenants",
    "TimelineEntry",
    "UndefinedInModel",
    "UnknownAggregate",
    "UnknownEvent",
    "UnknownEventType",
    "UnknownTenant",
    "VerifyReport",
    "VersionConflict",
    "WebhookExists",
    "WhatIf",
    "deal_stream",
    "ingest_jsonl",
    "lead_stream",
    "load_funnel",
    "load_interactions",
    "load_model",
    "load_pipelines",
    "parse_stream",
    "personal_fields",
]
