"""The HTTP API: one shared Engine, its synchronous calls run in the threadpool; a request's
body is read whole (bounded in size and time) before the store is touched, so a slow client
never holds the store's lock.

Every request needs `Authorization: Bearer <key>` (dealengine.service.keys): 401 without a
valid key, 403 outside its scope. Requests and refusals are logged with structlog (the key's
id, never the key). Errors are `application/problem+json` (dealengine.http.problems).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
import structlog
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse

from dealengine.domain.catalogue import Interactions
from dealengine.domain.deal import Deal
from dealengine.domain.errors import DealEngineError, UnknownAggregate
from dealengine.domain.events import DomainEvent, parse_moment
from dealengine.domain.interaction import Interaction, Recorded
from dealengine.domain.lead import Lead
from dealengine.domain.lines import interaction_from
from dealengine.domain.rates import ExchangeRate
from dealengine.domain.streams import AggregateKind, deal_stream, kind_and_id, stream_of
from dealengine.engine import Engine
from dealengine.http.problems import Problem, problem_of
from dealengine.service.keys import ApiKey, Scope
from dealengine.service.rates import CSV_COLUMNS, rate_line

log = structlog.get_logger("dealengine.http")


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 1_000_000  # bytes
    max_items: int = 1000  # interactions in one request
    body_seconds: float = 10.0  # to read a request's body
    key_cache_seconds: float = 5.0  # a revoked key stops working within this
    sse_poll: float = 0.25


def create_app(engine: Engine, limits: Limits | None = None) -> FastAPI:
    """The API on `engine` (shared by every request)."""
    limits = limits or Limits()
    app = FastAPI(
        title="dealengine",
        version="1",
        description="Record interactions on leads and deals; read their states, histories, "
        "the funnel and the pipeline. Every request needs `Authorization: Bearer <key>`.",
    )
    keys = KeyCheck(engine, limits.key_cache_seconds)
    _errors(app)
    _logging(app)
    _writes(app, engine, limits, keys)
    _reads(app, engine, limits, keys)
    _view_reads(app, engine, limits, keys)
    _events(app, engine, limits, keys)
    _webhooks(app, engine, limits, keys)
    _rates(app, engine, limits, keys)
    _erasure(app, engine, limits, keys)
    return app


class KeyCheck:
    """Checks bearer keys against the store, remembering a good one for a few seconds."""

    def __init__(self, engine: Engine, ttl: float) -> None:
        self.engine, self.ttl = engine, ttl
        self.cache: dict[str, tuple[ApiKey, float]] = {}

    def __call__(self, needed: Scope) -> Callable[..., Awaitable[ApiKey]]:
        async def check(
            request: Request,
            authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
        ) -> ApiKey:
            scheme, _, token = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("a key is needed: Authorization: Bearer <key>")
            key = await self._lookup(token.strip())
            if key is None:
                raise _unauthorized("the key is unknown or revoked")
            request.state.key = key.id
            if not key.allows(needed):
                raise Problem(
                    403, "Forbidden", f"key {key.id} has scope {key.scope!r}: {needed!r} needed",
                    scope=key.scope, needed=needed,
                )  # fmt: skip
            return key

        return check

    async def _lookup(self, token: str) -> ApiKey | None:
        now = time.monotonic()
        cached = self.cache.get(token)
        if cached and cached[1] > now:
            return cached[0]
        key = await run_in_threadpool(self.engine.keys.check, token)
        if key is not None:
            if len(self.cache) > 10_000:
                self.cache.clear()
            self.cache[token] = (key, now + self.ttl)
        return key


def _unauthorized(detail: str) -> Problem:
    problem = Problem(401, "Unauthorized", detail)
    problem.headers["WWW-Authenticate"] = 'Bearer realm="dealengine"'
    return problem


def _errors(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def problem(request: Request, e: Problem) -> Response:
        log.info(
            "http.refused", method=request.method, path=request.url.path, status=e.status,
            key=getattr(request.state, "key", None), detail=e.detail,
        )  # fmt: skip
        return e.response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> Response:
        first = e.errors()[0] if e.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        detail = f"{field}: {first.get('msg', 'invalid')}" if field else "invalid request"
        return await problem(request, Problem(422, "Invalid request", detail, field=field))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed"}
        title = titles.get(e.status_code, "HTTP error")
        return await problem(request, Problem(e.status_code, title, str(e.detail)))

    @app.exception_handler(DealEngineError)
    async def refused(request: Request, e: DealEngineError) -> Response:
        return await problem(request, problem_of(e))


def _logging(app: FastAPI) -> None:
    @app.middleware("http")
    async def log_request(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        log.info(
            "http.request", method=request.method, path=request.url.path,
            status=response.status_code, key=getattr(request.state, "key", None),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )  # fmt: skip
        return response


# --- writing ------------------------------------------------------------------------------------

INTERACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "occurred_at"],
    "properties": {
        "type": {"type": "string", "description": "the event type (see the README)"},
        "lead_id": {"type": "string"},
        "deal_id": {"type": "string"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "description": "the idempotency key"},
        "actor": {"type": "string"},
    },
    "additionalProperties": True,
}
INTERACTIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        INTERACTION_SCHEMA,
                        {"type": "array", "items": INTERACTION_SCHEMA, "minItems": 1},
                    ]
                }
            }
        },
    }
}


async def read_json(request: Request, limits: Limits) -> Any:
    """The request's JSON body, read whole before anything else: at most `max_body` bytes,
    within `body_seconds` (413, 408 otherwise)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body:
        raise Problem(413, "Body too large", f"at most {limits.max_body} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.body_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body:
                    raise Problem(413, "Body too large", f"at most {limits.max_body} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(
            408, "Request timeout", f"the body took over {limits.body_seconds}s"
        ) from None
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as e:
        raise Problem(422, "Invalid JSON", f"the body is not JSON: {e}", field=None) from None


def commands_of(
    body: Any,
    limits: Limits,
    idempotency_key: str | None,
    interactions: Interactions,
    **forced: str,
) -> list[Interaction]:
    """The body's interactions (one object or an array), parsed as JSONL lines are (their types
    the model's `interactions`)."""
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > limits.max_items:
        raise Problem(
            422, "Invalid request", f"1 to {limits.max_items} interactions, got {len(items)}"
        )
    commands = []
    for i, item in enumerate(items):
        pointer = f"/{i}" if isinstance(body, list) else ""
        if not isinstance(item, dict):
            raise Problem(422, "Invalid interaction", "an interaction is a JSON object",
                          field=None, pointer=pointer or "/")  # fmt: skip
        item = {**item, **forced}
        if "id" not in item and idempotency_key:
            item["id"] = f"{idempotency_key}:{i}" if isinstance(body, list) else idempotency_key
        try:
            commands.append(interaction_from(item, "http", "http", interactions))
        except DealEngineError as e:
            raise problem_of(e, pointer) from None
    return commands


def event_json(event: DomainEvent) -> dict[str, Any]:
    stored = orjson.loads(event.stored_json())
    kind, aggregate_id = kind_and_id(event.originator_id)  # a lead, a deal, or rates
    envelope = ("id", "occurred_at", "recorded_at", "actor", "source", "idempotency_key",
                "prev_hash")  # fmt: skip
    return {
        "id": str(event.id), "type": event.event_type, "aggregate": kind,
        "aggregate_id": aggregate_id, "version": event.originator_version,
        **{k: stored.get(k) for k in envelope[1:]},
        "fields": {k: v for k, v in stored.items() if k not in envelope},
    }  # fmt: skip


def recorded_response(outcomes: list[Any], location: str | None) -> Response:
    events = [e for o in outcomes if isinstance(o, Recorded) for e in o.events]
    body = orjson.dumps({"events": [event_json(e) for e in events]})
    headers = {"Location": location} if location and events else {}
    return Response(body, 201 if events else 200, headers, media_type="application/json")


def _writes(app: FastAPI, engine: Engine, limits: Limits, keys: KeyCheck) -> None:
    write = Depends(keys("write"))
    engine_locks = StreamLocks()

    def execute(commands: list[Interaction]) -> list[Any]:
        outcomes = engine.execute_batch(list(commands), strict=True)
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, DealEngineError):
                raise problem_of(outcome, f"/{i}" if len(commands) > 1 else "")
        return outcomes

    @app.post(
        "/v1/interactions", status_code=201, dependencies=[write], openapi_extra=INTERACTIONS_BODY,
        responses={200: {"description": "all were recorded before (idempotency keys)"},
                   409: {"description": "a stage rule refused one"},
                   422: {"description": "an interaction is invalid"}},
    )  # fmt: skip
    async def record(
        request: Request, idempotency_key: Annotated[str | None, Header()] = None
    ) -> Response:
        """Record one interaction or an array of them (all or none), as JSONL lines."""
        body = await read_json(request, limits)
        commands = commands_of(body, limits, idempotency_key, engine.interactions)
        outcomes = await run_in_threadpool(execute, commands)
        location = None
        if len(commands) == 1:
            kind = commands[0].event_class.aggregate
            location = f"/v1/{kind}s/{commands[0].target}"
        return recorded_response(outcomes, location)

    @app.post(
        "/v1/deals/{deal_id}/interactions", status_code=201, dependencies=[write],
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": INTERACTION_SCHEMA}}}},
        responses={412: {"description": "If-Match: the deal moved on"}},
    )  # fmt: skip
    async def record_on_deal(
        request: Request,
        deal_id: str,
        if_match: Annotated[str | None, Header()] = None,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Record one interaction on a deal; with `If-Match: "<version>"`, only if the deal is
        still at that version (412 otherwise)."""
        body = await read_json(request, limits)
        if isinstance(body, list):
            raise Problem(422, "Invalid request", "one interaction, not an array", field=None)
        model = engine.interactions.get(str(body.get("type"))) if isinstance(body, dict) else None
        if model is not None and model.aggregate != "deal":
            raise Problem(422, "Invalid interaction", f"{body['type']} is a lead's event, not a "
                          "deal's", field="type", pointer="/type")  # fmt: skip
        [command] = commands_of(body, limits, idempotency_key, engine.interactions, deal_id=deal_id)
        expected = _version_of(if_match) if if_match else None

        def guarded() -> list[Any]:
            with engine_locks.hold(deal_stream(deal_id)):
                if expected is not None:
                    current = _current_version(engine, deal_id)
                    if current != expected and not (expected == ANY and current > 0):
                        problem = Problem(
                            412, "Precondition failed",
                            f"deal {deal_id} is at version {current}, not "
                            + ("any" if expected == ANY else str(expected)),
                            current_version=current,
                        )  # fmt: skip
                        problem.headers["ETag"] = f'"{current}"'
                        raise problem
                return execute([command])

        outcomes = await run_in_threadpool(guarded)
        response = recorded_response(outcomes, f"/v1/deals/{deal_id}")
        recorded = [e for o in outcomes for e in o.events]
        if recorded:
            response.headers["ETag"] = f'"{recorded[-1].originator_version}"'
        return response


ANY = -1  # If-Match: * (the deal exists, at any version)


def _version_of(if_match: str) -> int:
    if if_match.strip() == "*":
        return ANY
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise Problem(
            422,
            "Invalid request",
            f'If-Match must be a version as an ETag: "3", got {if_match!r}',
            field="If-Match",
        )
    return int(text)


def _current_version(engine: Engine, deal_id: str) -> int:
    try:
        return engine.deal(deal_id).version
    except UnknownAggregate:
        return 0


class StreamLocks:
    """A lock per stream in this process: an If-Match check and its write are not interleaved
    with another request's on the same deal (across processes the version check on append
    still refuses a lost update, but not a stale If-Match)."""

    def __init__(self) -> None:
        import threading

        self.guard = threading.Lock()
        self.locks: dict[str, Any] = {}
        self._lock_class = threading.Lock

    def hold(self, stream: str) -> Any:
        with self.guard:
            if len(self.locks) > 10_000:
                self.locks = {k: v for k, v in self.locks.items() if v.locked()}
            return self.locks.setdefault(stream, self._lock_class())


# --- reading ------------------------------------------------------------------------------------

AsOf = Annotated[str | None, Query(description="what had happened by then (a date or time)")]
KnownAt = Annotated[str | None, Query(description="what had been recorded by then")]
Version = Annotated[int | None, Query(ge=0, description="only the first N events")]


def moment(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_moment(text)
    except (ValueError, DealEngineError) as e:
        raise Problem(422, "Invalid request", f"{name}: {e}", field=name) from None


def state_json(state: Lead | Deal) -> dict[str, Any]:
    from dealengine.audit.states import canonical_json

    data: dict[str, Any] = orjson.loads(canonical_json(state))
    data.pop("idempotency_keys", None)
    return data


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def _reads(app: FastAPI, engine: Engine, limits: Limits, keys: KeyCheck) -> None:
    """A lead's or a deal's state and history."""
    read = Depends(keys("read"))

    def state_response(kind: str, id: str, as_of: str | None, known_at: str | None,
                       if_none_match: str | None) -> Response:  # fmt: skip
        when, known = moment("as_of", as_of), moment("known_at", known_at)
        try:
            state: Lead | Deal = (
                engine.lead(id, as_of=when, known_at=known)
                if kind == "lead"
                else engine.deal(id, as_of=when, known_at=known)
            )
        except UnknownAggregate as e:
            raise Problem(404, "Not found", str(e)) from None
        etag = f'"{state.version}"'
        if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
        return json_response(state_json(state), headers={"ETag": etag})

    @app.get("/v1/leads/{lead_id}", dependencies=[read])
    async def lead(lead_id: str, as_of: AsOf = None, known_at: KnownAt = None,
                   if_none_match: Annotated[str | None, Header()] = None) -> Response:  # fmt: skip
        """The lead's state; `ETag` is its stream's version."""
        return await run_in_threadpool(
            state_response, "lead", lead_id, as_of, known_at, if_none_match
        )

    @app.get("/v1/deals/{deal_id}", dependencies=[read])
    async def deal(deal_id: str, as_of: AsOf = None, known_at: KnownAt = None,
                   if_none_match: Annotated[str | None, Header()] = None) -> Response:  # fmt: skip
        """The deal's state; `ETag` is its stream's version."""
        return await run_in_threadpool(
            state_response, "deal", deal_id, as_of, known_at, if_none_match
        )

    def history(kind: AggregateKind, id: str, as_of: str | None, known_at: str | None,
                version: int | None) -> Response:  # fmt: skip
        from dealengine.audit.report import history_json

        bounds = {"as_of": moment("as_of", as_of), "known_at": moment("known_at", known_at)}
        try:
            entries = engine.timeline(stream_of(kind, id), **bounds, version=version)
        except UnknownAggregate as e:
            raise Problem(404, "Not found", str(e)) from None
        if not entries and not engine.store.exists(stream_of(kind, id)):
            raise Problem(404, "Not found", f"unknown {kind} {id}")
        return json_response(history_json(entries))

    @app.get("/v1/leads/{lead_id}/history", dependencies=[read])
    async def lead_history(lead_id: str, as_of: AsOf = None, known_at: KnownAt = None,
                           version: Version = None) -> Response:  # fmt: skip
        """Every event of the lead in order, with its status after each (as `dealengine history
        --format json`)."""
        return await run_in_threadpool(history, "lead", lead_id, as_of, known_at, version)

    @app.get("/v1/deals/{deal_id}/history", dependencies=[read])
    async def deal_history(deal_id: str, as_of: AsOf = None, known_at: KnownAt = None,
                           version: Version = None) -> Response:  # fmt: skip
        """Every event of the deal in order, with its stage and amount after each."""
        return await run_in_threadpool(history, "deal", deal_id, as_of, known_at, version)


def _view_reads(app: FastAPI, engine: Engine, limits: Limits, keys: KeyCheck) -> None:
    """The funnel, the pipeline, the what-if, verify and a deal's audit."""
    read, audit = Depends(keys("read")), Depends(keys("audit"))

    @app.get("/v1/funnel", dependencies=[read])
    async def funnel(
        as_of: AsOf = None,
        mode: Annotated[str | None, Query(pattern="^(reached|ordered|strict)$")] = None,
        window: Annotated[float | None, Query(gt=0, le=36500, description="days")] = None,
        attribution: Annotated[str | None, Query(pattern="^(first_touch|last_touch)$")] = None,
        breakdown: Annotated[list[str] | None, Query()] = None,
        cohort: Annotated[str | None, Query(pattern="^(week|month)$")] = None,
        exclude: Annotated[list[str] | None, Query()] = None,
        full: bool = False,
    ) -> Response:
        """The funnel, as `dealengine funnel --format json` with the same options."""
        overrides = {"mode": mode, "conversion_window_days": window, "attribution": attribution,
                     "breakdowns": breakdown, "cohort": cohort, "exclusions": exclude}  # fmt: skip
        when = moment("as_of", as_of)

        def build() -> dict[str, Any]:
            if full or when or any(v is not None for v in overrides.values()):
                try:
                    view = engine.funnel(as_of=when, **overrides)
                except ValueError as e:  # an override the definition refuses
                    raise Problem(
                        422, "Invalid request", str(e).splitlines()[0], field=None
                    ) from None
                return view.model_dump(mode="json")
            live, lag = engine.live_funnel()
            data = live.model_dump(mode="json")
            data["view"] = {"name": lag.view, "position": lag.position, "behind": lag.behind}
            return data

        return json_response(await run_in_threadpool(build))

    @app.get("/v1/pipeline", dependencies=[read])
    async def pipeline(
        as_of: AsOf = None,
        pipeline: Annotated[str | None, Query(description="a pipeline's name")] = None,
        changes_from: Annotated[str | None, Query()] = None,
        changes_to: Annotated[str | None, Query()] = None,
        deals: bool = False,
        full: bool = False,
    ) -> Response:
        """The pipeline, as `dealengine pipeline --format json` with the same options
        (`--changes FROM TO` as `changes_from` and `changes_to`)."""
        when = moment("as_of", as_of)
        if pipeline is not None and pipeline not in engine.pipelines.by_name:
            raise Problem(422, "Invalid request", f"no pipeline {pipeline!r}", field="pipeline")

        def build() -> Any:
            if changes_from or changes_to:
                if not (changes_from and changes_to):
                    raise Problem(422, "Invalid request", "changes_from and changes_to go together",
                                  field="changes_to")  # fmt: skip
                start, end = moment("changes_from", changes_from), moment("changes_to", changes_to)
                assert start and end
                return engine.pipeline_changes(start, end, pipeline_name=pipeline).model_dump(
                    mode="json"
                )
            if deals:
                times = engine.stage_times(as_of=when, pipeline_name=pipeline)
                defn = engine.pipelines[pipeline] if pipeline else engine.pipelines.default
                times.sort(key=lambda d: (defn.index.get(d.stage, len(defn.index)), d.deal_id))
                return [d.model_dump(mode="json") for d in times]
            if full or when:
                return engine.pipeline(as_of=when, pipeline_name=pipeline).model_dump(mode="json")
            live, lag = engine.live_pipeline(pipeline_name=pipeline)
            data = live.model_dump(mode="json")
            data["view"] = {"name": lag.view, "position": lag.position, "behind": lag.behind}
            return data

        return json_response(await run_in_threadpool(build))

    @app.post(
        "/v1/whatif", dependencies=[read],
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "properties": {
                "scenarios": {"type": "array", "items": {"type": "object"}, "minItems": 1,
                              "description": "scenarios, each the keys of a scenario TOML"},
                "as_of": {"type": "string"}, "pipeline": {"type": "string"}},
                "required": ["scenarios"]}}}}},
    )  # fmt: skip
    async def whatif(request: Request) -> Response:
        """The views under other rules beside the real ones (`dealengine whatif --format
        json`); nothing is written."""
        body = await read_json(request, limits)
        scenarios = body.get("scenarios") if isinstance(body, dict) else None
        if (
            not isinstance(scenarios, list)
            or not scenarios
            or not all(isinstance(s, dict) for s in scenarios)
        ):
            raise Problem(422, "Invalid request", "scenarios: a list of objects", field="scenarios")
        when = moment("as_of", body.get("as_of"))
        name = body.get("pipeline")
        if name is not None and (not isinstance(name, str) or name not in engine.pipelines.by_name):
            raise Problem(422, "Invalid request", f"no pipeline {name!r}", field="pipeline")

        def run() -> Any:
            from dealengine.whatif.render import what_if_json

            return what_if_json(engine.what_ifs(scenarios, as_of=when, pipeline_name=name))

        return json_response(await run_in_threadpool(run))

    @app.get("/v1/verify", dependencies=[audit])
    async def verify() -> Response:
        """Recompute every hash chain (`dealengine verify --format json`); `ok` says whether
        the store is intact."""
        report = await run_in_threadpool(engine.verify)
        return json_response(report.as_json())

    @app.get("/v1/audit/{deal_id}", dependencies=[audit])
    async def audit_report(deal_id: str) -> Response:
        """The audit report of a deal (`dealengine audit --format json`)."""
        from dealengine.audit.report import build_report

        def build() -> Any:
            try:
                return build_report(engine, deal_id).model_dump(mode="json")
            except UnknownAggregate as e:
                raise Problem(404, "Not found", str(e)) from None

        return json_response(await run_in_threadpool(build))


