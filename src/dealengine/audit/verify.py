"""Tamper evidence: check every stream's chain and each event's own hash; seal the store;
check against a seal, and the seal log.

Each event stores its own hash and its predecessor's (dealengine.domain.chain), so an event
modified anywhere in its stream, the last one included, no longer fits its own hash; one
removed from the middle, inserted or reordered breaks a link, and the finding names the stream,
the version(s) and the kind. What the hashes cannot show alone: the last event of a stream
removed, a whole stream deleted, and, without a key, a stream rewritten from some event on by
someone who recomputes the hashes (with DEALENGINE_AUDIT_KEY they are HMACs: that is caught).
For those there is the seal: a digest over every stream's event count and head hash at a
position of the log, printed by `dealengine seal` to be kept outside the system and appended
to the seal log in the store. `verify --seal` recomputes the same digest from the store's
events at or before that position (later events are ordinary appends) and reports any
difference; with the seal's manifest (`seal --manifest FILE`: one line per stream,
authenticated by the digest, so it may be kept anywhere) it names each stream that differs
and how. `verify --seals` checks the seal log's own chain and each of its seals.

Verification streams the store by stream (originator id in code point order, then version)
and holds one stream at a time: memory does not grow with the store.

The seal digest is the SHA-256 of "dealengine-seal-v1\\n{position}\\n" followed, for each
stream with events at or before the position, in code point order of its id, by
"{len(id)}:{id} {count} {head}\\n" (count: its events at or before the position; head: the
hash of the last of them, as its successor's prev_hash would name it). The seal prints as
`dealengine-seal-v1:{position}:{streams}:{events}:{digest}`. The seal log's entries:
`SealEntry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from dealengine.domain.chain import (
    KEYED,
    event_hash,
    is_keyed,
    record_hash,
    split_own_hash,
    with_own_hash,
)
from dealengine.domain.errors import DealEngineError
from dealengine.store.recorders import StreamRow

SEAL_PREFIX = "dealengine-seal-v1"
SEAL_LOG_PREFIX = "dealengine-seal-log-v1"
SEAL_LOG = "seal log"  # the stream name its findings are reported under
MAX_RENUMBERED = 64  # events removed before a renumbered one: its recorded version is looked
# for this far
MAX_SWAP_SUSPECTS = 16  # events stored without own hashes with broken links: a swap is
# looked for among them (pairs) up to this many


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
    without_own: int = 0  # events stored before own hashes: checked by the chain only
    unchecked: int = 0  # events with keyed hashes, verified without the key: not checked
    unkeyed: int = 0  # events with unkeyed own hashes, verified with the key: not authenticated
    keyed: bool = False  # verified with the audit key
    seals: int = 0  # entries of the seal log checked (verify --seals)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def authenticated(self) -> bool:
        """Every event's hash checked under the key (the store cannot have been rewritten and
        its hashes recomputed without the key going unnoticed)."""
        return self.keyed and not (self.unchecked or self.unkeyed or self.without_own)

    def notes(self) -> list[str]:
        """What this verification could not check, in words."""
        said = []
        if self.without_own:
            said.append(
                f"{self.without_own} events were stored without their own hash: checked by the "
                "chain only (a change to the last such event of a stream needs a seal)"
            )
        if self.unchecked:
            said.append(
                f"{self.unchecked} events carry keyed hashes and no DEALENGINE_AUDIT_KEY was "
                "given: their content and authenticity were NOT checked, only their links"
            )
        if self.unkeyed:
            said.append(
                f"{self.unkeyed} events carry unkeyed hashes: checked, not authenticated (someone "
                "with access to the database could have rewritten them and their hashes)"
            )
        return said

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "streams": self.streams,
            "events": self.events,
            "seal": str(self.seal) if self.seal else None,
            "seals": self.seals,
            "authenticated": self.authenticated,
            "without_own_hash": self.without_own,
            "unchecked": self.unchecked,
            "unkeyed": self.unkeyed,
            "notes": self.notes(),
            "findings": [f._asdict() for f in self.findings],
        }


# --- one stream's chain ----------------------------------------------------------------------

_UNREADABLE = "<unreadable>"
_KEY = b'"prev_hash":'
_KEYED_PREV = b'"' + KEYED.encode()
_NULLS = (b"null,", b"null}")
_OWN = b',"hash":"'  # an unkeyed own hash ends the JSON as ,"hash":"<64 hex>"} (domain/chain.py)


def _prev_hash(state: bytes) -> str | None:
    """The `prev_hash` an event's stored JSON claims. Fast path: the engine writes it as
    `"prev_hash":null` or `"prev_hash":"<hash>"` (a quote inside a JSON string is escaped,
    so this key cannot be matched inside a value); anything else is parsed in full."""
    at = state.find(_KEY)
    if at >= 0:
        at += 12
        if state[at : at + 13] == _KEYED_PREV:  # "hmac-sha256:<64 hex>"
            value = state[at + 12 : at + 78]
            if value[65:66] == b'"' and value[1:65].isalnum():
                return KEYED + value[1:65].decode("ascii")
        value = state[at : at + 66]
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


class Link(NamedTuple):
    """One stored event as its stream's chain sees it."""

    version: int  # as stored
    topic: str
    body: bytes  # its JSON without its own hash: what its hash is over
    own: str | None  # the own hash it claims (None: stored before own hashes)
    prev: str | None  # the prev_hash it claims (_UNREADABLE when its JSON is not readable)
    ident: str  # its hash in the chain: its own hash, or (stored without) its JSON's hash
    ok: bool  # its own hash fits its content at its stored version (True when not checkable)


