"""The recorders, on SQLite and PostgreSQL: the library's contract, then our own reads.

The library's part: eventsourcing ships abstract test cases, its authors' definition of a
correct recorder; they run here against the recorders the store and the views really use
(SQLite/PostgresStreamingRecorder, made by `Store`; SQLite/PostgresViewRecorder, made as
the engine makes them), each test on a fresh SQLite file or a fresh PostgreSQL schema.
Not run: AggregateRecorderTestCase, whose test expects insert_events to return None (an
application recorder returns the new positions), and the library's tests of its own
datastores, pools and factories, which we do not subclass.

Our part: each read the recorders add (stream, stream_rows, by_stream, select_streams,
voided_ids, count), the store's position, and the views' tables (write, counter_rows,
activate, active, counters, generations, drop), checked against expectations written out by hand:
order, bounds, inclusivity, partitions, atomic batches, empty stores.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    StoredEvent,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.tests import (
    persistence as library,
)  # a module: its abstract cases stay uncollected
from eventsourcing.utils import Environment

from dealengine import Settings, VersionConflict
from dealengine.domain.corrections import decide_void
from dealengine.projections.funnel import in_partition
from dealengine.store.application import Store, store_env, views_env
from dealengine.store.recorders import PostgresStreamingRecorder, SQLiteStreamingRecorder
from dealengine.views.tables import VIEWS, PostgresViewRecorder, SQLiteViewRecorder
from tests.conftest import PG_URL, need_postgres
from tests.rulebook import EVOLVE, NOW, PIPELINES, history, opened

# --- where each library test case runs: a fresh SQLite file, or a fresh PostgreSQL schema ---


class OnSQLite:
    """Each test gets a new directory for its store file; every store made is closed after."""

    def setUp(self) -> None:
        self.directory = tempfile.TemporaryDirectory()
        self.closers: list[Any] = []
        self.threads = set(threading.enumerate())

    def tearDown(self) -> None:
        _join_new_threads(self.threads)
        for closer in reversed(self.closers):
            closer.close()
        self.directory.cleanup()

    def settings(self) -> Settings:
        return Settings(db=str(Path(self.directory.name) / "store.db"), database_url=None)


class OnPostgres:
    """Each test gets a new schema, dropped after its stores are closed (skipped or failed,
    as the rest of the suite, when no server answers: tests/conftest.py's need_postgres)."""

    def setUp(self) -> None:
        need_postgres()
        self.schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.schema}")
        self.closers: list[Any] = []
        self.threads = set(threading.enumerate())

    def tearDown(self) -> None:
        _join_new_threads(self.threads)
        for closer in reversed(self.closers):
            closer.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {self.schema} CASCADE")

    def settings(self) -> Settings:
        sep = "&" if "?" in PG_URL else "?"
        return Settings(database_url=f"{PG_URL}{sep}schema={self.schema}")


def _join_new_threads(before: set[threading.Thread]) -> None:
    """Wait for the threads a test started: the library's concurrency tests stop their
    readers without joining them, and closing a SQLite connection under a running query
    crashes the process."""
    for thread in set(threading.enumerate()) - before:
        if not thread.daemon:  # a pool's workers are daemons, alive until their pool closes
            thread.join(timeout=10)


class StoreRecorder:
    """create_recorder(): the application recorder of a new `Store`, as the engine opens it."""

    closers: list[Any]

    def settings(self) -> Settings:
        raise NotImplementedError

    def new_originator_id(self) -> str:
        return f"deal:{uuid.uuid4()}"  # the store's ids are text (ORIGINATOR_ID_TYPE=text)

    def create_recorder(self) -> Any:
        store = Store(self.settings())
        self.closers.append(store)
        return store.recorder


class ViewRecorder:
    """create_recorder(): the views' tracking recorder, made as Engine.view makes it."""

    closers: list[Any]

    def settings(self) -> Settings:
        raise NotImplementedError

    def create_recorder(self) -> TrackingRecorder:
        recorder, factory = open_view_recorder(self.settings())
        self.closers.append(factory)
        return recorder


