"""A real uvicorn server on 127.0.0.1 for tests and benchmarks: started in a thread on a free
port, stopped (bounded) afterwards."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from dealengine import Engine
from dealengine.http.app import Limits, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(engine: Engine, limits: Limits | None = None) -> Iterator[str]:
    """The base URL of a server on `engine` while the block runs."""
    with serving_app(create_app(engine, limits)) as url:
        yield url


@contextmanager
def serving_app(app: Any) -> Iterator[str]:
    """The base URL of a server of the ASGI `app` while the block runs."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None,
        access_log=False, lifespan="off", timeout_graceful_shutdown=2,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