class Checker:
    """The hash rule of one verification: with the audit key or without. Counts what it could
    not check: events stored without an own hash, keyed ones without the key, unkeyed ones
    when a key is given; and how many keyed events the key authenticated or refuted."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self.without_own = self.unchecked = self.unkeyed = 0
        self.authenticated = self.refuted = 0

    def fits(self, stream: str, version: int, topic: str, body: bytes, own: str) -> bool | None:
        """Does `own` fit the event's content at `version`? None: keyed, and no key given."""
        if is_keyed(own):
            if self.key is None:
                return None
            return event_hash(stream, version, topic, body, self.key) == own
        return event_hash(stream, version, topic, body) == own

    def link(self, stream: str, version: int, topic: str, state: bytes) -> Link:
        body, own = split_own_hash(state)
        prev = _prev_hash(body)
        if own is None:
            self.without_own += 1
            ident = event_hash(stream, version, topic, body)
            return Link(version, topic, body, None, prev, ident, True)
        fits = self.fits(stream, version, topic, body, own)
        if fits is None:
            self.unchecked += 1
        elif is_keyed(own):
            if fits:
                self.authenticated += 1
            else:
                self.refuted += 1
        elif self.key is not None:
            self.unkeyed += 1
        return Link(version, topic, body, own, prev, own, fits is not False)


def _downgrades(stream: str, links: list[Link], key: bytes | None) -> list[Finding]:
    """Events with a weaker hash than one before them in their stream: the engine never
    writes those (it writes an own hash on every event, keyed whenever it has the key)."""
    found: list[Finding] = []
    own_seen = keyed_seen = False
    for link in links:
        if link.own is None and own_seen:
            found.append(
                Finding(stream, f"v{link.version}", "modified", "its own hash has been removed")
            )
        elif link.own is not None and not is_keyed(link.own) and keyed_seen and key:
            found.append(
                Finding(
                    stream,
                    f"v{link.version}",
                    "modified",
                    "its hash is not keyed, after keyed ones: rewritten without the key",
                )
            )
        own_seen = own_seen or link.own is not None
        keyed_seen = keyed_seen or (link.own is not None and is_keyed(link.own))
    return found


def check_chain(stream: str, rows: list[Row], checker: Checker | None = None) -> list[Finding]:
    """The findings of one stream's events (sorted by version): [] when it is intact."""
    checker = checker or Checker(None)
    return _findings(
        stream, [checker.link(stream, r.version, r.topic, r.state) for r in rows], checker
    )


def _findings(stream: str, links: list[Link], checker: Checker) -> list[Finding]:
    found = _downgrades(stream, links, checker.key)
    if _intact(links):
        return found
    if all(link.own is not None for link in links):
        return found + _by_links(stream, links, checker)
    return found + _modified(stream, links) + _legacy(stream, links, checker)


def _intact(links: list[Link]) -> bool:
    prev: str | None = None
    for number, link in enumerate(links, start=1):
        if link.version != number or link.prev != prev or not link.ok:
            return False
        prev = link.ident
    return True


def _modified(stream: str, links: list[Link]) -> list[Finding]:
    return [
        Finding(stream, f"v{k.version}", "modified", "its content no longer matches its own hash")
        for k in links
        if not k.ok
    ]


