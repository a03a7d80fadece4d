"""Events that evolve: a store written by the release before event versions
(tests/data/release_store, made by its make_store.py with that release's code) is read,
replayed, verified and reported the same by this code, also after an interaction evolves: a
field renamed and a new required field given its value for old events by an upcaster.

Given the old store / when this code reads it / then the same views, by hand:
- L-1 reached every funnel step (won with D-1); L-2 reached `opportunity` (D-2 open); L-3
  and L-4 only `awareness` (L-4's demo request was voided).
- new_business: D-1 won at 11000; D-2 open in discovery at 6000 (lost, reopened to
  proposal, moved back to discovery), weighted 6000 * 0.20 = 1200.
- renewals: D-3 open in renewal_due at 2000 (its change to 20000 voided), weighted
  2000 * 0.70 = 1400.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from dealengine import Engine, Interactions, Settings
from dealengine.domain.catalogue import BUILT_IN, load_interactions
from dealengine.domain.chain import topic_of
from dealengine.domain.definitions import FunnelDefinition
from dealengine.domain.events import LeadEvent, Text, WebinarAttended
from dealengine.domain.rates import RATE_EVENTS

RELEASE_STORE = Path(__file__).parent / "data" / "release_store" / "store.db"
NOW = datetime(2026, 2, 2, tzinfo=UTC)
FUNNEL_BY_HAND = [
    ("awareness", 4),
    ("interest", 2),
    ("consideration", 2),
    ("intent", 2),
    ("qualified", 2),
    ("opportunity", 2),
    ("won", 1),
]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A copy of the release's store (reading it writes the views beside it)."""
    copy = tmp_path / "store.db"
    shutil.copyfile(RELEASE_STORE, copy)
    return copy


def open_engine(path: Path, **kwargs: Any) -> Engine:
    return Engine(Settings(db=str(path), database_url=None), clock=lambda: NOW, **kwargs)


def stored_rows(path: Path) -> list[tuple[str, int, str, bytes]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events "
            "ORDER BY originator_id, originator_version"
        ).fetchall()
    return [(str(a), int(b), str(c), bytes(d)) for a, b, c, d in rows]


def check_views_by_hand(engine: Engine) -> None:
    funnel, pipeline = engine.views()
    assert [(s.name, s.leads) for s in funnel.steps] == FUNNEL_BY_HAND
    stages = {s.name: s for s in pipeline.stages}
    assert [stages[n].open_deals for n in ("prospecting", "discovery", "proposal")] == [0, 1, 0]
    assert stages["discovery"].amount == Decimal("6000")
    assert stages["discovery"].weighted_amount == Decimal("1200.00")
    assert pipeline.average_deal_size == Decimal("11000")  # D-1, the one won
    assert pipeline.win_rate_by_amount == 1.0  # D-2's loss was reopened
    renewals = engine.pipeline(pipeline_name="renewals")
    due = next(s for s in renewals.stages if s.name == "renewal_due")
    assert (due.open_deals, due.amount, due.weighted_amount) == (1, Decimal(2000), Decimal(1400))
    live, _lag = engine.live_funnel()
    assert [(s.name, s.leads) for s in live.steps] == FUNNEL_BY_HAND


def test_the_release_store_covers_every_built_in_event_type() -> None:
    from dealengine.domain.events import LeadForgotten, LeadIdentified

    topics = {topic for _, _, topic, _ in stored_rows(RELEASE_STORE)}
    added_since = {topic_of(LeadIdentified), topic_of(LeadForgotten)}  # personal data (20.2)
    rates = {topic_of(cls) for cls in RATE_EVENTS}  # exchange rates came after that release
    assert topics == set(BUILT_IN.by_topic) - added_since - rates  # the rest, both voids


def test_the_release_store_reads_replays_verifies_and_reports_the_same(store: Path) -> None:
    before = stored_rows(store)
    with open_engine(store) as engine:
        assert engine.verify().ok
        sealed = engine.seal()
        assert sealed.ok and sealed.seals == 1
        assert engine.deal("D-1").stage == "closed_won"
        deal = engine.deal("D-2")
        assert (deal.stage, deal.amount, deal.closed_from) == (
            "discovery",
            Decimal(6000),
            "proposal",
        )
        assert engine.lead("L-3").status == "disqualified"
        assert [e.event_type for e in engine.history("L-4")] == [
            "ad_viewed", "demo_requested", "event_voided",
        ]  # fmt: skip
        check_views_by_hand(engine)
    assert stored_rows(store) == before  # reading wrote nothing into the store


class WebinarAttendedV2(LeadEvent):
    """webinar_attended as it might evolve: `webinar` renamed `session`, and a required
    `format` that events stored before it had no word for (they were all live)."""

    event_type: ClassVar[str] = "webinar_attended"
    class_version: ClassVar[int] = 2
    session: Text
    format: Text

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["session"] = state.pop("webinar")
        state["format"] = "live"


# The same stored type, evolved: what editing WebinarAttended in place would make.
WebinarAttendedV2.__module__ = WebinarAttended.__module__
WebinarAttendedV2.__qualname__ = WebinarAttended.__qualname__


def evolved() -> Interactions:
    return Interactions(
        [*(m for n, m in BUILT_IN.types.items() if n != "webinar_attended"), WebinarAttendedV2]
    )