def open_view_recorder(settings: Settings) -> tuple[Any, InfrastructureFactory[Any]]:
    """The views' recorder for these settings, of the class and tables Engine.view makes, and
    its factory (to close): on PostgreSQL with a pool of its own, where an engine's views
    share the store's."""
    env = Environment(VIEWS, views_env(settings, store_env(settings)))
    factory = InfrastructureFactory.construct(env)
    recorder_class = PostgresViewRecorder if settings.database_url else SQLiteViewRecorder
    recorder = factory.tracking_recorder(recorder_class)
    assert isinstance(recorder, recorder_class)
    return recorder, factory


class TestSQLiteStreamingRecorderContract(
    OnSQLite, StoreRecorder, library.ApplicationRecorderTestCase[SQLiteStreamingRecorder]
):
    def test_the_store_uses_this_recorder(self) -> None:
        assert type(self.create_recorder()) is SQLiteStreamingRecorder


class TestPostgresStreamingRecorderContract(
    OnPostgres, StoreRecorder, library.ApplicationRecorderTestCase[PostgresStreamingRecorder]
):
    def test_the_store_uses_this_recorder(self) -> None:
        assert type(self.create_recorder()) is PostgresStreamingRecorder

    def test_insert_subscribe(self) -> None:
        # `dealengine project --follow` listens: our batch insert must still NOTIFY
        self.optional_test_insert_subscribe()


class TestSQLiteNonInterleavingPositions(
    OnSQLite, StoreRecorder, library.NonInterleavingNotificationIDsBaseCase
):
    pass


class TestPostgresNonInterleavingPositions(
    OnPostgres, StoreRecorder, library.NonInterleavingNotificationIDsBaseCase
):
    pass


class TestSQLiteViewRecorderContract(OnSQLite, ViewRecorder, library.TrackingRecorderTestCase):
    pass


class TestPostgresViewRecorderContract(OnPostgres, ViewRecorder, library.TrackingRecorderTestCase):
    pass


# --- our own reads, on both stores (conftest's `settings`: a SQLite file or a PG schema) ----


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened_store = Store(settings)
    yield opened_store
    opened_store.close()


def event(stream: str, version: int) -> StoredEvent:
    return StoredEvent(stream, version, "topic", f"{stream} v{version}".encode())


def insert(store: Store, *events: tuple[str, int]) -> list[int]:
    """Store these (stream, version) events in one batch; their positions."""
    positions = store.recorder.insert_events([event(s, v) for s, v in events])
    assert positions is not None
    return list(positions)


def streamed(store: Store, **bounds: Any) -> list[tuple[int, str]]:
    rows = list(store.recorder.stream(**bounds))
    assert all(type(state) is bytes for *_, state in rows)
    return [(position, stream) for position, stream, _, _ in rows]


def test_an_empty_store_reads_as_empty(store: Store) -> None:
    recorder = store.recorder
    assert (recorder.count(), store.position()) == (0, 0)
    assert list(recorder.stream()) == []
    assert list(recorder.stream(part=(0, 2))) == []
    assert list(recorder.by_stream()) == []
    assert recorder.select_streams([]) == []
    assert recorder.select_streams(["deal:D-1"]) == []
    assert recorder.voided_ids() == set()
    assert recorder.voided_ids(stop=10) == set()


def test_a_batch_gets_consecutive_positions_in_its_own_order(store: Store) -> None:
    first = insert(store, ("deal:D-2", 1), ("lead:L-1", 1), ("deal:D-1", 1), ("deal:D-2", 2))
    second = insert(store, ("lead:L-1", 2), ("deal:A", 1))
    assert (first, second) == ([1, 2, 3, 4], [5, 6])
    assert streamed(store) == [
        (1, "deal:D-2"),
        (2, "lead:L-1"),
        (3, "deal:D-1"),
        (4, "deal:D-2"),
        (5, "lead:L-1"),
        (6, "deal:A"),
    ]
    rows = list(store.recorder.stream())
    assert rows[3] == (4, "deal:D-2", "topic", b"deal:D-2 v2")
    assert (store.recorder.count(), store.position()) == (6, 6)
    assert store.exists("lead:L-1") and not store.exists("lead:L-2")