def _span(first: int, last: int) -> str:
    return f"v{first}" if first == last else f"v{first}..v{last}"


def _versions(numbers: list[int]) -> str:
    named = [f"v{n}" for n in numbers]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"


def _by_links(stream: str, links: list[Link], checker: Checker) -> list[Finding]:
    """A stream whose every event has its own hash: its recorded order is rebuilt by following
    the prev_hash links from the start (each event names the own hash of the one before it,
    whatever version it is stored at), so inserts and reorders are told apart at any length.
    An event not on the rebuilt chain is inserted; one on it whose own hash does not fit its
    recorded version is modified; chain events stored out of their recorded order are
    reordered; a chain broken by a missing event resumes at the next event whose predecessor
    is gone (removed)."""
    n = len(links)
    index: dict[str, int] = {}
    children: dict[int, list[int]] = {}
    roots: list[int] = []  # events whose predecessor is not in the stream
    for i, link in enumerate(links):
        index.setdefault(link.ident, i)
    for i, link in enumerate(links):
        if link.prev is None:
            children.setdefault(-1, []).append(i)
        elif link.prev in index and index[link.prev] != i:
            children.setdefault(index[link.prev], []).append(i)
        else:
            roots.append(i)

    def fits(i: int, version: int) -> bool:
        k = links[i]
        if version == k.version:
            return k.ok
        assert k.own is not None
        return checker.fits(stream, version, k.topic, k.body, k.own) is not False

    found: list[Finding] = []
    depth: dict[int, int] = {}  # event (index) -> its recorded version
    inserted: list[int] = []

    def follow(start: int, version: int) -> None:
        at: int | None = start
        while at is not None:
            depth[at] = version
            kids = children.get(at, [])
            at = _successor(kids, version + 1, fits, children) if kids else None
            inserted.extend(k for k in kids if k != at)
            version += 1

    first = children.get(-1, [])
    if first:
        head = _successor(first, 1, fits, children)
        inserted.extend(k for k in first if k != head)
        follow(head, 1)
    for r in roots:
        if r in depth:
            continue
        k = links[r]
        recorded = k.version
        if k.prev == _UNREADABLE:
            found.append(Finding(stream, f"v{k.version}", "modified", "its JSON is unreadable"))
        elif k.ok:
            found.append(_removed_before(stream, links, r))
        else:  # renumbered after a removal? its own hash tells at which version it was recorded
            recorded = next(
                (v for v in range(k.version + 1, k.version + 1 + MAX_RENUMBERED) if fits(r, v)),
                k.version,
            )
            found.append(_renumbered(stream, links, depth, r, recorded))
        follow(r, recorded)
    placed = sorted(depth, key=depth.__getitem__)
    found.extend(_reordered(stream, links, placed))
    for i in placed:
        if not fits(i, depth[i]):
            found.append(
                Finding(
                    stream,
                    f"v{links[i].version}",
                    "modified",
                    "its content no longer matches its own hash",
                )
            )
    for i in sorted(set(range(n)) - depth.keys() - set(inserted)):
        inserted.append(i)  # it follows an inserted event
    for i in sorted(inserted, key=lambda i: links[i].version):
        found.append(
            Finding(stream, f"v{links[i].version}", "inserted", _intruder(links, index, i))
        )
    return found


def _intruder(links: list[Link], index: dict[str, int], i: int) -> str:
    """Why the event at `i`, off the stream's chain, is taken as inserted."""
    prev = links[i].prev
    if prev is None:
        return "not on the stream's chain: it claims to be the first event, which v1 is"
    after = index.get(prev)
    if after is None:
        return "not on the stream's chain"
    return (
        f"not on the stream's chain: its prev_hash names v{links[after].version}, which "
        "another event follows (or it follows an inserted event)"
    )


def _successor(
    kids: list[int], version: int, fits: Callable[[int, int], bool], children: dict[int, list[int]]
) -> int:
    """The event that really follows, among those naming the same predecessor: the one whose
    own hash fits the next version, then the one the rest of the chain follows, then the
    first stored."""
    if len(kids) == 1:
        return kids[0]
    return min(kids, key=lambda k: (not fits(k, version), k not in children, k))


def _removed_before(stream: str, links: list[Link], r: int) -> Finding:
    v = links[r].version
    before = links[r - 1].version if r > 0 else 0
    if v > before + 1:
        where = "the start of the stream" if before == 0 else f"the middle (v{v} follows v{before})"
        return Finding(stream, _span(before + 1, v - 1), "removed", f"missing from {where}")
    return Finding(
        stream,
        f"v{v}",
        "removed",
        "an event before it is missing (its prev_hash names no event of the stream)",
    )


