"""A seeded, realistic history of leads and deals, in the JSONL ingest format.

Shared by `dealengine demo`, the tests and the benchmarks: the same seed gives the same lines.
Leads arrive across channels of different quality, drop off step by step, and the deals of the
qualified ones advance, slip back, change amount, are won, lost, reopened or still open.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

START = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 20, tzinfo=UTC)
CHANNELS = {  # channel: (share of leads, lead quality)
    "paid_search": (0.25, 1.0),
    "organic_search": (0.20, 1.1),
    "social": (0.20, 0.7),
    "display": (0.15, 0.5),
    "email": (0.10, 1.2),
    "referral": (0.10, 1.6),
}
AD_CHANNELS = frozenset({"paid_search", "social", "display"})
OWNERS = ("ana", "bruno", "chen", "dara", "emeka", "farah")
LOST_REASONS = ("no budget", "chose competitor", "no decision", "timing")

Line = dict[str, Any]


class _Lead:
    """Writes one lead's (and its deal's) lines, each later in time than the one before."""

    def __init__(
        self, rng: random.Random, n: int, seed: int, lines: list[tuple[str, int, int, Line]]
    ) -> None:
        self.rng, self.n, self.seed, self.lines = rng, n, seed, lines
        self.lead_id, self.deal_id = f"L-{n:06d}", f"D-{n:06d}"
        self.at = START + timedelta(seconds=rng.uniform(0, (NOW - START).total_seconds() * 0.97))

    def emit(self, event_type: str, mean_days: float = 3.0, **fields: Any) -> bool:
        """Write the next line after a random wait; False when that wait runs past NOW."""
        self.at += timedelta(days=self.rng.expovariate(1 / mean_days), seconds=1)
        if self.at >= NOW:
            return False
        target = {"deal_id": self.deal_id} if _is_deal(event_type) else {"lead_id": self.lead_id}
        seq = len(self.lines)
        line = {
            "type": event_type,
            **target,
            "occurred_at": self.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "id": f"demo-{self.seed}-{seq}",
            **fields,
        }
        self.lines.append((line["occurred_at"], self.n, seq, line))
        return True


def _is_deal(event_type: str) -> bool:
    return event_type.startswith(("deal_", "discovery", "proposal", "negotiation"))


def generate(leads: int = 3000, seed: int = 7) -> list[Line]:
    """`leads` leads' interactions, in the order they occurred (a valid ingest order)."""
    rng = random.Random(seed)
    names, weights = list(CHANNELS), [share for share, _ in CHANNELS.values()]
    collected: list[tuple[str, int, int, Line]] = []
    for n in range(1, leads + 1):
        channel = rng.choices(names, weights)[0]
        _lead_history(_Lead(rng, n, seed, collected), channel, CHANNELS[channel][1])
    collected.sort(key=lambda item: item[:3])
    return [line for *_, line in collected]


def _lead_history(lead: _Lead, channel: str, quality: float) -> None:
    rng = lead.rng

    def chance(p: float) -> bool:
        return rng.random() < min(0.95, p * quality)

    if channel in AD_CHANNELS:
        lead.emit("ad_viewed", 0.5, channel=channel, campaign=f"{channel}-q{rng.randint(1, 4)}")
    else:
        lead.emit("site_visited", 0.5, channel=channel, page=rng.choice(["/", "/pricing", "/blog"]))
    if rng.random() < 0.3:
        lead.emit("site_visited", 2, channel=rng.choice(list(CHANNELS)), page="/pricing")
    interested = chance(0.45)
    if interested and not (
        lead.emit("newsletter_signed_up", 4)
        if rng.random() < 0.5
        else lead.emit("content_downloaded", 4, asset=rng.choice(["ebook", "report", "checklist"]))
    ):
        return
    if interested and chance(0.5) and not lead.emit("webinar_attended", 10, webinar="pipeline-101"):
        return
    if not chance(0.35 if interested else 0.06):
        return
    if not lead.emit("demo_requested", 7):
        return
    if not chance(0.65):
        if rng.random() < 0.4:
            lead.emit("lead_disqualified", 5, reason=rng.choice(["no budget", "student", "spam"]))
        return
    if not lead.emit("lead_qualified", 4, by=rng.choice(["sdr-1", "sdr-2", "sdr-3"])):
        return
    if rng.random() < 0.75:
        _deal_history(lead)


def _deal_history(lead: _Lead) -> None:
    rng = lead.rng
    amount = round(rng.lognormvariate(9.3, 0.6), -2) + 100
    expected = (lead.at + timedelta(days=rng.randint(30, 120))).date().isoformat()
    if not lead.emit(
        "deal_opened",
        2,
        lead_id=lead.lead_id,
        amount=f"{amount:.2f}",
        currency="USD",
        owner=rng.choice(OWNERS),
        expected_close_on=expected,
    ):
        return
    for step, p in (
        ("discovery_completed", 0.85),
        ("proposal_sent", 0.75),
        ("negotiation_started", 0.7),
    ):
        if rng.random() > p:
            lead.emit("deal_lost", 15, reason=rng.choice(LOST_REASONS))
            return
        fields = {"amount": f"{amount:.2f}"} if step == "proposal_sent" else {}
        if not lead.emit(step, 12, **fields):
            return
        if rng.random() < 0.1:
            amount = round(amount * rng.uniform(0.7, 1.3), -2) + 100
            if not lead.emit(
                "deal_amount_changed", 5, amount=f"{amount:.2f}", reason="scope changed"
            ):
                return
    if rng.random() < 0.08:
        if not lead.emit("deal_stage_changed", 6, to_stage="proposal", reason="pricing reopened"):
            return
        if not lead.emit("negotiation_started", 8):
            return
    won = rng.random() < 0.6
    closed = (
        lead.emit("deal_won", 14, amount=f"{amount:.2f}")
        if won
        else lead.emit("deal_lost", 14, reason=rng.choice(LOST_REASONS))
    )
    if closed and not won and rng.random() < 0.05:
        lead.emit("deal_reopened", 20, reason="budget approved")


def write_jsonl(path: Path, lines: list[Line]) -> None:
    with path.open("wb") as f:
        for line in lines:
            f.write(orjson.dumps(line) + b"\n")
