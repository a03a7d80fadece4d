"""The eventsourcing application that stores every lead and deal event, and its settings.

No storage layer of our own: the settings are mapped onto eventsourcing's own SQLite and
PostgreSQL configuration; we add only the pydantic mapper and a streaming reader.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlparse, urlunparse

import psycopg
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import Environment, EnvType, get_topic

from dealengine.domain.catalogue import BUILT_IN, Interactions
from dealengine.domain.errors import DealEngineError, StoreError
from dealengine.domain.model import ModelChange, model_at
from dealengine.settings import Settings, default_db
from dealengine.store.errors import streams_named, translated
from dealengine.store.mapper import OrjsonTranscoder, PydanticMapper
from dealengine.store.recorders import (
    Partition,
    PostgresStreamingRecorder,
    Row,
    SQLiteStreamingRecorder,
    StreamRow,
)

TABLES_LOCK = 0x6465616C  # "deal": the advisory lock key for creating dealengine's tables


class DealEngineApplication(Application[str]):
    name = "DealEngine"

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The environment `store_env` made from Settings, nothing from the process environment:
        there, a host's eventsourcing keys (PERSISTENCE_MODULE, CIPHER_TOPIC, POSTGRES_*, ...)
        would reconfigure dealengine's store, and DEALENGINE_* keys override any key."""
        return Environment(name, {**type(self).env, **(env or {})})


def store_env(settings: Settings) -> dict[str, str]:
    """eventsourcing's environment for these settings."""
    env = {
        "MAPPER_TOPIC": get_topic(PydanticMapper),
        "TRANSCODER_TOPIC": get_topic(OrjsonTranscoder),
        "ORIGINATOR_ID_TYPE": "text",
        "CREATE_TABLE": "n" if settings.read_only else "y",
    }
    if settings.database_url:
        env.update(postgres_env(settings.database_url))
        env["APPLICATION_RECORDER_TOPIC"] = get_topic(PostgresStreamingRecorder)
        return env
    if settings.db == ":memory:":
        db_name = f"file:dealengine-{uuid.uuid4().hex}?mode=memory&cache=shared"
    elif settings.read_only:
        db_name = read_only_uri(settings.db)
    else:
        db_name = str(store_file(settings.db))
    env.update(
        {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": db_name,
            "SQLITE_LOCK_TIMEOUT": str(settings.lock_timeout),
            "APPLICATION_RECORDER_TOPIC": get_topic(SQLiteStreamingRecorder),
        }
    )
    return env