def _renumbered(
    stream: str, links: list[Link], depth: dict[int, int], r: int, recorded: int
) -> Finding:
    """The event at `r` follows no event of the stream and its own hash does not fit where it
    is stored: events before it removed and the rest moved down, when its hash fits at the
    later version `recorded`; otherwise it was modified (or its prev_hash was)."""
    k = links[r]
    if recorded == k.version:
        return Finding(
            stream,
            f"v{k.version}",
            "broken",
            "its prev_hash names no event of the stream and its own hash does not fit: "
            "modified, or events before it removed and the rest renumbered",
        )
    before = depth.get(r - 1, 0) if r > 0 else 0
    return Finding(
        stream,
        _span(before + 1, recorded - 1),
        "removed",
        f"missing, and the events after them moved down (v{k.version} was recorded as v{recorded})",
    )


def _reordered(stream: str, links: list[Link], placed: list[int]) -> list[Finding]:
    """Chain events (in recorded order) stored out of that order: each one whose rank among
    them by stored version is not its rank in the chain."""
    by_stored = sorted(placed, key=lambda i: links[i].version)
    moved = [i for i, j in zip(placed, by_stored, strict=True) if i != j]
    if not moved:
        return []
    stored = sorted(links[i].version for i in moved)
    recorded = ", ".join(f"v{links[i].version}" for i in placed if i in set(moved))
    return [
        Finding(
            stream,
            _versions(stored),
            "reordered",
            f"stored out of their recorded order (recorded: {recorded}; their own hashes and "
            "links hold in that order)",
        )
    ]


def _legacy(stream: str, links: list[Link], checker: Checker) -> list[Finding]:
    """A stream with events stored before own hashes: the chain alone tells what changed."""
    versions = [k.version for k in links]
    hashes = [k.ident for k in links]
    prevs = [k.prev for k in links]
    swapped = _swap(stream, links, checker)
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
    if all(k.ok for k in links) and _links_hold(prevs, hashes, versions):
        return []
    return _links(stream, versions, hashes, prevs)


def _links_hold(prevs: list[str | None], hashes: list[str], versions: list[int]) -> bool:
    if versions[0] != 1 or prevs[0] is not None:
        return False
    return all(
        versions[i] == versions[i - 1] + 1 and prevs[i] == hashes[i - 1]
        for i in range(1, len(versions))
    )


def _links(
    stream: str, versions: list[int], hashes: list[str], prevs: list[str | None]
) -> list[Finding]:
    found: list[Finding] = []
    n = len(versions)
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


def _swap(stream: str, links: list[Link], checker: Checker) -> tuple[int, int] | None:
    """(a, b) when exchanging the versions of the events at a and b makes the chain whole.
    Only events whose link is broken are tried (an event no other one follows, or one that
    follows no event): two for a swap, at any stream length."""
    n = len(links)
    if n < 2 or [k.version for k in links] != list(range(1, n + 1)):
        return None
    followed = {k.prev for k in links}
    idents = {k.ident for k in links}
    suspects = [
        i
        for i, k in enumerate(links)
        if (k.ident not in followed and i < n - 1)
        or (k.prev is not None and k.prev not in idents)
        or (k.prev is None and i > 0)
        or not k.ok
    ]
    if len(suspects) > MAX_SWAP_SUSPECTS:
        return None
    if n - 1 not in suspects:
        suspects.append(n - 1)  # the last event is followed by none: always a candidate

    def at(i: int, version: int) -> Link:
        k = links[i]
        state = k.body if k.own is None else with_own_hash(k.body, k.own)
        return Checker(checker.key).link(stream, version, k.topic, state)

    for x, a in enumerate(suspects):
        for b in suspects[x + 1 :]:
            order = list(links)
            order[a], order[b] = at(b, a + 1), at(a, b + 1)
            order = [k._replace(version=v) for v, k in enumerate(order, start=1)]
            if _intact(order):
                return min(a, b) + 1, max(a, b) + 1
    return None


# --- the whole store ---------------------------------------------------------------------------


def streams(rows: Iterable[StreamRow]) -> Iterator[tuple[str, list[StreamRow]]]:
    """Rows in stream order, grouped: one stream's rows at a time."""
    for stream, group in groupby(rows, key=itemgetter(0)):
        yield stream, list(group)


