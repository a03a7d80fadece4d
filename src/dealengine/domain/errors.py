"""Domain errors: each carries the ids and values a user needs to act on it."""

from __future__ import annotations

from collections.abc import Iterable


class DealEngineError(Exception):
    """Base of every error dealengine raises on purpose; the CLI prints it as one line."""


class InvalidDefinition(DealEngineError):
    """A TOML definition (funnel, pipeline, scenario, mapping) is malformed."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file, self.key, self.reason = file, key, reason
        super().__init__(f"{file}: {key}: {reason}")


class InvalidEvent(DealEngineError):
    """An interaction cannot become an event: unknown type, missing or ill-typed field."""


class InvalidFields(InvalidEvent):
    """An event's fields break its type's rules: which type (`event_type`), and which fields
    (the message; the pydantic ValidationError is the cause)."""

    def __init__(self, event_type: str, described: str) -> None:
        self.event_type = event_type
        super().__init__(f"{event_type}: {described}")


class UnknownEventType(InvalidEvent):
    def __init__(self, event_type: object, known: list[str]) -> None:
        self.event_type = event_type
        super().__init__(f"unknown event type {event_type!r} (known: {', '.join(known)})")


class IllegalTransition(DealEngineError):
    """A command breaks a stage rule; nothing is stored."""

    def __init__(self, aggregate: str, current: str, attempted: str, reason: str) -> None:
        self.aggregate, self.current, self.attempted, self.reason = (
            aggregate,
            current,
            attempted,
            reason,
        )
        super().__init__(f"{aggregate} is in {current!r}: {attempted} refused: {reason}")


class UnknownEvent(DealEngineError):
    """A correction names an event that its lead or deal does not have."""


class UnknownAggregate(DealEngineError):
    """A command names a lead or deal that was never recorded."""

    def __init__(self, aggregate: str) -> None:
        self.aggregate = aggregate
        super().__init__(f"unknown {aggregate}")


class UndefinedInModel(DealEngineError):
    """The store names a pipeline, a stage or an interaction type that the definitions in use
    do not define: it was written under another model (dealengine.domain.model)."""


def undefined_pipeline(deal: str, name: str, defined: Iterable[str]) -> UndefinedInModel:
    return UndefinedInModel(
        f"{deal} is in pipeline {name!r}, which the definitions in use do not define "
        f"(they define {', '.join(defined)})"
    )


def undefined_stage(deal: str, pipeline: str, stage: str) -> UndefinedInModel:
    return UndefinedInModel(
        f"{deal} moved to stage {stage!r}, which pipeline {pipeline!r} of the definitions in "
        "use does not define"
    )


class ConcurrencyConflict(DealEngineError):
    """Another writer appended to the same aggregate first, and retries ran out."""

    def __init__(self, aggregates: list[str], attempts: int) -> None:
        self.aggregates, self.attempts = aggregates, attempts
        super().__init__(
            f"concurrent writers on {', '.join(aggregates)}: "
            f"still conflicting after {attempts} attempts"
        )


class StoreError(DealEngineError):
    """The database failed an operation (unreachable, closed, locked past its timeout); what
    the operation would have stored, it did not."""

    def __init__(self, operation: str, reason: str) -> None:
        self.operation, self.reason = operation, reason
        super().__init__(f"{operation}: {reason}")


class VersionConflict(StoreError):
    """Another writer stored the same version of a lead or deal (or the same view position)
    first. The engine re-reads and re-decides; ConcurrencyConflict when that keeps failing."""


class UnknownTenant(DealEngineError):
    """No tenant of that name in the store (`dealengine tenants list` lists them)."""


class WebhookExists(DealEngineError):
    """A webhook of that name is defined already (webhooks.toml or the HTTP API)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a webhook named {name!r} exists")
