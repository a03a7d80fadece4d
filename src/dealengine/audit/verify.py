"""Tamper evidence: recompute every stream's hash chain; seal the store; check against a seal.

The chain (dealengine.domain.chain) links each event to the one before it in its stream, so an
event modified, removed from the middle, inserted or reordered breaks a link, and the finding
names the stream and the version(s). What a chain cannot show alone: the last event of a
stream modified or removed, a whole stream deleted, or a chain rewritten from some event on by
someone who recomputes the hashes (there is no secret key). For those there is the seal: a
digest over every stream's event count and head hash at a position of the log, printed by
`dealengine seal` to be kept outside the system. `verify --seal` recomputes the same digest
from the store's events at or before that position (later events are ordinary appends) and
reports any difference; with the seal's manifest (`seal --manifest FILE`: one line per
stream, authenticated by the digest, so it may be kept anywhere) it names each stream that
differs and how.

Verification streams the store by stream (originator id in code point order, then version)
and holds one stream at a time: memory does not grow with the store.

The seal digest is the SHA-256 of "dealengine-seal-v1\\n{position}\\n" followed, for each
stream with events at or before the position, in code point order of its id, by
"{len(id)}:{id} {count} {head}\\n" (count: its events at or before the position; head: the
hash of the last of them). The seal prints as
`dealengine-seal-v1:{position}:{streams}:{events}:{digest}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from dealengine.domain.chain import event_hash
from dealengine.domain.errors import DealEngineError
from dealengine.store.recorders import StreamRow

SEAL_PREFIX = "dealengine-seal-v1"
MAX_SWAP_SEARCH = 64  # events in a broken stream up to which a swap of two is looked for


class Finding(NamedTuple):
    stream: str
    versions: str  # "v3", "v3..v5", "v2 and v3", or "" for the whole stream
    kind: str  # modified, removed, inserted, reordered, broken, deleted, seal
    detail: str

    def __str__(self) -> str:
        where = f"{self.stream} {self.versions}".strip()
        return f"{where}: {self.kind}: {self.detail}"


class Row(NamedTuple):
    version: int
    topic: str
    state: bytes
    position: int


class Seal(NamedTuple):
    position: int
    streams: int
    events: int
    digest: str

    def __str__(self) -> str:
        return f"{SEAL_PREFIX}:{self.position}:{self.streams}:{self.events}:{self.digest}"

    @classmethod
    def parse(cls, text: str) -> Seal:
        parts = text.strip().split(":")
        try:
            if len(parts) != 5 or parts[0] != SEAL_PREFIX or len(parts[4]) != 64:
                raise ValueError
            int(parts[4], 16)
            return cls(int(parts[1]), int(parts[2]), int(parts[3]), parts[4])
        except ValueError:
            raise DealEngineError(
                f"not a seal: {text!r} (expected {SEAL_PREFIX}:POSITION:STREAMS:EVENTS:DIGEST)"
            ) from None


class Summary(NamedTuple):
    """One stream at the seal's position: its events at or before it, and the last one's hash."""

    stream: str
    events: int
    head: str


@dataclass
class VerifyReport:
    streams: int = 0
    events: int = 0
    findings: list[Finding] = field(default_factory=list)
    seal: Seal | None = None  # the seal checked against, if any
    sealed: Seal | None = None  # the seal of the store as read (at the given position)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "streams": self.streams,
            "events": self.events,
            "seal": str(self.seal) if self.seal else None,
            "findings": [f._asdict() for f in self.findings],
        }


# --- one stream's chain ----------------------------------------------------------------------

_UNREADABLE = "<unreadable>"
_KEY = b'"prev_hash":'


def _prev_hash(state: bytes) -> str | None:
    """The `prev_hash` an event's stored JSON claims. Fast path: the engine writes it as
    `"prev_hash":null` or `"prev_hash":"<64 hex>"` (a quote inside a JSON string is escaped,
    so this key cannot be matched inside a value); anything else is parsed in full."""
    at = state.find(_KEY)
    if at >= 0:
        value = state[at + 12 : at + 78]
        if value[:1] == b'"' and value[65:66] == b'"' and value[1:65].isalnum():
            return value[1:65].decode("ascii")
        if value[:4] == b"null" and value[4:5] in (b",", b"}"):
            return None
    try:
        data = orjson.loads(state)
    except orjson.JSONDecodeError:
        return _UNREADABLE
    if not isinstance(data, dict):
        return _UNREADABLE
    claimed = data.get("prev_hash")
    return claimed if claimed is None or isinstance(claimed, str) else _UNREADABLE


def _linked(prevs: list[str | None], hashes: list[str], versions: list[int]) -> bool:
    if versions[0] != 1 or prevs[0] is not None:
        return False
    return all(
        versions[i] == versions[i - 1] + 1 and prevs[i] == hashes[i - 1]
        for i in range(1, len(versions))
    )


def check_chain(stream: str, rows: list[Row]) -> list[Finding]:
    """The findings of one stream's events (sorted by version): [] when its chain holds."""
    versions = [r.version for r in rows]
    hashes = [event_hash(stream, r.version, r.topic, r.state) for r in rows]
    prevs = [_prev_hash(r.state) for r in rows]
    if _linked(prevs, hashes, versions):
        return []
    swapped = _swap(stream, rows, prevs, hashes)
    if swapped:
        a, b = swapped
        return [
            Finding(
                stream,
                f"v{a} and v{b}",
                "reordered",
                f"v{a} and v{b} have exchanged places (their chain holds with them swapped back)",
            )
        ]
    return _links(stream, rows, versions, hashes, prevs)