# --- exchange rates and erasure -----------------------------------------------------------------


def _body(names: Sequence[str], *, many: bool = False) -> dict[str, Any]:
    """The OpenAPI request body of an object of the string fields `names` (or an array)."""
    one = {"type": "object", "additionalProperties": False, "required": list(names),
           "properties": {name: {"type": "string", "minLength": 1} for name in names}}  # fmt: skip
    schema = {"oneOf": [one, {"type": "array", "items": one, "minItems": 1}]} if many else one
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _rates(app: FastAPI, engine: Engine, limits: Limits, keys: KeyCheck) -> None:
    """The exchange rates, as `dealengine rates list`, `set` and `void` (docs/currencies.md)."""

    @app.get("/v1/rates", dependencies=[Depends(keys("read"))])
    async def rates(as_of: AsOf = None) -> Response:
        """Every rate recorded and not voided, in recorded order; `?as_of=`: the one in force
        for each pair then."""
        when = moment("as_of", as_of)
        found = await run_in_threadpool(lambda: engine.rates(as_of=when))
        return json_response([r.as_json() for r in found])

    @app.post(
        "/v1/rates", status_code=201, dependencies=[Depends(keys("write"))],
        openapi_extra=_body(CSV_COLUMNS, many=True),
        responses={200: {"description": "every rate was recorded before"},
                   422: {"description": "a rate is invalid"}},
    )  # fmt: skip
    async def set_rates(request: Request) -> Response:
        """Record one rate (`from`, `to`, `rate`, `effective_from`) or an array of them (all or
        none); a rate recorded before records nothing."""
        body = await read_json(request, limits)
        items = body if isinstance(body, list) else [body]
        if not items or len(items) > limits.max_items:
            raise Problem(
                422, "Invalid request", f"1 to {limits.max_items} rates, got {len(items)}"
            )
        lines = [_rate_of(item, f"/{i}" if isinstance(body, list) else "") for i, item in
                 enumerate(items)]  # fmt: skip
        recorded = await run_in_threadpool(
            engine.exchange_rates.set, lines, actor="http", source="http"
        )
        return recorded_response([recorded], "/v1/rates")

    @app.post(
        "/v1/rates/void", status_code=201, dependencies=[Depends(keys("write"))],
        openapi_extra=_body(VOID_FIELDS), responses={404: {"description": "no such rate"}},
    )  # fmt: skip
    async def void_rate(request: Request) -> Response:
        """Void a mistaken rate (`from`, `to`, `id` as listed, `reason`): an
        exchange_rate_voided event; record the right one after it."""
        body = await read_json(request, limits)
        given = _fields(body, VOID_FIELDS, "")
        try:
            recorded = await run_in_threadpool(
                lambda: engine.void_rate(given["from"], given["to"], given["id"],
                                         reason=given["reason"], actor="http", source="http")
            )  # fmt: skip
        except UnknownAggregate as e:
            raise Problem(404, "Not found", str(e)) from None
        return recorded_response([recorded], "/v1/rates")