def _scan(
    stream: str, group: list[StreamRow], at: int, checker: Checker
) -> tuple[bool, Summary | None]:
    """One pass over a stream: does it hold (its chain, each own hash, no hash weaker than one
    before it), and its summary at position `at`. `Checker.link`'s work, inlined, with the
    hashes as bytes: one hash an event, as before own hashes (the analysis of a stream that
    does not hold is `_findings`)."""
    key = checker.key
    intact, expected_version, expected_prev = True, 1, b""  # b"": JSON null
    own_seen = keyed_seen = False
    count, head = 0, b""
    without = unchecked = unkeyed = authenticated = refuted = 0
    for _, version, topic, state, position in group:
        if state.__class__ is not bytes:
            state = _bytes(state)
        # the usual case: an unkeyed own hash ending the JSON, `,"hash":"<64 hex>"}`
        if key is None and state[-75:-66] == _OWN and state[-1] == 125 and state[-2] == 34:
            ident, body = state[-66:-2], state[:-75] + b"}"
            ok = event_hash(stream, version, topic, body).encode() == ident
            own_seen = True
        else:
            body, own = split_own_hash(state)
            if own is None:
                without += 1
                ident, ok = event_hash(stream, version, topic, body).encode(), not own_seen
            else:
                own_seen, ident = True, own.encode()
                if not is_keyed(own):
                    ok = event_hash(stream, version, topic, body) == own
                    if key is not None:
                        unkeyed += 1
                        ok = ok and not keyed_seen
                elif key is None:
                    keyed_seen, ok = True, True
                    unchecked += 1
                else:
                    keyed_seen = True
                    ok = event_hash(stream, version, topic, body, key) == own
                    authenticated, refuted = authenticated + ok, refuted + (not ok)
        if intact:  # does it claim `"prev_hash":"<expected_prev>"` (or null) as written?
            at_prev = body.find(_KEY) + 12  # 11: not found
            if expected_prev:
                end = at_prev + 1 + len(expected_prev)
                intact = body[at_prev + 1 : end] == expected_prev and at_prev != 11
                intact = intact and body[at_prev] == 34 and len(body) > end and body[end] == 34
            else:
                intact = at_prev != 11 and body[at_prev : at_prev + 5] in _NULLS
            intact = intact and ok and version == expected_version
        expected_version, expected_prev = version + 1, ident
        if position <= at:
            count, head = count + 1, ident
    checker.without_own += without
    checker.unchecked += unchecked
    checker.unkeyed += unkeyed
    checker.authenticated += authenticated
    checker.refuted += refuted
    return intact, Summary(stream, count, head.decode("latin-1")) if count else None


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
    key: bytes | None = None,
    log: Sequence[SealEntry] = (),
) -> VerifyReport:
    """Check every chain in `rows` (the store by stream), and each event's own hash (under the
    audit `key` when its hash is keyed); with `seal`, compare the streams at the seal's
    position with it (and, with its `manifest`, name each difference), and with the seal
    `log`'s entries, each of their seals. Without a seal, `position` is where the report's
    own seal (`report.sealed`) is taken."""
    at = seal.position if seal else position
    report = VerifyReport(seal=seal)
    checker = Checker(key)
    logged = [(entry, _Digest(Seal.parse(entry.seal).position)) for entry in log]
    digest = _Digest(at)
    compare = _Compare(manifest, report.findings) if manifest is not None else None
    for stream, group in streams(rows):
        report.streams += 1
        report.events += len(group)
        intact, s = _scan(stream, group, at, checker)
        if not intact or logged:
            analysis = Checker(key)  # its counts are the scan's, already taken
            links = [analysis.link(stream, v, topic, _bytes(st)) for _, v, topic, st, _ in group]
            if not intact:
                report.findings.extend(_findings(stream, links, analysis))
            for _, past in logged:
                _add_at(past, stream, links, group)
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
    report.without_own, report.unchecked = checker.without_own, checker.unchecked
    report.unkeyed, report.keyed = checker.unkeyed, key is not None
    if key is not None and checker.refuted and not checker.authenticated:
        report.findings.insert(0, _wrong_key(checker.refuted))
    report.sealed = digest.seal()
    if seal and report.sealed != seal and (compare is None or not compare.named):
        report.findings.append(_seal_mismatch(seal, report.sealed))
    for entry, past in logged:
        if str(past.seal()) != entry.seal:
            mismatch = _seal_mismatch(Seal.parse(entry.seal), past.seal())
            report.findings.append(
                mismatch._replace(detail=f"seal #{entry.number} of the log {mismatch.detail}")
            )
    report.seals = len(log)
    return report