def _links(
    stream: str, rows: list[Row], versions: list[int], hashes: list[str], prevs: list[str | None]
) -> list[Finding]:
    found: list[Finding] = []
    n = len(rows)
    for i, prev in enumerate(prevs):
        if prev == _UNREADABLE:
            found.append(Finding(stream, f"v{versions[i]}", "modified", "its JSON is unreadable"))
    skip_link = 0  # a link already explained by a finding
    if versions[0] > 1:
        span = "v1" if versions[0] == 2 else f"v1..v{versions[0] - 1}"
        found.append(Finding(stream, span, "removed", "missing from the start of the stream"))
    elif prevs[0] is not None and prevs[0] != _UNREADABLE:
        found.append(Finding(stream, "v1", "modified", "the first event carries a prev_hash"))
        skip_link = 1
    for i in range(1, n):
        v, before = versions[i], versions[i - 1]
        if v > before + 1:
            span = f"v{before + 1}" if v == before + 2 else f"v{before + 1}..v{v - 1}"
            found.append(
                Finding(
                    stream, span, "removed", f"missing from the middle (v{v} follows v{before})"
                )
            )
            continue
        if prevs[i] == hashes[i - 1] or skip_link == i:
            continue
        next_broken = i + 1 < n and versions[i + 1] == v + 1 and prevs[i + 1] != hashes[i]
        if prevs[i] == _UNREADABLE:
            skip_link = i + 1
        elif next_broken:
            found.append(
                Finding(
                    stream,
                    f"v{v}",
                    "modified",
                    f"neither its prev_hash (v{before}) nor its own hash (v{v + 1}) fits",
                )
            )
            skip_link = i + 1
        elif i + 1 < n:
            found.append(
                Finding(
                    stream,
                    f"v{before}",
                    "modified",
                    f"its content no longer matches the hash v{v} recorded for it",
                )
            )
        else:
            found.append(_last_link(stream, versions, hashes, prevs[i]))
    return found


def _last_link(stream: str, versions: list[int], hashes: list[str], prev: str | None) -> Finding:
    """The stream's last event does not follow the one before it."""
    v, before = versions[-1], versions[-2]
    if prev is None:
        return Finding(
            stream, f"v{v}", "inserted", "it has no prev_hash: not written by the engine"
        )
    for j, h in enumerate(hashes[:-2]):
        if h == prev:
            return Finding(
                stream,
                f"v{v}",
                "inserted",
                f"its prev_hash names v{versions[j]}, not v{before}: forged or copied",
            )
    return Finding(
        stream,
        f"v{before}..v{v}",
        "broken",
        f"v{v}'s prev_hash does not match v{before}: v{v} inserted, or v{before} modified",
    )


