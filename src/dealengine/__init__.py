"""dealengine: an event-sourced stage-transition engine for sales funnels and deal pipelines."""

from dealengine.domain.errors import (
    ConcurrencyConflict,
    DealEngineError,
    IllegalTransition,
    InvalidDefinition,
    InvalidEvent,
    UnknownAggregate,
    UnknownEventType,
)
from dealengine.engine import Engine, Recorded
from dealengine.settings import Settings

__all__ = [
    "ConcurrencyConflict",
    "DealEngineError",
    "Engine",
    "IllegalTransition",
    "InvalidDefinition",
    "InvalidEvent",
    "Recorded",
    "Settings",
    "UnknownAggregate",
    "UnknownEventType",
]
