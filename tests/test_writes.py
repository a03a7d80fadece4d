"""One retry rule for every write (service/writes.py): decided again under the write lock
each time another writer stored a version first, a few times, the lock free in between; the
exchange rates' writes by it too."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dealengine import ConcurrencyConflict, Engine, Settings, VersionConflict
from dealengine.service.writes import MAX_ATTEMPTS, retried


def test_a_write_is_decided_again_after_each_conflict_under_the_lock() -> None:
    lock = threading.Lock()
    tries: list[bool] = []

    def write() -> str:
        tries.append(lock.locked())
        if len(tries) < 3:
            raise VersionConflict("appending 1 event to lead:L-1", "version 2 taken")
        return "stored"

    assert retried(lock, write, lambda: ["lead:L-1"]) == "stored"
    assert tries == [True, True, True] and not lock.locked()


def test_a_write_that_keeps_conflicting_names_its_streams() -> None:
    tries: list[int] = []

    def write() -> None:
        tries.append(1)
        raise VersionConflict("appending 2 events", "version taken")

    with pytest.raises(ConcurrencyConflict) as raised:
        retried(threading.Lock(), write, lambda: ["lead:L-2", "deal:D-1"])
    assert len(tries) == MAX_ATTEMPTS == raised.value.attempts
    assert str(raised.value) == (
        f"concurrent writers on deal:D-1, lead:L-2: still conflicting after {MAX_ATTEMPTS} attempts"
    )


def test_rates_recorded_by_two_engines_at_once_are_all_kept(tmp_path: Path) -> None:
    """Given two engines on one store (two app instances), each recording 15 rates of the
    same pair at once: the pair's stream holds all 30, one version each."""
    settings = Settings(db=str(tmp_path / "s.db"), database_url=None)
    with Engine(settings):
        pass  # the store's tables, made once

    def record(writer: int) -> None:
        with Engine(settings) as engine:
            for day in range(1, 16):
                rate = f"1.{writer}{day:02d}"
                engine.set_rate("EUR", "USD", rate, f"2026-{writer + 1:02d}-{day:02d}")

    writers = [threading.Thread(target=record, args=(w,)) for w in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    with Engine(settings) as engine:
        known = engine.rates()
        assert len(known) == 30
        assert {str(k.rate) for k in known} == {
            f"1.{w}{day:02d}" for w in range(2) for day in range(1, 16)
        }
