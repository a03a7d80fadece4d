"""A write that another writer may get to first: decided and appended under this process's
write lock and, when the append finds a version taken (VersionConflict: another process
stored a version of the same stream first), decided again on what is stored now, a few times,
with a short random wait between tries that leaves the lock free."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from dealengine.domain.errors import ConcurrencyConflict, VersionConflict

MAX_ATTEMPTS = 8
R = TypeVar("R")


def retried(
    lock: threading.Lock, write: Callable[[], R], streams: Callable[[], Iterable[str]]
) -> R:
    """`write()` under `lock`, again each time it raises VersionConflict; ConcurrencyConflict
    naming `streams()` (those it last read) when it still does after MAX_ATTEMPTS."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with lock:
            try:
                return write()
            except VersionConflict:
                pass
        time.sleep(random.uniform(0, 0.01 * attempt))  # the lock is free while waiting
    raise ConcurrencyConflict(sorted(streams()), MAX_ATTEMPTS)
