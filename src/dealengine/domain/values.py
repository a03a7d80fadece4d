"""The values the store accepts: each rule written once, as an annotated pydantic type, and used
by the events, the definitions, the scenarios and the CLI's options alike.

The limits keep every view computable on whatever was accepted: sums of many amounts stay far
inside the decimal context, a time stays in years 1-9999 in UTC (so it can be stored, shifted
and compared), and text carries no control character (PostgreSQL refuses NUL; the others break
one-line output).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, cast

from pydantic import (
    AwareDatetime,
    Field,
    PlainSerializer,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import ErrorDetails

# --- text and ids ----------------------------------------------------------------------------

TEXT_MAX = 500
ID_MAX = 200
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # no C0 control character (tab, newline, NUL) nor DEL
ID_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"  # and no whitespace
_RULES = {
    TEXT_PATTERN: "must not contain control characters (U+0000-U+001F, U+007F)",
    ID_PATTERN: "an id must not contain whitespace or control characters (U+0000-U+001F, U+007F)",
}

Text = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=TEXT_MAX, pattern=TEXT_PATTERN
    ),
]
"""Free text (a reason, an owner, a campaign): 1-500 characters once stripped, on one line."""

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN)]
"""An id the user chose (lead, deal, channel, pipeline, stage): 1-200 characters, none of them
whitespace or a control character. The stream id is `lead:<id>` or `deal:<id>`."""

_IDENTIFIER = TypeAdapter(Identifier).validator  # the type's own (compiled) validator


def check_identifier(value: object, field: str) -> str:
    """`value` if it is an Identifier, else ValueError naming `field` (for ids read before an
    event is built: a command's lead or deal, which name the streams read and written)."""
    try:
        return cast(str, _IDENTIFIER.validate_python(value))
    except ValidationError as e:
        reason = explain(e.errors()[0])
    raise ValueError(f"field '{field}': {reason}, got {shown(value)}")


def shown(value: object, limit: int = 80) -> str:
    """A value in an error message, cut short: a line of the report, not a copy of the input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# --- tenants ---------------------------------------------------------------------------------

TENANT_MAX = 40
TENANT_PATTERN = r"^[a-z](_?[a-z0-9])*$"
TenantName = Annotated[str, StringConstraints(max_length=TENANT_MAX, pattern=TENANT_PATTERN)]
"""A tenant (a workspace): it becomes a PostgreSQL schema's and a folder's name, so nothing
else may pass: a lowercase letter, then lowercase letters, digits and single underscores (not
at the end), at most 40 characters (a schema name is at most 63 bytes, with its prefix)."""
DEFAULT_TENANT = "default"  # the store without a tenant: never a tenant's name
_TENANT = TypeAdapter(TenantName).validator


def check_tenant(value: object) -> str:
    """`value` if it may name a tenant, else ValueError saying why (one line)."""
    try:
        name = cast(str, _TENANT.validate_python(value))
    except ValidationError:
        name = ""
    if name and name != DEFAULT_TENANT:
        return name
    why = (
        f"'{DEFAULT_TENANT}' is the store without a tenant"
        if value == DEFAULT_TENANT
        else "a lowercase letter, then lowercase letters, digits and single underscores "
        f"(not last), at most {TENANT_MAX} characters"
    )
    raise ValueError(f"tenant name {shown(value)}: {why}")


# --- money -----------------------------------------------------------------------------------

AMOUNT_DIGITS = 15  # integer digits: below 10**15
AMOUNT_PLACES = 4  # decimal places: the largest minor unit of ISO 4217 currencies
AMOUNT_LIMIT = Decimal(10**AMOUNT_DIGITS)

Amount = Annotated[
    Decimal, Field(ge=0, lt=AMOUNT_LIMIT, decimal_places=AMOUNT_PLACES, allow_inf_nan=False)
]
"""Money: 0 to 999,999,999,999,999.9999 (a billion deals of the largest amount still sum
exactly in the default decimal context of 28 digits)."""

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

# --- time ------------------------------------------------------------------------------------

EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_utc(value: datetime) -> str:
    """The stored form of a time: UTC, microseconds, fixed width (sorts as it orders).

    Equal to `value.astimezone(UTC).strftime(TIME_FORMAT)`, written for speed.
    """
    if value.utcoffset():  # a zero offset is falsy: already UTC
        value = value.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (faster than the others)
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


# `format_utc`, cached: a batch's events share one recorded_at, and reports repeat times.
format_time = lru_cache(maxsize=4096)(format_utc)

UtcDatetime = Annotated[
    AwareDatetime,
    Field(ge=EARLIEST, le=LATEST),  # its UTC form in years 1-9999: storable, comparable
    PlainSerializer(format_time, return_type=str, when_used="json"),  # stored in UTC
]


def check_moment(value: datetime) -> datetime:
    """An aware `value` whose UTC form is in years 1-9999, else ValueError saying so."""
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"{value.isoformat()} is outside years 1-9999 in UTC")
    return value


def shifted(value: datetime, delta: timedelta) -> datetime:
    """`value + delta`, held at the earliest or latest time when it would leave the range."""
    try:
        return check_moment(value + delta)
    except (OverflowError, ValueError):
        return LATEST if delta > timedelta(0) else EARLIEST


MAX_DAYS = 3_652_059  # days from the earliest time to the latest: any longer span is as long

Days = Annotated[float, Field(gt=0, le=MAX_DAYS, allow_inf_nan=False)]
"""A span of days: a window, a limit of time in stage (finite, positive)."""

SignedDays = Annotated[float, Field(ge=-MAX_DAYS, le=MAX_DAYS, allow_inf_nan=False)]
"""A move in time by days (negative: earlier)."""


def explain(error: ErrorDetails) -> str:
    """A validation error's message, with the rule in words where pydantic shows a pattern."""
    pattern = (error.get("ctx") or {}).get("pattern")
    return _RULES.get(pattern, error["msg"]) if isinstance(pattern, str) else error["msg"]
