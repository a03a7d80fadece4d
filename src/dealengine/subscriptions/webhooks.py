"""Signed webhooks: each `[[webhooks]]` of webhooks.toml is a durable subscriber that POSTs
every notice it wants to its URL, as Stripe and GitHub do.

The body is the notice's JSON; `Dealengine-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
"t.body")>` and `Dealengine-Event-Id` (the notice id: the receiver dedupes by it). A timeout,
a connection error or a 5xx is retried with exponential backoff for `retry_for` seconds, then
the webhook is parked; another 4xx parks it at once. Every attempt goes to the delivery log;
the successful one in the transaction that moves the webhook's position, so a crash never loses
or reorders a delivery (it may repeat one: at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from pydantic import Field, ValidationInfo, field_validator

from dealengine.domain.definitions import Definition, definitions_dir, event_types, load
from dealengine.domain.errors import DealEngineError, WebhookExists
from dealengine.subscriptions.dispatch import GiveUp, Retry, Subscriber, Subscriptions
from dealengine.subscriptions.notices import DERIVED, Notice
from dealengine.subscriptions.tables import SubscriptionTables

log = structlog.get_logger("dealengine.webhooks")

SIGNATURE = "Dealengine-Signature"
EVENT_ID = "Dealengine-Event-Id"
USER_AGENT = "dealengine-webhooks/1"


class Webhook(Definition):
    url: str
    events: list[str] = Field(min_length=1)
    secret: str = Field(min_length=16, repr=False)
    name: str | None = None
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    read_timeout: float = Field(default=10.0, gt=0, le=300)
    retry_for: float = Field(default=3600.0, gt=0)
    """Seconds a failing delivery is retried for before the webhook is parked."""
    first_retry: float = Field(default=1.0, gt=0)
    longest_retry: float = Field(default=300.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_only(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str], info: ValidationInfo) -> list[str]:
        types = event_types(info)  # the model's interactions
        for event in events:
            kind = event.partition(":")[0]
            if kind not in types and kind not in DERIVED:
                known = ", ".join([*DERIVED, *sorted(types)])
                raise ValueError(f"unknown event {event!r} (known: {known})")
        return events

    @property
    def subscriber(self) -> str:
        """The webhook's subscriber name: `webhook:` and its name, or its URL's host and path."""
        if self.name:
            return f"webhook:{self.name}"
        parts = urlsplit(self.url)
        return f"webhook:{parts.netloc}{parts.path}"


class Webhooks(Definition):
    webhooks: list[Webhook] = Field(default_factory=list)


def load_webhooks(path: Path | None = None, context: dict[str, Any] | None = None) -> Webhooks:
    """The webhooks of `path` (default: webhooks.toml beside funnel.toml, if there is one);
    `context`: the model's interactions (`Interactions.context`), which they may name."""
    path = path or definitions_dir() / "webhooks.toml"
    if not path.is_file():
        return Webhooks()
    return load(Webhooks, path, context)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None
) -> bool:
    """What a receiver does: the signature is ours and fresh (within `tolerance` seconds)."""
    fields = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


class DeliveryFailed(Exception):
    """A timeout, a connection error or a 5xx: retried."""


class Refused(GiveUp):
    """The receiver answered 4xx: parked at once (a retry would be refused the same way)."""


Post = Callable[[Webhook, bytes, dict[str, str]], int]


