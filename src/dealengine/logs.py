"""structlog configuration: readable lines for people, JSON lines for machines (to stderr)."""

from __future__ import annotations

import logging
import sys

import structlog


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


def quiet_unless_configured() -> None:
    """Embedded, dealengine logs warnings and above only; a host's configure() wins."""
    if not structlog.is_configured():
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