def test_a_batch_with_a_taken_version_stores_nothing(store: Store) -> None:
    """The whole batch fails on one (stream, version) already stored, and the next batch's
    positions are still the ones it was stored at (PostgreSQL's sequence keeps the gap the
    failed batch left)."""
    insert(store, ("deal:D-1", 1))
    batch = [event("lead:L-1", 1), event("deal:D-1", 1), event("lead:L-2", 1)]
    with pytest.raises(IntegrityError):
        store.recorder.insert_events(batch)
    assert streamed(store) == [(1, "deal:D-1")]
    after = insert(store, ("lead:L-1", 1), ("lead:L-2", 1))
    assert after[1] == after[0] + 1
    assert streamed(store) == [(1, "deal:D-1"), (after[0], "lead:L-1"), (after[1], "lead:L-2")]


SIX = [
    ("lead:L-1", 1),
    ("lead:L-2", 1),
    ("deal:D-1", 1),
    ("lead:L-1", 2),
    ("deal:D-1", 2),
    ("lead:L-3", 1),
]


@pytest.mark.parametrize(
    ("bounds", "positions"),
    [
        ({}, [1, 2, 3, 4, 5, 6]),
        ({"gt": 0}, [1, 2, 3, 4, 5, 6]),
        ({"gt": 2}, [3, 4, 5, 6]),  # after 2: 2 itself is not read
        ({"gt": 2, "stop": 4}, [3, 4]),  # up to 4: 4 itself is read
        ({"stop": 1}, [1]),
        ({"stop": 0}, []),
        ({"gt": 4, "stop": 4}, []),
        ({"gt": 5, "stop": 3}, []),
        ({"gt": 6}, []),
        ({"gt": 3, "stop": 99}, [4, 5, 6]),
    ],
)
def test_stream_reads_after_gt_up_to_and_including_stop(
    store: Store, bounds: dict[str, int], positions: list[int]
) -> None:
    insert(store, *SIX)
    assert [p for p, _ in streamed(store, **bounds)] == positions


# Lead ids ending in characters whose code points are: '1' 49, '2' 50, 'a' 97, 'é' 233,
# '0' 48, '🙂' 128578 (outside the Basic Multilingual Plane).
PARTITIONED = [
    ("deal:D-1", 1),
    ("lead:L-1", 1),
    ("lead:L-2", 1),
    ("lead:L-a", 1),
    ("lead:L-é", 1),
    ("deal:D-é", 1),
    ("lead:L-10", 1),
    ("lead:L-🙂", 1),
    ("lead:L-1", 2),
]


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        # every deal's events, and the leads whose last code point is even / odd
        ((0, 2), ["deal:D-1", "lead:L-2", "deal:D-é", "lead:L-10", "lead:L-🙂"]),
        ((1, 2), ["deal:D-1", "lead:L-1", "lead:L-a", "lead:L-é", "deal:D-é", "lead:L-1"]),
        # modulo 3: 49, 97, 128578 -> 1; 50, 233 -> 2; 48 -> 0
        ((0, 3), ["deal:D-1", "deal:D-é", "lead:L-10"]),
        ((1, 3), ["deal:D-1", "lead:L-1", "lead:L-a", "deal:D-é", "lead:L-🙂", "lead:L-1"]),
        ((2, 3), ["deal:D-1", "lead:L-2", "lead:L-é", "deal:D-é"]),
        ((0, 1), [s for s, _ in PARTITIONED]),
    ],
)
def test_a_partition_holds_every_deal_and_its_share_of_the_leads(
    store: Store, part: tuple[int, int], expected: list[str]
) -> None:
    insert(store, *PARTITIONED)
    assert [s for _, s in streamed(store, part=part)] == expected
    # the SQL selects what the folds' own rule (projections.funnel.in_partition) keeps
    kept = [s for s, _ in PARTITIONED if s.startswith("deal:") or in_partition(s, part)]
    assert kept == expected