VOID_FIELDS = ("from", "to", "id", "reason")


def _rate_of(item: Any, pointer: str) -> ExchangeRate:
    """One rate of a request, checked as a line of a rates CSV is."""
    given = _fields(item, CSV_COLUMNS, pointer)
    try:
        return rate_line(given, "rate")
    except DealEngineError as e:
        raise problem_of(e, pointer) from None


def _fields(item: Any, names: Sequence[str], pointer: str) -> dict[str, str]:
    """`item`'s fields `names`, every one a string given and no other."""
    if not isinstance(item, dict):
        raise Problem(422, "Invalid request", "a JSON object", field=None, pointer=pointer or "/")
    for name in item:
        if name not in names:
            raise Problem(422, "Invalid request", f"field '{name}': not a field here",
                          field=name, pointer=f"{pointer}/{name}")  # fmt: skip
    for name in names:
        if not isinstance(item.get(name), str) or not item[name].strip():
            raise Problem(422, "Invalid request", f"field '{name}': a non-empty string needed",
                          field=name, pointer=f"{pointer}/{name}")  # fmt: skip
    return {name: item[name] for name in names}


def _erasure(app: FastAPI, engine: Engine, limits: Limits, keys: KeyCheck) -> None:
    @app.post(
        "/v1/leads/{lead_id}/forget", status_code=201, dependencies=[Depends(keys("admin"))],
        openapi_extra=_body(("reason",)), responses={404: {"description": "no such lead"}},
    )  # fmt: skip
    async def forget(request: Request, lead_id: str) -> Response:
        """Erase the lead's personal data (`{"reason": "..."}`): its key destroyed, a
        `lead_forgotten` recorded; its personal fields read `[erased]` from then on, its funnel
        and pipeline figures stay (`dealengine forget`, docs/privacy.md)."""
        body = await read_json(request, limits)
        reason = _fields(body, ("reason",), "")["reason"]
        try:
            recorded = await run_in_threadpool(
                lambda: engine.forget(lead_id, reason=reason, actor="http", source="http")
            )
        except UnknownAggregate as e:
            raise Problem(404, "Not found", str(e)) from None
        return recorded_response([recorded], f"/v1/leads/{lead_id}")


