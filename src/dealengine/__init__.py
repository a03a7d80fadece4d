"""dealengine: an event-sourced stage-transition engine for sales funnels and deal pipelines."""

import logging

import structlog

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

if not structlog.is_configured():  # quiet by default when embedded; the host's configure() wins
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

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
