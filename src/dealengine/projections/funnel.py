"""The funnel: every lead from first awareness to purchase (definition: projections/funnel.toml).

The fold collects, per lead, the facts every counting mode needs (the earliest time of each
step; in `ordered` and `strict` modes every step event; excluded events; attribution touches);
`report()` applies the mode, windows, exclusions, breakdowns and cohorts. A deal's events count
for the lead it was opened from. The rules are written down in docs/funnel-semantics.md.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from pydantic import BaseModel

from dealengine.domain.definitions import FunnelDefinition
from dealengine.domain.events import EVENT_TYPES
from dealengine.projections.stream import StreamEvent

UNKNOWN = "unknown"
HISTOGRAM_DAYS = (0, 1, 3, 7, 14, 30, 60, 90)


class FunnelStepView(BaseModel):
    name: str
    leads: int
    conversion_from_previous: float | None
    conversion_from_first: float | None
    drop_off: int  # leads at the previous step that did not reach this one


class FunnelBreakdown(BaseModel):
    steps: list[FunnelStepView]


class HistogramBucket(BaseModel):
    label: str  # "3-7d": at least 3 and less than 7 days
    leads: int


class ConversionTime(BaseModel):
    """Time from one step to a later one, over the leads that reached both (in order)."""

    from_step: str
    to_step: str
    leads: int
    median_days: float | None
    mean_days: float | None
    p90_days: float | None
    histogram: list[HistogramBucket]


class FunnelView(FunnelBreakdown):
    mode: str
    conversion_window_days: float | None  # None in `reached` mode: no window applies
    as_of: datetime | None
    leads: int
    excluded_leads: int
    by_channel: dict[str, FunnelBreakdown]
    breakdowns: dict[str, dict[str, FunnelBreakdown]]
    cohorts: dict[str, FunnelBreakdown]  # entry period -> that cohort's funnel
    time_to_convert: list[ConversionTime]


@dataclass(slots=True)
class FunnelState:
    """What the fold keeps per lead: it grows with leads, and with step events only in the
    ordered modes (they need each lead's sequence)."""

    earliest: dict[str, list[str | None]] = field(default_factory=dict)  # lead -> time per step
    sequence: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # (time, step)
    excluded: dict[str, list[str]] = field(default_factory=dict)  # lead -> excluded event times
    touches: dict[str, dict[str, tuple[str, str]]] = field(
        default_factory=dict
    )  # f -> lead -> (t, v)
    lead_of_deal: dict[str, str] = field(default_factory=dict)  # deal stream -> lead id


@dataclass(slots=True)
class LeadPath:
    """One lead's counted path: the furthest step and the time it reached each step."""

    furthest: int
    times: list[str | None]


class FunnelProjection:
    def __init__(self, definition: FunnelDefinition) -> None:
        self.definition = definition
        self.step_of = definition.step_of_event
        self.steps = len(definition.steps)
        self.keep_sequence = definition.mode != "reached"
        self.exclusions = frozenset(definition.exclusions)
        self.first_touch = definition.attribution == "first_touch"
        self.fields = tuple(dict.fromkeys(("channel", *definition.breakdowns)))
        # the event types that can carry a breakdown field: the others skip that loop
        self.touch_types = frozenset(
            name
            for name, cls in EVENT_TYPES.items()
            if any(f in cls.model_fields for f in self.fields)
        )

    def initial(self) -> FunnelState:
        state = FunnelState()
        state.touches = {f: {} for f in self.fields}
        return state

    def apply(self, view: FunnelState, event: StreamEvent) -> None:
        stream, data = event.stream, event.data
        if stream[0] == "d":
            if event.type == "deal_opened" and data.get("lead_id"):
                view.lead_of_deal[stream] = data["lead_id"]
            lead = view.lead_of_deal.get(stream)
            if lead is None:
                return
        else:
            lead = stream[5:]
        at = data["occurred_at"]  # fixed-width UTC: string order is time order
        step = self.step_of.get(event.type)
        if step is not None:
            times = view.earliest.get(lead)
            if times is None:
                times = view.earliest[lead] = [None] * self.steps
            seen = times[step]
            if seen is None or at < seen:
                times[step] = at
            if self.keep_sequence:
                view.sequence.setdefault(lead, []).append((at, step))
        if self.exclusions and event.type in self.exclusions:
            view.excluded.setdefault(lead, []).append(at)
        if event.type not in self.touch_types:
            return
        for name in self.fields:
            value = data.get(name)
            if value is not None:
                touches = view.touches[name]
                seen_touch = touches.get(lead)
                if seen_touch is None or (
                    at < seen_touch[0] if self.first_touch else at >= seen_touch[0]
                ):
                    touches[lead] = (at, str(value))

    # --- the report: modes, windows, exclusions, breakdowns, cohorts, time to convert ---------

    def report(self, view: FunnelState, as_of: datetime | None = None) -> FunnelView:
        d = self.definition
        paths: dict[str, LeadPath] = {}
        excluded = 0
        for lead, earliest in view.earliest.items():
            path = self.path(earliest, view.sequence.get(lead, []))
            if path is None:
                continue
            excluded_at = view.excluded.get(lead)
            if excluded_at and self._excluded(path, excluded_at):
                excluded += 1
                continue
            paths[lead] = path
        overall = self._counts(paths.values())
        breakdowns = {
            name: self._grouped(paths, partial(_value, view.touches[name])) for name in self.fields
        }
        cohorts = self._grouped(paths, lambda lead: _period(_entry(paths[lead]), d.cohort))
        return FunnelView(
            mode=d.mode,
            conversion_window_days=None if d.mode == "reached" else d.conversion_window_days,
            as_of=as_of,
            leads=overall[0] if self.steps else 0,
            excluded_leads=excluded,
            steps=self._steps(overall),
            by_channel=breakdowns["channel"],
            breakdowns={k: v for k, v in breakdowns.items() if k != "channel"},
            cohorts=dict(sorted(cohorts.items())),
            time_to_convert=self._conversion_times(paths.values()),
        )

    def path(self, earliest: list[str | None], sequence: list[tuple[str, int]]) -> LeadPath | None:
        """The lead's counted path under the definition's mode (None: never entered)."""
        if self.definition.mode == "reached":
            reached = [k for k, t in enumerate(earliest) if t is not None]
            return LeadPath(max(reached), list(earliest)) if reached else None
        return self._ordered_path(sorted(sequence))

    def _ordered_path(self, events: list[tuple[str, int]]) -> LeadPath | None:
        """The furthest path over all entries (each step-1 event starts one), steps in order,
        each within the conversion window of its entry and its own step window."""
        d = self.definition
        window = timedelta(days=d.conversion_window_days)
        step_windows = [
            timedelta(days=s.within_days) if s.within_days is not None else None for s in d.steps
        ]
        best: LeadPath | None = None
        for i, (entry_at, step) in enumerate(events):
            if step != 0:
                continue
            entry = _parse(entry_at)
            times: list[str | None] = [entry_at] + [None] * (self.steps - 1)
            k, last = 0, entry
            for at, s in events[i + 1 :]:
                t = _parse(at)
                if t - entry > window:
                    break
                if s == k + 1:
                    limit = step_windows[s]
                    if limit is not None and t - last > limit:
                        if d.mode == "strict":
                            break
                        continue
                    k, last, times[s] = s, t, at
                    if k == self.steps - 1:
                        break
                elif d.mode == "strict" and s != k:
                    break  # an event of another step in between ends a strict attempt
            if best is None or k > best.furthest:
                best = LeadPath(k, times)
        return best

    def _excluded(self, path: LeadPath, excluded_at: Iterable[str]) -> bool:
        entry = _entry(path)
        end = None
        if self.definition.mode != "reached":
            end = _format(_parse(entry) + timedelta(days=self.definition.conversion_window_days))
        return any(entry <= t and (end is None or t <= end) for t in excluded_at)

    def _counts(self, paths: Iterable[LeadPath]) -> list[int]:
        counts = [0] * self.steps
        for path in paths:
            for k in range(path.furthest + 1):
                counts[k] += 1
        return counts

    def _grouped(
        self, paths: dict[str, LeadPath], key: Callable[[str], str]
    ) -> dict[str, FunnelBreakdown]:
        groups: dict[str, list[LeadPath]] = defaultdict(list)
        for lead, path in paths.items():
            groups[key(lead)].append(path)
        return {
            g: FunnelBreakdown(steps=self._steps(self._counts(groups[g]))) for g in sorted(groups)
        }

    def _steps(self, counts: list[int]) -> list[FunnelStepView]:
        steps = []
        for k, name in enumerate(self.definition.names):
            previous = counts[k - 1] if k else counts[0]
            steps.append(
                FunnelStepView(
                    name=name,
                    leads=counts[k],
                    conversion_from_previous=_ratio(counts[k], previous),
                    conversion_from_first=_ratio(counts[k], counts[0]),
                    drop_off=previous - counts[k],
                )
            )
        return steps

    def _conversion_times(self, paths: Iterable[LeadPath]) -> list[ConversionTime]:
        names = self.definition.names
        pairs = [(k, k + 1) for k in range(self.steps - 1)]
        if self.steps > 2:
            pairs.append((0, self.steps - 1))
        days: list[list[float | None]] = [[] for _ in pairs]
        for path in paths:
            seconds = [_seconds(t) if t is not None else None for t in path.times]  # parse once
            for i, (a, b) in enumerate(pairs):
                start, end = seconds[a], seconds[b]
                if path.furthest >= b and start is not None and end is not None:
                    days[i].append((end - start) / 86400)
        return [conversion_time(names[a], names[b], days[i]) for i, (a, b) in enumerate(pairs)]


def conversion_time(from_step: str, to_step: str, days: list[float | None]) -> ConversionTime:
    """Median, mean, p90 and a histogram of the durations that exist and are not negative."""
    values = sorted(d for d in days if d is not None and d >= 0)
    edges = HISTOGRAM_DAYS
    buckets = [0] * len(edges)
    for v in values:
        buckets[max(i for i, e in enumerate(edges) if v >= e)] += 1
    labels = [f"{a}-{b}d" for a, b in itertools.pairwise(edges)] + [f"{edges[-1]}d+"]
    return ConversionTime(
        from_step=from_step,
        to_step=to_step,
        leads=len(values),
        median_days=statistics.median(values) if values else None,
        mean_days=statistics.fmean(values) if values else None,
        p90_days=percentile(values, 0.9) if values else None,
        histogram=[
            HistogramBucket(label=lb, leads=n) for lb, n in zip(labels, buckets, strict=True)
        ],
    )


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    position = (len(sorted_values) - 1) * q
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _seconds(at: str) -> float:
    return _parse(at).timestamp()


def _entry(path: LeadPath) -> str:
    """When the lead entered: its step-1 time, or its earliest step when it skipped step 1."""
    return path.times[0] or min(t for t in path.times if t is not None)


def _period(at: str, cohort: str) -> str:
    if cohort == "month":
        return at[:7]
    year, week, _ = _parse(at).isocalendar()
    return f"{year}-W{week:02d}"


def _value(touches: dict[str, tuple[str, str]], lead: str) -> str:
    touch = touches.get(lead)
    return touch[1] if touch else UNKNOWN


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at)


def _format(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None