class Sender:
    """POSTs to one webhook's URL over a kept-alive connection (opened again when the receiver
    closed it). Connect and read time-outs apply."""

    def __init__(self) -> None:
        self.conn: http.client.HTTPConnection | None = None

    def __call__(self, hook: Webhook, body: bytes, headers: dict[str, str]) -> int:
        parts = urlsplit(hook.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reused = self.conn is not None
        conn = self.conn or self._open(hook)
        try:
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read(65536)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            if not reused:
                raise
            return self(hook, body, headers)  # the receiver closed an idle connection: once more
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        else:
            self.conn = conn
        return response.status

    @staticmethod
    def _open(hook: Webhook) -> http.client.HTTPConnection:
        parts = urlsplit(hook.url)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = connection_class(parts.netloc, timeout=hook.connect_timeout)
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(hook.read_timeout)
        return conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Delivery:
    """The handler of one webhook's subscriber."""

    def __init__(self, hook: Webhook, tables: SubscriptionTables, send: Post | None = None) -> None:
        self.hook = hook
        self.tables = tables
        self.send = send or Sender()
        self.attempts: dict[str, int] = {}

    def __call__(self, notice: Notice) -> Callable[[Any], None]:
        hook, body = self.hook, notice.json_bytes()
        attempt = self.attempts[notice.id] = self.attempts.get(notice.id, 0) + 1
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_ID: notice.id,
            SIGNATURE: sign(hook.secret, body, int(time.time())),
        }
        status: int | None = None
        try:
            status = self.send(hook, body, headers)
        except (OSError, http.client.HTTPException) as e:
            error = f"{type(e).__name__}: {e}"
            self._log_failure(notice, attempt, None, error)
            raise DeliveryFailed(error) from e
        if status >= 500 or status in (408, 429):
            self._log_failure(notice, attempt, status, f"HTTP {status}")
            raise DeliveryFailed(f"HTTP {status} from {hook.url}")
        if status >= 300:
            self._log_failure(notice, attempt, status, f"HTTP {status}")
            raise Refused(f"HTTP {status} from {hook.url}")
        self.attempts.pop(notice.id, None)

        def log_success(cursor: Any) -> None:
            self.tables.log_delivery(
                cursor, hook.subscriber, notice.id, notice.position, attempt, hook.url, status, None
            )

        return log_success

    def _log_failure(self, notice: Notice, attempt: int, status: int | None, error: str) -> None:
        log.warning(
            "webhook.failed", webhook=self.hook.subscriber, notice=notice.id, attempt=attempt,
            status=status, error=error,
        )  # fmt: skip
        with self.tables.transaction(commit=True) as c:
            self.tables.log_delivery(
                c, self.hook.subscriber, notice.id, notice.position, attempt, self.hook.url,
                status, error,
            )  # fmt: skip


def register_webhooks(
    subscriptions: Subscriptions, hooks: Sequence[Webhook], *, run: bool, send: Post | None = None
) -> list[str]:
    """Each webhook as a subscriber from the start of the store; their names."""
    names = []
    for hook in hooks:
        subscriptions.subscribe(
            hook.subscriber,
            Delivery(hook, subscriptions.tables, send),
            types=hook.events,
            retry=Retry(hook.first_retry, hook.longest_retry, hook.retry_for),
            run=run,
        )
        names.append(hook.subscriber)
    return names


# --- webhooks added through the API (kept in the store beside the subscriptions) ---------------


def all_webhooks(subscriptions: Subscriptions) -> list[Webhook]:
    """The webhooks of webhooks.toml, then those added through the API."""
    subscriptions.ensure_tables()
    context = subscriptions.store.interactions.context  # the types they may name
    stored = [
        Webhook.model_validate_json(d, context=context) for d in subscriptions.tables.webhooks()
    ]
    return [*subscriptions.webhooks, *stored]


def add_webhook(subscriptions: Subscriptions, hook: Webhook) -> Webhook:
    """Keep a webhook made through the API; workers start delivering within seconds."""
    if not hook.name:
        raise DealEngineError("a webhook added through the API needs a name")
    if any(h.subscriber == hook.subscriber for h in all_webhooks(subscriptions)):
        raise WebhookExists(hook.name)
    if not subscriptions.tables.add_webhook(hook.name, hook.model_dump_json()):
        raise WebhookExists(hook.name)
    return hook


def remove_webhook(subscriptions: Subscriptions, name: str) -> None:
    """Forget a webhook added through the API (its position and delivery log stay)."""
    subscriptions.ensure_tables()
    if not subscriptions.tables.remove_webhook(name):
        in_file = any(h.name == name for h in subscriptions.webhooks)
        raise DealEngineError(
            f"webhook {name!r} is in webhooks.toml: remove it there"
            if in_file
            else f"no webhook {name!r} added through the API"
        )


def sync_webhooks(subscriptions: Subscriptions, send: Post | None = None) -> list[str]:
    """Register every webhook as it is defined now (a changed one afresh); their names."""
    names = []
    for hook in all_webhooks(subscriptions):
        current = subscriptions.subscribers.get(hook.subscriber)
        handler = current.handler if current else None
        if not (isinstance(handler, Delivery) and handler.hook == hook):
            subscriptions.subscribers[hook.subscriber] = Subscriber(
                hook.subscriber,
                Delivery(hook, subscriptions.tables, send),
                frozenset(hook.events),
                retry=Retry(hook.first_retry, hook.longest_retry, hook.retry_for),
            )
            subscriptions.tables.register(hook.subscriber, 0)
        names.append(hook.subscriber)
    return names