# --- the event stream ---------------------------------------------------------------------------


def _events(app: FastAPI, engine: Engine, limits: Limits, keys: KeyCheck) -> None:
    @app.get(
        "/v1/events", dependencies=[Depends(keys("read"))],
        responses={200: {"content": {"text/event-stream": {}}}},
    )  # fmt: skip
    async def events(
        request: Request,
        last_event_id: Annotated[str | None, Header()] = None,
        after: Annotated[int | None, Query(ge=0, description="start after this position")] = None,
        types: Annotated[list[str] | None, Query()] = None,
        limit: Annotated[int | None, Query(ge=1, le=100_000, description="then close")] = None,
    ) -> StreamingResponse:
        """Server-sent events: every event and derived notice recorded after `Last-Event-ID`
        (or `after`), then new ones as they are recorded. Each message's `id` is
        `<position>.<n>`: give it back as `Last-Event-ID` to resume after it."""
        position, index = _resume_point(last_event_id, after)
        return StreamingResponse(
            _stream(request, engine, limits, position, index, types, limit),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _resume_point(last_event_id: str | None, after: int | None) -> tuple[int, int]:
    """(position, n): resume after the n-th notice of the event at `position`."""
    if last_event_id:
        head, _, tail = last_event_id.strip().partition(".")
        if not head.isdigit() or (tail and not tail.isdigit()):
            raise Problem(422, "Invalid request", "Last-Event-ID: expected <position>.<n>",
                          field="Last-Event-ID")  # fmt: skip
        return (int(head), int(tail)) if tail else (int(head), 1_000_000)
    return (after or 0), 1_000_000


async def _stream(request: Request, engine: Engine, limits: Limits, position: int, skip: int,
                  types: list[str] | None, limit: int | None) -> AsyncIterator[bytes]:  # fmt: skip
    from dealengine.subscriptions.notices import wanted

    notices = engine.subscriptions.new_notices()
    recorder = engine.store.recorder
    sent, quiet_since = 0, time.monotonic()
    start, inclusive = (position, True) if skip < 1_000_000 else (position, False)

    def fetch(start: int, inclusive: bool) -> list[tuple[int, list[Any]]]:
        rows = recorder.select_notifications(start, 200, inclusive_of_start=inclusive)
        return [(n.id, list(notices.of(n))) for n in rows]

    while True:
        if await request.is_disconnected():
            return
        batch = await run_in_threadpool(fetch, start, inclusive)
        for at, found in batch:
            for n, notice in enumerate(found, start=1):
                if at == position and n <= skip:
                    continue
                if not wanted(notice, types):
                    continue
                yield (f"id: {at}.{n}\nevent: {notice.type}\n"
                       f"data: {notice.json_bytes().decode()}\n\n").encode()  # fmt: skip
                sent += 1
                if limit is not None and sent >= limit:
                    return
            start, inclusive = at, False
        if batch:
            quiet_since = time.monotonic()
            continue
        if time.monotonic() - quiet_since > 15:
            yield b": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(limits.sse_poll)


# --- webhooks -----------------------------------------------------------------------------------


def _webhooks(app: FastAPI, engine: Engine, limits: Limits, keys: KeyCheck) -> None:
    from pydantic import ValidationError

    from dealengine.domain.errors import WebhookExists
    from dealengine.subscriptions.webhooks import (
        Webhook,
        add_webhook,
        all_webhooks,
        remove_webhook,
    )

    admin = Depends(keys("admin"))

    def shown(hook: Webhook) -> dict[str, Any]:
        return hook.model_dump(mode="json", exclude={"secret"}) | {"subscriber": hook.subscriber}

    @app.get("/v1/webhooks", dependencies=[admin])
    async def webhooks() -> Response:
        """Every webhook, of webhooks.toml and added here (never their secrets)."""
        found = await run_in_threadpool(all_webhooks, engine.subscriptions)
        return json_response([shown(h) for h in found])

    @app.post(
        "/v1/webhooks", status_code=201, dependencies=[admin],
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": Webhook.model_json_schema()}}}},
        responses={409: {"description": "a webhook has that name"}},
    )  # fmt: skip
    async def add(request: Request) -> Response:
        """Add a webhook (`name`, `url`, `events`, `secret`, ...: as in webhooks.toml); the
        workers (`dealengine subscribers run`, `serve --webhooks`) deliver to it within
        seconds, from the first event recorded."""
        body = await read_json(request, limits)
        try:
            hook = Webhook.model_validate(body, context=engine.interactions.context)
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            raise Problem(422, "Invalid webhook", f"{field}: {first['msg']}", field=field) from None
        try:
            await run_in_threadpool(add_webhook, engine.subscriptions, hook)
        except WebhookExists as e:
            raise Problem(409, "Webhook exists", str(e), name=e.name) from None
        return json_response(shown(hook), 201, {"Location": f"/v1/webhooks/{hook.name}"})

    @app.delete("/v1/webhooks/{name}", status_code=204, dependencies=[admin])
    async def remove(name: str) -> Response:
        """Remove a webhook added here; deliveries to it stop within seconds."""
        try:
            await run_in_threadpool(remove_webhook, engine.subscriptions, name)
        except DealEngineError as e:
            raise Problem(404, "Not found", str(e)) from None
        return Response(status_code=204)
