"""Write store.db: a small store recorded by the release before event versions (commit 63b8f03),
to show that later code reads, replays, verifies and reports it the same.

    PYTHONPATH=<that release>/src python tests/data/release_store/make_store.py

It records every built-in event type once or more, on four leads and three deals, and a void
on each kind of stream; the clock is fixed. Run it only to make the file again from that
release: the point of the file is that it was written by the old code
(tests/test_event_versions.py reads it).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from dealengine import Engine, Settings

HERE = Path(__file__).resolve().parent
RECORDED = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


def day(n: int, hour: int = 10) -> str:
    return f"2026-01-{n:02d}T{hour:02d}:00:00Z"


def record(store: Path) -> None:
    with Engine(Settings(db=str(store), database_url=None), clock=lambda: RECORDED) as engine:
        r = engine.record
        # L-1 walks the whole funnel and its deal D-1 the whole pipeline, won.
        r("ad_viewed", "L-1", day(5), channel="paid_search", campaign="spring")
        r("site_visited", "L-1", day(6), channel="paid_search", page="/pricing")
        r("newsletter_signed_up", "L-1", day(7))
        r("content_downloaded", "L-1", day(8), asset="buyers-guide")
        r("webinar_attended", "L-1", day(9), webinar="pipeline-101")
        r("demo_requested", "L-1", day(10))
        r("lead_qualified", "L-1", day(11), by="sdr-1")
        r("deal_opened", "D-1", day(12), lead_id="L-1", amount="10000", owner="ana")
        r("discovery_completed", "D-1", day(13))
        r("proposal_sent", "D-1", day(14), amount="12000")
        r("negotiation_started", "D-1", day(15))
        r("deal_amount_changed", "D-1", day(16), amount="11000", reason="discount")
        r("deal_won", "D-1", day(20), amount="11000")
        # L-2's deal D-2 is lost, reopened, moved back, and left open in discovery.
        r("site_visited", "L-2", day(5), channel="organic_search")
        r("lead_qualified", "L-2", day(6), by="sdr-2")
        r("deal_opened", "D-2", day(7), lead_id="L-2", amount="5000", owner="bo")
        r("proposal_sent", "D-2", day(8), amount="6000")
        r("deal_lost", "D-2", day(9), reason="budget")
        r("deal_reopened", "D-2", day(12), reason="budget found")
        r("deal_stage_changed", "D-2", day(13), to_stage="discovery", reason="new sponsor")
        # L-3 is disqualified; L-4's demo request was a mistake, voided.
        r("ad_viewed", "L-3", day(5), channel="social", campaign="spring")
        r("lead_disqualified", "L-3", day(6), reason="student")
        r("ad_viewed", "L-4", day(6), channel="social", campaign="autumn")
        mistake = r("demo_requested", "L-4", day(7)).events[0]
        engine.void("L-4", str(mistake.id), reason="clicked by a bot")
        # D-3, a renewal without a lead, open in its first stage; a mistyped amount voided.
        r("deal_opened", "D-3", day(14), amount="2000", owner="ana", pipeline="renewals")
        typo = r("deal_amount_changed", "D-3", day(15), amount="20000", reason="new seats")
        engine.void("D-3", str(typo.events[0].id), reason="a typo: one zero too many")


if __name__ == "__main__":
    target = HERE / "store.db"
    if target.exists():
        sys.exit(f"{target} exists: remove it first")
    record(target)
    print(f"wrote {target}")