def _add_at(digest: _Digest, stream: str, links: list[Link], group: list[StreamRow]) -> None:
    """Add a stream's summary at the digest's position (the rows at or before it)."""
    count, head = 0, ""
    for link, row in zip(links, group, strict=True):
        if row[4] <= digest.position:
            count, head = count + 1, link.ident
    if count:
        digest.add(Summary(stream, count, head))


def _wrong_key(refuted: int) -> Finding:
    return Finding(
        "store",
        "",
        "key",
        f"none of the {refuted} keyed events authenticates under this DEALENGINE_AUDIT_KEY: "
        "the wrong key, or every event rewritten (each is listed below)",
    )


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


# --- the seal log ----------------------------------------------------------------------------


class SealEntry(NamedTuple):
    """One entry of the seal log: the seal taken at `sealed_at`, chained to the entry before
    it by `prev` (its digest; "" for the first). `digest` is the hash rule of domain/chain.py
    (keyed under DEALENGINE_AUDIT_KEY when there is one) over
    "dealengine-seal-log-v1\\n{number}\\n{sealed_at}\\n{seal}\\n{prev}\\n"."""

    number: int
    sealed_at: str
    seal: str
    prev: str
    digest: str

    @staticmethod
    def content(number: int, sealed_at: str, seal: str, prev: str) -> bytes:
        return f"{SEAL_LOG_PREFIX}\n{number}\n{sealed_at}\n{seal}\n{prev}\n".encode()

    @classmethod
    def after(
        cls, last: SealEntry | None, seal: Seal, sealed_at: str, key: bytes | None
    ) -> SealEntry:
        """The entry that records `seal` after `last` (None: the log's first)."""
        number, prev = (last.number + 1, last.digest) if last else (1, "")
        own = record_hash(cls.content(number, sealed_at, str(seal), prev), key)
        return cls(number, sealed_at, str(seal), prev, own)


def check_seal_log(
    entries: Sequence[SealEntry], key: bytes | None, kept: Seal | None = None
) -> tuple[list[Finding], list[SealEntry], int]:
    """The findings of the seal log's own chain (and, given the seal `kept` outside, whether
    the log still has it), the entries whose seals can be checked against the store, and how
    many keyed entries could not be checked (no key)."""
    found: list[Finding] = []
    usable: list[SealEntry] = []
    unchecked, keyed_seen = 0, False
    before: SealEntry | None = None
    for entry in entries:
        where, expected = f"#{entry.number}", before.number + 1 if before else 1
        if entry.number > expected:
            found.append(
                Finding(
                    SEAL_LOG,
                    f"#{expected}"
                    if entry.number == expected + 1
                    else f"#{expected}..#{entry.number - 1}",
                    "removed",
                    f"missing from the log ({where} follows #{expected - 1})",
                )
            )
        elif entry.prev != (before.digest if before else ""):
            found.append(
                Finding(
                    SEAL_LOG,
                    where,
                    "broken",
                    f"its prev does not match #{expected - 1}'s digest: #{expected - 1} "
                    f"modified, or {where} inserted",
                )
            )
        content = SealEntry.content(entry.number, entry.sealed_at, entry.seal, entry.prev)
        keyed = is_keyed(entry.digest)
        if keyed and key is None:
            unchecked += 1
            fits = True
        else:
            fits = record_hash(content, key if keyed else None) == entry.digest
        if not keyed and keyed_seen and key is not None:
            found.append(
                Finding(
                    SEAL_LOG,
                    where,
                    "modified",
                    "its digest is not keyed, after keyed ones: rewritten without the key",
                )
            )
        keyed_seen = keyed_seen or keyed
        if fits:
            try:
                Seal.parse(entry.seal)
                usable.append(entry)
            except DealEngineError:
                fits = False
        if not fits:
            found.append(
                Finding(SEAL_LOG, where, "modified", "its content no longer matches its digest")
            )
        before = entry
    if kept is not None and str(kept) not in {entry.seal for entry in entries}:
        found.append(
            Finding(
                SEAL_LOG,
                "",
                "removed",
                f"the seal kept outside ({kept}) is not in the log: entries removed, or the "
                "log rewritten",
            )
        )
    return found, usable, unchecked


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