# deals ending in '1' 49, '2' 50, 'é' 233, among leads
DEALS = [
    ("deal:D-1", 1),
    ("lead:L-2", 1),
    ("deal:D-2", 1),
    ("deal:D-é", 1),
    ("lead:L-1", 1),
    ("deal:D-1", 2),
]


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({}, [(1, "deal:D-1"), (3, "deal:D-2"), (4, "deal:D-é"), (6, "deal:D-1")]),
        ({"part": (0, 2)}, [(3, "deal:D-2")]),
        ({"part": (1, 2)}, [(1, "deal:D-1"), (4, "deal:D-é"), (6, "deal:D-1")]),
        ({"gt": 1, "stop": 4}, [(3, "deal:D-2"), (4, "deal:D-é")]),
        ({"gt": 3, "part": (1, 2)}, [(4, "deal:D-é"), (6, "deal:D-1")]),
    ],
)
def test_the_deals_events_are_read_alone_and_by_partition(
    store: Store, bounds: dict[str, Any], expected: list[tuple[int, str]]
) -> None:
    insert(store, *DEALS)
    assert streamed(store, deals=True, **bounds) == expected
    part = bounds.get("part")  # the SQL keeps what the folds' own rule keeps
    assert all(part is None or in_partition(s, part) for _, s in expected)


def test_a_partition_keeps_the_bounds(store: Store) -> None:
    insert(store, *PARTITIONED)
    # positions 3..8: L-2, L-a, L-é, D-é, L-10, L-🙂; partition 0 of 2 of those
    assert streamed(store, gt=2, stop=8, part=(0, 2)) == [
        (3, "lead:L-2"),
        (6, "deal:D-é"),
        (7, "lead:L-10"),
        (8, "lead:L-🙂"),
    ]


def test_stream_reads_past_one_fetch_from_one_snapshot(store: Store) -> None:
    many = 5_003  # more than one fetch: the recorders read 5,000 rows at a time
    insert(store, *((f"lead:L-{n}", 1) for n in range(many)))
    reading = store.recorder.stream()
    first = next(reading)
    insert(store, ("lead:late", 1), ("lead:late", 2))  # recorded while the read is under way
    rest = list(reading)
    assert first[0] == 1
    assert [row[0] for row in rest] == list(range(2, many + 1))
    assert store.recorder.count() == many + 2


# Stream ids in code point order, written out by hand: '-' 45 < digits < uppercase < '_' 95
# < lowercase < 'É' 201; a locale's collation would mix cases and accents instead.
BY_STREAM = [
    ("deal:D-1", 1),
    ("deal:D-1", 2),
    ("deal:D-10", 1),
    ("deal:D-9", 1),
    ("deal:D_1", 1),
    ("deal:d-1", 1),
    ("deal:É-1", 1),
    ("lead:A", 1),
    ("lead:a", 1),
    ("lead:a", 2),
    ("lead:a", 3),
]


def test_by_stream_reads_every_event_by_stream_in_code_point_order_then_version(
    store: Store,
) -> None:
    scrambled = [BY_STREAM[i] for i in (10, 4, 1, 7, 0, 9, 3, 6, 2, 8, 5)]
    positions = dict(zip(scrambled, insert(store, *scrambled), strict=True))
    rows = list(store.recorder.by_stream())
    assert [(oid, version) for oid, version, *_ in rows] == BY_STREAM
    for oid, version, topic, state, position in rows:
        assert (topic, state) == ("topic", f"{oid} v{version}".encode())
        assert type(state) is bytes
        assert position == positions[oid, version]


def test_by_stream_reads_past_one_fetch(store: Store) -> None:
    many = 5_003
    insert(store, *((f"lead:L-{n:05d}", 1) for n in reversed(range(many))))
    ids = [oid for oid, *_ in store.recorder.by_stream()]
    assert ids == [f"lead:L-{n:05d}" for n in range(many)]


