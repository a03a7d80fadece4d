"""Logging: dealengine's loggers, and the CLI's structlog configuration (readable lines for
people, JSON lines for machines, to stderr).

The library configures nothing: its loggers log through structlog as the host configured it,
and until something configures structlog (a host, or `configure` here, the CLI's), they print
only warnings and errors, to stderr, instead of structlog's unconfigured default (every level,
to stdout).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


class _Logger:
    """structlog's logger `name` once structlog is configured; warnings and errors before."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._configured = structlog.get_logger(name)

    def __getattr__(self, method: str) -> Any:
        if structlog.is_configured():
            return getattr(self._configured, method)
        quiet = structlog.wrap_logger(
            structlog.PrintLogger(sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_name=self.name,
        )
        return getattr(quiet, method)


def get_logger(name: str) -> Any:
    """The logger the library's module `name` logs to (see the module's docstring)."""
    return _Logger(name)


def configure(log_format: str = "console", level: str = "warning") -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),  # stderr as it is now
        cache_logger_on_first_use=False,
    )
