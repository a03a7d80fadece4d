"""Signals turned into a request to stop, acted on between two units of work (a worker's
round, a catch-up's batch), so that what was done is kept."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from dealengine.logs import get_logger

log = get_logger("dealengine.views")


@contextmanager
def stop_on_signals(
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[threading.Event]:
    """An event set by any of `signals` (the work in hand finishes first); their handlers
    are put back afterwards."""
    stopping = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("worker.stopping", signal=signal.Signals(signum).name)
        stopping.set()

    previous = {s: signal.signal(s, handle) for s in signals}
    try:
        yield stopping
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def interrupts_between_batches() -> Iterator[Callable[[], bool]]:
    """Ctrl-C (SIGINT) during a run, in the main thread, where Python's own handler is in
    place: noted (the function given says whether it came) and raised as KeyboardInterrupt
    when the run is done, so the run stops after the batch it is folding and writes what it
    folded. Anywhere else nothing changes."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield lambda: False
        return
    with stop_on_signals((signal.SIGINT,)) as interrupted:
        yield interrupted.is_set
    if interrupted.is_set():
        raise KeyboardInterrupt
