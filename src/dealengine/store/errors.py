"""The database errors of eventsourcing, sqlite3 and psycopg as dealengine's own.

Nothing from a library escapes a store call raw: a conflict on a (stream, version) or a view's
tracked position becomes VersionConflict, anything else StoreError, naming the operation.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from eventsourcing.persistence import ConnectionPoolClosedError, IntegrityError, PersistenceError

from dealengine.domain.errors import StoreError, VersionConflict

CONFLICTS = (IntegrityError, sqlite3.IntegrityError, psycopg.IntegrityError)
FAILURES = (PersistenceError, ConnectionPoolClosedError, sqlite3.Error, psycopg.Error)


def reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def translated(operation: str | Callable[[], str]) -> Iterator[None]:
    """Raise a database error inside as VersionConflict or StoreError naming `operation` (a
    callable: made only when there is an error, for a name that costs something to make)."""
    try:
        yield
    except CONFLICTS as e:
        raise VersionConflict(_name(operation), reason(e)) from e
    except FAILURES as e:
        raise StoreError(_name(operation), reason(e)) from e


def _name(operation: str | Callable[[], str]) -> str:
    return operation if isinstance(operation, str) else operation()


def streams_named(ids: list[str], most: int = 3) -> str:
    """`deal:D-1, lead:L-1` or `deal:D-1, lead:L-1, lead:L-2 and 40 more`, for a message."""
    unique = sorted(set(ids))
    shown = ", ".join(unique[:most])
    return shown if len(unique) <= most else f"{shown} and {len(unique) - most} more"