@pytest.mark.parametrize(
    ("locale", "plain"),
    [
        ("LC_COLLATE 'C' LC_CTYPE 'C'", True),  # sorted by the primary key's index as it is
        ("LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'", False),  # not C or POSIX by name
        # ICU's en-US is the default collation here, whatever LC_COLLATE says:
        ("LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LC_COLLATE 'C' LC_CTYPE 'C'", False),
    ],
)
def test_by_stream_reads_in_code_point_order_whatever_the_database_collation(
    locale: str, plain: bool
) -> None:
    """The database's collation is read from pg_database (PostgreSQL 16 has no lc_collate
    setting), with its locale provider: an ICU database that says LC_COLLATE 'C' sorts as
    ICU does ('deal:D_1' before 'deal:D-1'), so the read asks for the C collation itself."""
    need_postgres()
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 {locale}")
    url = f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    try:
        store = Store(Settings(database_url=url))
        try:
            insert(store, *(BY_STREAM[i] for i in (10, 4, 1, 7, 0, 9, 3, 6, 2, 8, 5)))
            assert [(oid, v) for oid, v, *_ in store.recorder.by_stream()] == BY_STREAM
            with psycopg.connect(url) as conn:
                assert PostgresStreamingRecorder.sorts_as_c(conn) is plain
        finally:
            store.close()
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_by_stream_leaves_a_sqlite_store_unmapped(tmp_path: Path) -> None:
    """The file is memory-mapped for the read only: after it, whole or abandoned, the
    connection reads it as before (no mapping)."""
    store = Store(Settings(db=str(tmp_path / "store.db"), database_url=None))
    try:
        insert(store, *BY_STREAM)
        assert len(list(store.recorder.by_stream())) == len(BY_STREAM)
        assert mapped(store) == 0
        reading = store.recorder.by_stream()
        next(reading)
        reading.close()
        assert mapped(store) == 0
    finally:
        store.close()


def mapped(store: Store) -> int:
    with store.recorder.datastore.transaction(commit=False) as c:
        c.execute("PRAGMA mmap_size")
        return int(c.fetchone()[0])


def test_select_streams_reads_the_streams_asked_for_each_in_version_order(store: Store) -> None:
    insert(store, ("deal:D-2", 2), ("deal:D-1", 1), ("lead:L-1", 1), ("deal:D-2", 1))
    insert(store, ("deal:D-1", 2), ("deal:D-2", 3))
    found = store.recorder.select_streams(["deal:D-2", "deal:D-1", "deal:D-404", "deal:D-2"])
    assert by_stream_and_version(found) == {
        "deal:D-1": [1, 2],
        "deal:D-2": [1, 2, 3],
    }
    assert found[0] == StoredEvent("deal:D-1", 1, "topic", b"deal:D-1 v1")


def test_select_streams_reads_more_streams_than_one_query_holds(store: Store) -> None:
    streams = [f"lead:L-{n}" for n in range(1_201)]  # more than the 500 ids a query takes
    insert(store, *((s, v) for v in (1, 2) for s in streams))
    found = store.recorder.select_streams(streams)
    assert by_stream_and_version(found) == {s: [1, 2] for s in streams}


def test_stream_rows_reads_the_streams_asked_for_up_to_stop_in_recorded_order(
    store: Store,
) -> None:
    """Positions written out by hand: 1-4 in the first batch, 5-6 in the second."""
    insert(store, ("deal:D-2", 2), ("deal:D-1", 1), ("lead:L-1", 1), ("deal:D-2", 1))
    insert(store, ("deal:D-1", 2), ("deal:D-2", 3))
    rows = store.stream_rows(["deal:D-2", "deal:D-1", "deal:D-404"], stop=5)
    assert [(position, stream) for position, stream, _, _ in rows] == [
        (1, "deal:D-2"),
        (2, "deal:D-1"),
        (4, "deal:D-2"),
        (5, "deal:D-1"),  # position 6 is past stop
    ]
    assert rows[0] == (1, "deal:D-2", "topic", b"deal:D-2 v2")
    assert all(type(state) is bytes for *_, state in rows)
    assert store.stream_rows(["lead:L-1"], stop=2) == []
    assert store.stream_rows([], stop=6) == []


def test_stream_rows_reads_more_streams_than_one_query_holds(store: Store) -> None:
    streams = [f"lead:L-{n}" for n in range(1_201)]  # more than the 500 ids a query takes
    positions = insert(store, *((s, v) for v in (1, 2) for s in streams))
    rows = store.stream_rows(streams[::-1], stop=positions[-2])
    assert [position for position, *_ in rows] == positions[:-1]