def test_an_evolved_built_in_reads_the_old_events_upcast(store: Path) -> None:
    assert topic_of(WebinarAttendedV2) == topic_of(WebinarAttended)
    before = stored_rows(store)
    funnel = FunnelDefinition.model_validate(
        {"steps": [{"name": "webinar", "events": ["webinar_attended"]}],
         "breakdowns": ["session", "format"]},
    )  # fmt: skip
    with open_engine(store, interactions=evolved()) as engine:
        webinar = next(e for e in engine.history("L-1") if e.event_type == "webinar_attended")
        assert isinstance(webinar, WebinarAttendedV2)
        assert (webinar.session, webinar.format) == ("pipeline-101", "live")
        assert engine.verify().ok  # the hash is over the bytes stored, not the upcast model
        check_views_by_hand(engine)
        # the folds read the stored JSON upcast too: the new names break the funnel down
        view = engine.funnel(breakdowns=["session", "format"])
        assert view.breakdowns["session"]["pipeline-101"].steps[0].leads == 1
        assert view.breakdowns["format"]["live"].steps[0].leads == 1
        # a new event is stored at version 2, with its marker, and chains on the old ones
        engine.record(
            "webinar_attended", "L-2", "2026-01-20T10:00:00Z", session="closing-201",
            format="recorded",
        )  # fmt: skip
        assert engine.verify().ok
    rows = stored_rows(store)
    assert rows[: len(before)] != [] and set(before) <= set(rows)  # nothing stored was changed
    new = next(r for r in rows if r[0] == "lead:L-2" and r[2] == topic_of(WebinarAttended))
    data = orjson.loads(new[3])
    assert data["class_version"] == 2 and data["session"] == "closing-201"
    with open_engine(store, interactions=evolved(), funnel=funnel) as engine:
        view = engine.funnel()
        assert view.steps[0].leads == 2
        assert view.breakdowns["format"]["recorded"].steps[0].leads == 1


def test_the_code_of_today_reads_an_old_stored_event_by_its_version(store: Path) -> None:
    """An event at version 1 is stored without a marker, as before versions existed: the
    release's bytes and today's bytes for the same event are alike."""
    for _, _, _, state in stored_rows(store):
        assert b"class_version" not in state


def test_a_version_without_its_upcaster_is_refused() -> None:
    class Skipped(LeadEvent):
        event_type: ClassVar[str] = "skipped"
        class_version: ClassVar[int] = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None: ...

    with pytest.raises(ValueError, match="skipped is at version 3 but has no upcast_v2_v3"):
        Interactions([Skipped])


DECLARED_V1 = """
[[interactions]]
name = "trial_started"
on = "lead"
fields = { plan = "text", seats = "integer" }
"""
DECLARED_V2 = """
[[interactions]]
name = "trial_started"
on = "lead"
version = 2
fields = { tier = { type = "text", required = true }, seats = "integer", trial_days = { type = "integer", required = true } }

[interactions.upcasts.v1_v2]
rename = { plan = "tier" }
defaults = { trial_days = 14 }
"""


@pytest.fixture
def declared(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    v1, v2 = tmp_path / "v1.toml", tmp_path / "v2.toml"
    v1.write_text(DECLARED_V1)
    v2.write_text(DECLARED_V2)
    yield v1, v2


def test_a_declared_interaction_at_version_2_reads_its_version_1_events(
    store: Path, declared: tuple[Path, Path]
) -> None:
    v1, v2 = declared
    with open_engine(store, interactions=load_interactions(v1)) as engine:
        engine.record("trial_started", "L-3", "2026-01-07T10:00:00Z", plan="pro", seats=3)
        engine.record("trial_started", "L-5", "2026-01-08T10:00:00Z", plan="team")
    after_v1 = stored_rows(store)
    interactions = load_interactions(v2)
    funnel = FunnelDefinition.model_validate(
        {"steps": [{"name": "aware", "events": ["ad_viewed", "site_visited"]},
                   {"name": "trial", "events": ["trial_started"]}],
         "breakdowns": ["tier", "trial_days"]},
        context=interactions.context,
    )  # fmt: skip
    with open_engine(store, interactions=interactions, funnel=funnel) as engine:
        trial = engine.history("L-3")[-1]
        assert trial.event_type == "trial_started"
        assert trial.payload() == {"tier": "pro", "seats": 3, "trial_days": 14}
        engine.record("trial_started", "L-6", "2026-01-09T10:00:00Z", tier="pro", trial_days=30)
        with pytest.raises(Exception, match="field 'trial_days': missing"):
            engine.record("trial_started", "L-7", "2026-01-09T10:00:00Z", tier="pro")
        assert engine.verify().ok
        view = engine.funnel()
        # aware: L-1..L-4 by their touches, L-5 and L-6 passed it on the way to `trial`
        assert [(s.name, s.leads) for s in view.steps] == [("aware", 6), ("trial", 3)]
        tiers = view.breakdowns["tier"]
        # L-3's tier is its upcast plan, L-6's recorded: both "pro"; L-1, L-2, L-4 have none
        assert {k: v.steps[1].leads for k, v in tiers.items()} == {
            "pro": 2, "team": 1, "unknown": 0,
        }  # fmt: skip
        days = view.breakdowns["trial_days"]  # L-3 and L-5 from the upcaster's default
        assert {k: v.steps[1].leads for k, v in days.items()} == {"14": 2, "30": 1, "unknown": 0}
    assert set(after_v1) <= set(stored_rows(store))  # the version 1 bytes are as they were
