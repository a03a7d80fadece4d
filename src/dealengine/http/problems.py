"""Errors as RFC 9457 `application/problem+json`: a type, a title, the status, a detail, and
the member a client acts on (`field`, or the stage rule's `aggregate`, `current`, `attempted`,
`reason`)."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.responses import Response

from dealengine.domain.errors import (
    ConcurrencyConflict,
    DealEngineError,
    IllegalTransition,
    InvalidEvent,
    UnknownAggregate,
)

PROBLEM = "application/problem+json"
TYPES = "https://dealengine.dev/problems/"
_FIELD = re.compile(r"field '([^']+)'")


class Problem(Exception):
    """An HTTP error with its problem document."""

    def __init__(self, status: int, title: str, detail: str, **members: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.members = status, title, detail, members
        self.headers: dict[str, str] = {}

    def response(self, instance: str | None = None) -> Response:
        slug = self.title.lower().replace(" ", "-")
        body = {"type": TYPES + slug, "title": self.title, "status": self.status,
                "detail": self.detail, **self.members}  # fmt: skip
        if instance:
            body["instance"] = instance
        return Response(orjson.dumps(body), self.status, self.headers, media_type=PROBLEM)


def problem_of(error: DealEngineError, pointer: str = "") -> Problem:
    """The problem of a refusal: 409 for a stage rule or a conflict, 404 for an unknown lead
    or deal read, 422 for anything else the request got wrong."""
    if isinstance(error, IllegalTransition):
        return Problem(
            409, "Stage rule", str(error), aggregate=error.aggregate, current=error.current,
            attempted=error.attempted, reason=error.reason,
            **({"pointer": pointer} if pointer else {}),
        )  # fmt: skip
    if isinstance(error, ConcurrencyConflict):
        return Problem(409, "Concurrent writers", str(error), aggregates=error.aggregates)
    members: dict[str, Any] = {}
    if pointer:
        members["pointer"] = pointer
    if isinstance(error, InvalidEvent):
        found = _FIELD.search(str(error))
        field = found.group(1) if found else "type"
        members["field"] = field
        members["pointer"] = f"{pointer}/{field}"
        return Problem(422, "Invalid interaction", str(error), **members)
    if isinstance(error, UnknownAggregate):
        return Problem(422, "Unknown lead or deal", str(error), **members)
    return Problem(422, "Refused", str(error), **members)