def by_stream_and_version(found: list[StoredEvent]) -> dict[str, list[int]]:
    """Each stream's versions, checking each stream's events come together, oldest first."""
    versions: dict[str, list[int]] = {}
    previous = None
    for stored in found:
        oid = str(stored.originator_id)
        assert oid == previous or oid not in versions, f"{oid}'s events are split"
        versions.setdefault(oid, []).append(stored.originator_version)
        previous = oid
        assert type(stored.state) is bytes
    assert all(v == sorted(v) for v in versions.values())
    return versions


def test_voided_ids_are_the_events_voided_up_to_and_including_stop(store: Store) -> None:
    lead = history("lead:L-1", ("site_visited", {"channel": "web"}), ("demo_requested", {}))
    deal = history("deal:D-1", opened(), "discovery_completed")
    store.append([*lead, *deal])  # positions 1..4
    first = void(lead, "v2")
    store.append([first])  # position 5
    store.append([void(deal, "v2")])  # position 6
    assert store.recorder.voided_ids() == {str(lead[1].id), str(deal[1].id)}
    assert store.recorder.voided_ids(stop=6) == {str(lead[1].id), str(deal[1].id)}
    assert store.recorder.voided_ids(stop=5) == {str(lead[1].id)}
    assert store.recorder.voided_ids(stop=4) == set()


def void(events: list[Any], version: str) -> Any:
    return decide_void(
        PIPELINES,
        EVOLVE,
        events[0].originator_id,
        events,
        version,
        reason="mistake",
        actor="maria",
        source="test",
        idempotency_key=None,
        now=NOW,
    )


