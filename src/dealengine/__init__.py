"""dealengine: an event-sourced stage-transition engine for sales funnels and deal pipelines.

`Engine`, `Recorded` and `Settings` are imported on first use, so that `import dealengine`
(and the CLI's start-up) does not load the store, the event models and PostgreSQL's driver.
"""

from typing import TYPE_CHECKING, Any

from dealengine.domain.errors import (
    ConcurrencyConflict,
    DealEngineError,
    IllegalTransition,
    InvalidDefinition,
    InvalidEvent,
    StoreError,
    UnknownAggregate,
    UnknownEventType,
    VersionConflict,
)

if TYPE_CHECKING:
    from dealengine.engine import Engine, Recorded
    from dealengine.settings import Settings

_LAZY = {
    "Engine": "dealengine.engine",
    "Recorded": "dealengine.engine",
    "Settings": "dealengine.settings",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dealengine' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "ConcurrencyConflict",
    "DealEngineError",
    "Engine",
    "IllegalTransition",
    "InvalidDefinition",
    "InvalidEvent",
    "Recorded",
    "Settings",
    "StoreError",
    "UnknownAggregate",
    "UnknownEventType",
    "VersionConflict",
]
