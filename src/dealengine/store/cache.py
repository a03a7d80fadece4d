"""The states of the streams one Engine has read or written, shared by the Engine's threads.

A batch decides on its own working copies (taken from here, or read from the store) and
publishes them only once they are stored and complete: no thread ever sees a placeholder or a
state of events that were not stored. A state here may be older than the store (another process
appended since): the version check when appending catches a decision made on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

S = TypeVar("S")


class StateCache(Generic[S]):
    """Stream id -> state, behind one lock; cleared when it grows past `limit` streams."""

    def __init__(self, limit: int) -> None:
        self._states: dict[str, S] = {}
        self._lock = threading.Lock()
        self.limit = limit

    def take(self, streams: Iterable[str]) -> dict[str, S]:
        """The cached states of `streams` (those it has), as a working copy of the mapping."""
        states = self._states
        with self._lock:
            return {s: states[s] for s in streams if s in states}

    def publish(self, states: Mapping[str, S]) -> None:
        """Keep these complete states (the states are immutable: shared, not copied)."""
        with self._lock:
            if len(self._states) > self.limit:
                self._states.clear()
            self._states.update(states)

    def discard(self, streams: Iterable[str]) -> None:
        with self._lock:
            for stream in streams:
                self._states.pop(stream, None)

    def __len__(self) -> int:
        return len(self._states)