def test_a_batch_notifies_the_postgres_followers(pg_schema_url: str) -> None:
    # `dealengine project --follow` waits on LISTEN: our batch insert must NOTIFY. Only
    # notifications from the one session the recorder writes through count.
    env = store_env(Settings(database_url=pg_schema_url))
    env |= {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"}
    factory = InfrastructureFactory.construct(Environment("DealEngine", env))
    try:
        recorder = factory.application_recorder()
        assert isinstance(recorder, PostgresStreamingRecorder)
        with recorder.datastore.get_connection() as conn:
            writer = conn.info.backend_pid
        with psycopg.connect(PG_URL, autocommit=True) as follower:
            follower.execute(f"LISTEN {recorder.channel_name}")
            recorder.insert_events([event("deal:D-1", 1)])
            senders = set()
            for note in follower.notifies(timeout=2):
                senders.add(note.pid)
                if note.pid == writer:
                    break
    finally:
        factory.close()
    assert writer in senders


# --- the views' tables, on both stores (views/tables.py) ------------------------------------


@pytest.fixture
def views(settings: Settings) -> Iterator[Any]:
    recorder, factory = open_view_recorder(settings)
    yield recorder
    factory.close()


def test_no_view_reads_as_empty(views: Any) -> None:
    assert views.active("funnel") is None
    assert views.counters("funnel") == (None, [])
    assert views.counter_rows("funnel#1", ["awareness"]) == {}
    assert list(views.generations("funnel")) == []


def test_a_batch_writes_counters_and_position_together(views: Any) -> None:
    views.write(
        "funnel#1",
        {"awareness": (2, None, None), "won": (1, "10.00", "1.00")},
        Tracking("funnel#1", 5),
        after=0,
    )
    views.write("funnel#1", {"awareness": (3, None, None)}, Tracking("funnel#1", 9), after=5)
    assert views.counter_rows("funnel#1", ["awareness", "won", "lost"]) == {
        "awareness": (3, None, None),  # a later batch replaces a counter
        "won": (1, "10.00", "1.00"),  # and leaves the others
    }
    assert views.max_tracking_id("funnel#1") == 9
    assert views.counter_rows("funnel#2", ["awareness"]) == {}  # another generation's rows


@pytest.mark.parametrize("position", [9, 4], ids=["the same position", "an earlier position"])
def test_a_batch_at_a_position_already_passed_stores_nothing(views: Any, position: int) -> None:
    views.write("funnel#1", {"awareness": (1, None, None)}, Tracking("funnel#1", 9), after=0)
    with pytest.raises(VersionConflict):  # eventsourcing's IntegrityError, as dealengine's
        views.write(
            "funnel#1",
            {"awareness": (5, None, None), "interest": (1, None, None)},
            Tracking("funnel#1", position),
            after=9,
        )
    assert views.counter_rows("funnel#1", ["awareness", "interest"]) == {
        "awareness": (1, None, None)
    }
    assert views.max_tracking_id("funnel#1") == 9


def test_totals_made_from_a_position_the_view_has_left_are_not_written(views: Any) -> None:
    """Two runs fold from position 0; the one that writes second, further on, would add its
    counts to the first's: refused, whatever its position."""
    views.write("funnel#1", {"awareness": (2, None, None)}, Tracking("funnel#1", 5), after=0)
    with pytest.raises(VersionConflict, match="view funnel#1 is at position 5, not 0"):
        views.write("funnel#1", {"awareness": (4, None, None)}, Tracking("funnel#1", 8), after=0)
    assert views.counter_rows("funnel#1", ["awareness"]) == {"awareness": (2, None, None)}
    assert views.max_tracking_id("funnel#1") == 5


def test_activating_a_generation_switches_the_projection_and_drops_the_one_it_replaces(
    views: Any,
) -> None:
    views.write("funnel#1", {"awareness": (1, None, None)}, Tracking("funnel#1", 3), after=0)
    assert views.activate("funnel", "funnel#1", "digest-1") is None  # nothing replaced
    views.write(
        "funnel#2",
        {"awareness": (2, None, None), "won": (1, "5", "5")},
        Tracking("funnel#2", 4),
        after=0,
    )
    assert sorted(views.generations("funnel")) == ["funnel#1", "funnel#2"]
    assert views.counters("funnel") == ("funnel#1", [("awareness", 1, None, None)])

    assert views.activate("funnel", "funnel#2", "digest-2") == "funnel#1"
    assert views.active("funnel") == ("funnel#2", "digest-2")
    view, rows = views.counters("funnel")
    assert (view, sorted(rows)) == (
        "funnel#2",
        [("awareness", 2, None, None), ("won", 1, "5", "5")],
    )
    assert views.counter_rows("funnel#1", ["awareness"]) == {}
    assert list(views.generations("funnel")) == ["funnel#2"]

    # activating the active generation again keeps its rows and takes the new digest
    assert views.activate("funnel", "funnel#2", "digest-3") == "funnel#2"
    assert views.active("funnel") == ("funnel#2", "digest-3")
    assert views.counter_rows("funnel#2", ["awareness"]) == {"awareness": (2, None, None)}


def test_each_projection_has_its_own_generations(views: Any) -> None:
    views.write("funnel#1", {"awareness": (1, None, None)}, Tracking("funnel#1", 1), after=0)
    views.activate("pipeline", "pipeline#1", "digest-p")  # a view with no rows yet
    assert views.counters("pipeline") == ("pipeline#1", [])
    assert list(views.generations("pipeline")) == []
    assert list(views.generations("funnel")) == ["funnel#1"]
    assert views.active("funnel") is None


def test_dropping_a_generation_removes_its_rows_only(views: Any) -> None:
    for n, view in enumerate(("funnel#1", "funnel#2")):
        views.write(view, {"awareness": (n + 1, None, None)}, Tracking(view, 1), after=0)
    views.drop("funnel#1")
    assert views.counter_rows("funnel#1", ["awareness"]) == {}
    assert views.counter_rows("funnel#2", ["awareness"]) == {"awareness": (2, None, None)}
    assert list(views.generations("funnel")) == ["funnel#2"]


def test_counters_are_read_for_more_keys_than_one_query_holds(views: Any) -> None:
    keys = [f"step-{n}" for n in range(1_201)]  # more than the 500 keys a query takes
    views.write(
        "funnel#1",
        {k: (n, None, None) for n, k in enumerate(keys)},
        Tracking("funnel#1", 1),
        after=0,
    )
    assert views.counter_rows("funnel#1", keys) == {k: (n, None, None) for n, k in enumerate(keys)}