def store_file(db: str) -> Path:
    """The SQLite store file `db`. Its folder is created only for the default store (in the
    user data directory): elsewhere a missing folder is a mistake (a typo in DEALENGINE_DB)
    that would otherwise create an empty store and show empty views."""
    path = Path(db).expanduser()
    if path == default_db():
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise DealEngineError(
            f"no folder {path.parent} for the store {path} (DEALENGINE_DB): "
            f"create the folder first (mkdir -p {path.parent})"
        )
    if path.is_dir():
        raise DealEngineError(f"cannot open the store {path}: it is a folder, not a file")
    if not path.exists() and not os.access(path.parent, os.W_OK):
        raise DealEngineError(
            f"cannot create the store {path}: the folder {path.parent} is not writable"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise DealEngineError(f"cannot write the store {path}: the file is read-only")
    return path


def read_only_uri(db: str) -> str:
    """The SQLite URI that opens an existing store file for reading only."""
    path = Path(db).expanduser()
    if not path.is_file():
        raise DealEngineError(f"no store at {path}")
    return f"file:{quote(str(path.resolve()))}?mode=ro"


def read_only_sessions(datastore: PostgresDatastore) -> None:
    """Make each PostgreSQL session the datastore hands out read-only before it is used."""
    checkout = datastore.get_connection

    @contextmanager
    def read_only() -> Iterator[Any]:
        with checkout() as conn:
            conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            yield conn

    datastore.get_connection = read_only  # type: ignore[method-assign]


def store_name(settings: Settings) -> str:
    """The store in use, as it may be shown: a file's path, or the URL without its password."""
    if settings.database_url:
        return masked_url(settings.database_url)
    return settings.db if settings.db == ":memory:" else str(Path(settings.db).expanduser())


def masked_url(url: str) -> str:
    """The URL as it may be shown: its password replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    credentials, _, host = netloc.rpartition("@")
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}{slash}{path}"


def postgres_env(url: str) -> dict[str, str]:
    parts = urlparse(url)
    try:
        port = parts.port
    except ValueError as e:
        port, reason = None, str(e)
    else:
        reason = ""
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/") or reason:
        raise DealEngineError(
            "DEALENGINE_DATABASE_URL must look like "
            f"postgresql://user:password@host:5432/dbname, got {masked_url(url)!r}"
            + (f" ({reason})" if reason else "")
        )
    schema = parse_qs(parts.query).get("schema", [""])[0]
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(parts.path.strip("/")),
        "POSTGRES_HOST": parts.hostname or "localhost",
        "POSTGRES_PORT": str(port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "8",
    }


@contextmanager
def tables_lock(database_url: str | None) -> Iterator[None]:
    """Serialise table creation: app instances starting together on PostgreSQL would race
    on CREATE TABLE IF NOT EXISTS ("tuple concurrently updated")."""
    if not database_url:
        yield
        return
    parts = urlparse(database_url)
    try:
        conn = psycopg.connect(
            urlunparse(parts._replace(query="")), autocommit=True, connect_timeout=10
        )
    except psycopg.Error as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise StoreError(
            f"cannot connect to PostgreSQL at {parts.hostname}:{parts.port or 5432}", reason
        ) from e
    with conn:
        with translated("creating dealengine's tables"):
            conn.execute("SELECT pg_advisory_lock(%s)", (TABLES_LOCK,))
        try:
            yield
        finally:
            with translated("creating dealengine's tables"):
                conn.execute("SELECT pg_advisory_unlock(%s)", (TABLES_LOCK,))


def views_env(settings: Settings, store: dict[str, str]) -> dict[str, str]:
    """eventsourcing's environment for the views: a SQLite file beside the store, or the
    store's own PostgreSQL schema."""
    env = dict(store)
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        name = env["SQLITE_DBNAME"]
        env["SQLITE_DBNAME"] = (
            name.replace("?mode=memory", "-views?mode=memory")
            if "mode=memory" in name
            else name + ".views"
        )
    return env


class Store:
    """The application plus the two reads the engine needs: one stream, and the whole log.

    Every call raises the database's errors as StoreError (a taken version: VersionConflict),
    naming what it was doing (store/errors.py).
    """

    def __init__(self, settings: Settings, interactions: Interactions = BUILT_IN) -> None:
        self.settings = settings
        self.interactions = interactions  # the model's: how a stored topic is read
        self.env = store_env(settings)
        with (
            tables_lock(settings.database_url),
            translated(f"cannot open the store {store_name(settings)}"),
        ):
            self.app = DealEngineApplication(env=self.env)
        cast(PydanticMapper, self.app.mapper).interactions = interactions
        self.recorder = cast(SQLiteStreamingRecorder | PostgresStreamingRecorder, self.app.recorder)
        if settings.read_only and isinstance(self.recorder, PostgresStreamingRecorder):
            read_only_sessions(self.recorder.datastore)

    def events(self, stream_id: str, version: int | None = None) -> list[Any]:
        """The validated events of one stream, oldest first (up to `version`)."""
        with translated(f"reading {stream_id}"):
            return list(self.app.events.get(stream_id, lte=version))

    def events_of(self, stream_ids: list[str]) -> dict[str, list[Any]]:
        """The validated events of many streams, read together."""
        found: dict[str, list[Any]] = {}
        with translated(lambda: f"reading {streams_named(stream_ids)}"):
            for stored in self.recorder.select_streams(stream_ids):
                found.setdefault(str(stored.originator_id), []).append(
                    self.app.mapper.to_domain_event(stored)
                )
        return found

    def append(self, events: list[Any]) -> None:
        """Store events in one transaction; VersionConflict if a version is taken."""
        mapper = cast(PydanticMapper, self.app.mapper)  # store_env's MAPPER_TOPIC

        def operation() -> str:  # named only on an error: a batch has thousands of events
            streams = streams_named([e.originator_id for e in events])
            return f"appending {len(events)} events to {streams}"

        with translated(operation):
            self.recorder.insert_events(mapper.to_stored_events(events))

    def exists(self, stream_id: str) -> bool:
        with translated(f"reading {stream_id}"):
            return bool(self.app.recorder.select_events(stream_id, limit=1))

    def stream(
        self,
        gt: int = 0,
        stop: int | None = None,
        part: Partition | None = None,
        *,
        deals: bool = False,
    ) -> Iterator[Row]:
        with translated("reading the event log"):
            yield from self.recorder.stream(gt, stop, part, deals=deals)

    def stream_rows(self, ids: Sequence[str], stop: int) -> list[Row]:
        """The events of streams `ids` up to position `stop`, in recorded order."""
        with translated("reading the event log"):
            return self.recorder.stream_rows(ids, stop)

    def position(self) -> int:
        with translated("reading the event log's position"):
            return self.app.recorder.max_notification_id() or 0

    # --- for audits (dealengine.audit) ---

    def voided_ids(self, stop: int | None = None) -> set[str]:
        """Ids of the events voided by an `event_voided` event (up to position `stop`)."""
        with translated("reading the voided events"):
            return self.recorder.voided_ids(stop)

    def rate_rows(self, stop: int | None = None) -> list[Row]:
        """The exchange rates' events, up to position `stop`, in recorded order."""
        with translated("reading the exchange rates"):
            return self.recorder.rate_rows(stop)

    def by_stream(self) -> Iterator[StreamRow]:
        """Every stored row, by stream then version, streamed: (id, version, topic, state, pos)."""
        with translated("reading every stream"):
            yield from self.recorder.by_stream()

    def model_changes(self) -> list[ModelChange]:
        """Where the model the writes were decided under changed (dealengine.domain.model)."""
        with translated("reading the models recorded"):
            return [ModelChange(*row) for row in self.recorder.model_changes()]

    def positions(self, stream: str) -> list[int]:
        """The positions (notification ids) of one stream's events, in version order."""
        with translated(f"reading the positions of {stream}"):
            return self.recorder.positions(stream)

    def models_in_force(self, stream: str) -> list[str | None]:
        """The digest of the model each of the stream's events (in version order) was decided
        under; None for an event written before models were recorded."""
        positions = self.positions(stream)
        with translated(f"reading the models of {stream}"):
            changes = [ModelChange(*row) for row in self.recorder.model_changes()]
        return [model_at(changes, position) for position in positions]

    def model_content(self, digest: str) -> bytes | None:
        """The canonical content of a model recorded in the store (None: not recorded)."""
        with translated("reading a model recorded"):
            return self.recorder.model_content(digest)

    def count(self) -> int:
        with translated("counting the events"):
            return self.recorder.count()

    def close(self) -> None:
        with translated(f"closing the store {store_name(self.settings)}"):
            self.app.close()


__all__ = ["AggregateNotFoundError", "DealEngineApplication", "Store", "store_env"]