def _swap(
    stream: str, rows: list[Row], prevs: list[str | None], hashes: list[str]
) -> tuple[int, int] | None:
    """(a, b) when exchanging the versions of the events at a and b makes the chain whole."""
    n = len(rows)
    if n < 2 or n > MAX_SWAP_SEARCH or [r.version for r in rows] != list(range(1, n + 1)):
        return None
    for a in range(n):
        for b in range(a + 1, n):
            order = list(range(n))
            order[a], order[b] = b, a
            new_hashes = list(hashes)
            for k in (a, b):
                r = rows[order[k]]
                new_hashes[k] = event_hash(stream, k + 1, r.topic, r.state)
            new_prevs = [prevs[order[k]] for k in range(n)]
            if new_prevs[0] is None and all(new_prevs[k] == new_hashes[k - 1] for k in range(1, n)):
                return a + 1, b + 1
    return None


# --- the whole store ---------------------------------------------------------------------------


def streams(rows: Iterable[StreamRow]) -> Iterator[tuple[str, list[StreamRow]]]:
    """Rows in stream order, grouped: one stream's rows at a time."""
    for stream, group in groupby(rows, key=itemgetter(0)):
        yield stream, list(group)


def _scan(stream: str, group: list[StreamRow], at: int) -> tuple[bool, Summary | None]:
    """One pass over a stream: does its chain hold, and its summary at position `at`."""
    linked, expected_version, expected_prev = True, 1, None
    count, head = 0, ""
    for _, version, topic, state, position in group:
        if state.__class__ is not bytes:
            state = _bytes(state)
        digest = event_hash(stream, version, topic, state)
        if linked and (version != expected_version or _prev_hash(state) != expected_prev):
            linked = False
        expected_version, expected_prev = version + 1, digest
        if position <= at:
            count, head = count + 1, digest
    return linked, Summary(stream, count, head) if count else None


def _bytes(state: object) -> bytes:
    """The stored state as bytes, whatever the column holds after tampering (SQLite lets
    `replace()` turn a BLOB into TEXT): the hash then tells whether it is what was written."""
    if isinstance(state, bytes):
        return state
    return b"" if state is None else str(state).encode()


class _Digest:
    def __init__(self, position: int) -> None:
        self.position = position
        self.hash = sha256(f"{SEAL_PREFIX}\n{position}\n".encode())
        self.streams = self.events = 0

    def add(self, summary: Summary) -> None:
        s = summary
        self.hash.update(f"{len(s.stream)}:{s.stream} {s.events} {s.head}\n".encode())
        self.streams += 1
        self.events += s.events

    def seal(self) -> Seal:
        return Seal(self.position, self.streams, self.events, self.hash.hexdigest())


def verify(
    rows: Iterable[StreamRow],
    position: int,
    *,
    seal: Seal | None = None,
    manifest: Iterable[Summary] | None = None,
    progress: Callable[[int], None] | None = None,
    on_summary: Callable[[Summary], None] | None = None,
) -> VerifyReport:
    """Check every chain in `rows` (the store by stream); with `seal`, compare the streams at
    the seal's position with it (and, with its `manifest`, name each difference). Without a
    seal, `position` is where the report's own seal (`report.sealed`) is taken."""
    at = seal.position if seal else position
    report = VerifyReport(seal=seal)
    digest = _Digest(at)
    compare = _Compare(manifest, report.findings) if manifest is not None else None
    for stream, group in streams(rows):
        report.streams += 1
        report.events += len(group)
        linked, s = _scan(stream, group, at)
        if not linked:
            chain = [Row(v, topic, _bytes(state), pos) for _, v, topic, state, pos in group]
            report.findings.extend(check_chain(stream, chain))
        if s is not None:
            digest.add(s)
            if on_summary:
                on_summary(s)
        if compare:
            compare.store(stream, s)
        if progress:
            progress(len(group))
    if compare:
        compare.finish()
    report.sealed = digest.seal()
    if seal and report.sealed != seal and (compare is None or not compare.named):
        report.findings.append(_seal_mismatch(seal, report.sealed))
    return report


def _seal_mismatch(seal: Seal, now: Seal) -> Finding:
    counts = (
        f"at position {seal.position} the seal has {seal.streams} streams and {seal.events} "
        f"events, the store {now.streams} and {now.events}"
    )
    if (seal.streams, seal.events) == (now.streams, now.events):
        counts += ": the same counts, so events were changed (a last event, or a rewritten chain)"
    return Finding(
        "store",
        "",
        "seal",
        f"does not match the seal: {counts}; give the seal's manifest to name the streams",
    )


class _Compare:
    """Merge-joins the store's stream summaries with a seal's manifest (both in id order)."""

    def __init__(self, manifest: Iterable[Summary], findings: list[Finding]) -> None:
        self.sealed = iter(manifest)
        self.next: Summary | None = next(self.sealed, None)
        self.findings = findings
        self.named = 0

    def _add(self, finding: Finding) -> None:
        self.findings.append(finding)
        self.named += 1

    def _deleted_until(self, stream: str | None) -> None:
        while self.next is not None and (stream is None or self.next.stream < stream):
            m = self.next
            self._add(
                Finding(
                    m.stream, "", "deleted", f"the whole stream ({m.events} events at the seal)"
                )
            )
            self.next = next(self.sealed, None)

    def store(self, stream: str, now: Summary | None) -> None:
        self._deleted_until(stream)
        sealed = self.next if self.next is not None and self.next.stream == stream else None
        if sealed is not None:
            self.next = next(self.sealed, None)
        if now is None and sealed is None:
            return  # recorded after the seal
        if sealed is None:
            assert now is not None
            self._add(
                Finding(stream, "", "inserted", f"{now.events} events the seal does not know")
            )
        elif now is None:
            self._add(
                Finding(stream, "", "deleted", f"its {sealed.events} sealed events are all gone")
            )
        elif now.events < sealed.events:
            span = f"v{now.events + 1}" + (
                "" if now.events + 1 == sealed.events else f"..v{sealed.events}"
            )
            self._add(
                Finding(
                    stream,
                    span,
                    "removed",
                    f"missing from the end (the seal has {sealed.events} events, the store "
                    f"{now.events})",
                )
            )
        elif now.events > sealed.events:
            self._add(
                Finding(
                    stream,
                    f"v{sealed.events + 1}..v{now.events}",
                    "inserted",
                    f"the seal has {sealed.events} events at its position, the store {now.events}",
                )
            )
        elif now.head != sealed.head:
            self._add(
                Finding(
                    stream,
                    f"v{now.events}",
                    "modified",
                    "the last sealed event differs from the seal (or its chain was rewritten)",
                )
            )

    def finish(self) -> None:
        self._deleted_until(None)


# --- the manifest ------------------------------------------------------------------------------


class ManifestWriter:
    """Writes a seal's manifest as the streams are read: one `id TAB count TAB head` line per
    stream, in id order, then the seal itself. Written to FILE.part, renamed when complete."""

    def __init__(self, path: Path) -> None:
        self.path, self.part = path, path.with_name(path.name + ".part")
        self.file = self.part.open("w", encoding="utf-8")

    def __call__(self, s: Summary) -> None:
        self.file.write(f"{s.stream}\t{s.events}\t{s.head}\n")

    def close(self, seal: Seal) -> None:
        self.file.write(f"{seal}\n")
        self.file.close()
        self.part.replace(self.path)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.file.closed:  # failed before close(): leave no half-written manifest
            self.file.close()
            self.part.unlink(missing_ok=True)


def read_manifest(path: Path, seal: Seal) -> Iterator[Summary]:
    """A manifest's stream lines, checked as they are read: a manifest whose digest is not
    the seal's raises (at its end) rather than be believed."""
    digest = _Digest(seal.position)
    try:
        f = path.open(encoding="utf-8")
    except OSError as e:
        raise DealEngineError(f"{path}: cannot read the manifest: {e.strerror}") from None
    with f:
        for number, line in enumerate(f, start=1):
            if line.startswith(SEAL_PREFIX):
                if line.strip() != str(seal):
                    raise DealEngineError(f"{path}: the manifest of another seal")
                break
            try:
                stream, count, head = line.rstrip("\n").split("\t")
                s = Summary(stream, int(count), head)
            except ValueError:
                raise DealEngineError(f"{path}:{number}: not a manifest line") from None
            digest.add(s)
            yield s
        else:
            raise DealEngineError(f"{path}: incomplete manifest (no seal line at its end)")
    if digest.seal() != seal:
        raise DealEngineError(f"{path}: the manifest does not match the seal's digest")
