"""The funnel: every lead from first awareness to purchase (definition: projections/funnel.toml).

The fold collects, per lead, the facts every counting mode needs (the earliest time of each
step; in `ordered` and `strict` modes every step event; excluded events; attribution touches);
`report()` applies the mode, windows, exclusions, breakdowns and cohorts. A deal's events count
for the lead it was opened from. The rules are written down in docs/funnel-semantics.md.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel

from dealengine.domain.catalogue import BUILT_IN, Interactions
from dealengine.domain.definitions import FunnelDefinition
from dealengine.domain.events import LeadForgotten, format_utc
from dealengine.domain.personal import personal_fields
from dealengine.domain.streams import DEAL_MARK, ID_START, lead_stream
from dealengine.domain.values import LATEST, shifted
from dealengine.projections.stream import StreamEvent

UNKNOWN = "unknown"
NO_TOUCH = ("", UNKNOWN)  # (time, value) of a lead without a touch of some field
# what a lead adds to the funnel: (furthest step, cohort, *group values), or EXCLUDED
Combination = tuple[Any, ...]
EXCLUDED: Combination = ("excluded",)
Keep = Callable[[str], bool]  # whether a lead is selected
_new = tuple.__new__  # a named tuple made without its slower __new__


def in_partition(stream: str, partition: tuple[int, int]) -> bool:
    """Whether a stream is in partition i of n: its id's last character, modulo n (what the
    recorders' `stream(part=...)` selects in SQL)."""
    i, n = partition
    return ord(stream[-1]) % n == i


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


def kept(per: str) -> dict[str, Any]:
    """How the funnel's state keeps a field: a dict keyed `per` lead, per touch field then
    lead, or per deal."""
    return {"per": per}


@dataclass(slots=True)
class FunnelState:
    """What the fold keeps per lead: it grows with leads, and with step events only in the
    ordered modes (they need each lead's sequence). A lead's sequence is kept from the first
    time one of its steps repeats: until then its step events are its earliest times, one per
    step (`_one_per_step`). A lead's part of every field is copied by `copy_lead`, from the
    fields' declarations."""

    # lead -> its earliest time at each step
    earliest: dict[str, list[str | None]] = field(default_factory=dict, metadata=kept("lead"))
    # lead -> its step events, (time, step), once a step repeats
    sequence: dict[str, list[tuple[str, int]]] = field(default_factory=dict, metadata=kept("lead"))
    # lead -> the times of its excluded events
    excluded: dict[str, list[str]] = field(default_factory=dict, metadata=kept("lead"))
    # touch field -> lead -> (time, value) of its attributed touch
    touches: dict[str, dict[str, tuple[str, str]]] = field(
        default_factory=dict, metadata=kept("touch")
    )
    # deal stream -> its lead's id: the deal's, not its lead's (see `Overlay`, `FunnelAdapter`)
    lead_of_deal: dict[str, str] = field(default_factory=dict, metadata=kept("deal"))

    def copy_lead(self, lead: str, into: FunnelState) -> None:
        """Copy what this state holds of `lead` into `into` (its deals' links are the deals')."""
        for name, per in _fields_of(type(self)):
            mine, theirs = getattr(self, name), getattr(into, name)
            if per == "lead" and lead in mine:
                theirs[lead] = _copied(mine[lead])
            elif per == "touch":
                for touch_field, of_leads in mine.items():
                    if lead in of_leads:
                        theirs.setdefault(touch_field, {})[lead] = _copied(of_leads[lead])


def _fields_of(kind: type[FunnelState]) -> list[tuple[str, str]]:
    """Each field of a kind of funnel state: its name and what it is keyed per (remembered
    per kind: a what-if copies thousands of leads)."""
    found = _FIELDS.get(kind)
    if found is None:
        found = _FIELDS[kind] = [(f.name, f.metadata["per"]) for f in fields(kind)]
    return found


_FIELDS: dict[type, list[tuple[str, str]]] = {}


def _copied(value: Any) -> Any:
    """A value of a lead's state that the fold will not change in the original: a list is
    copied (its items are times, tuples, never changed in place)."""
    return value.copy() if isinstance(value, list) else value


class LeadPath(NamedTuple):
    """One lead's counted path: the furthest step and the time it reached each step."""

    furthest: int
    times: list[str | None]


@dataclass(slots=True)
class FunnelTotals:
    """What a set of leads adds to the funnel report; the totals of disjoint sets of leads
    add up (a rebuild split over processes sums them)."""

    combinations: dict[tuple[Any, ...], int]  # (furthest step, cohort, *group values) -> leads
    days: list[list[float]]  # [k]: days from step k to k+1; [steps-1]: first to last step
    excluded: int

    @classmethod
    def none(cls, steps: int) -> FunnelTotals:
        """The totals of no leads."""
        return cls({}, [[] for _ in range(steps)], 0)

    def add(self, other: FunnelTotals) -> None:
        """Add the totals of a disjoint set of leads."""
        for key, leads in other.combinations.items():
            self.combinations[key] = self.combinations.get(key, 0) + leads
        for mine, theirs in zip(self.days, other.days, strict=True):
            mine.extend(theirs)
        self.excluded += other.excluded


class FunnelProjection:
    # what `apply` reads of the definition (through the plan `__init__` makes of it): two
    # definitions alike in these fold the same state, but for the sequences the ordered modes
    # keep; the mode, the windows, the cohort and the step names are read by the reports
    FOLDED: ClassVar[dict[str, Any]] = {
        "steps": {"__all__": {"events"}},
        "exclusions": True,
        "attribution": True,
        "breakdowns": True,
    }

    def __init__(
        self,
        definition: FunnelDefinition,
        partition: tuple[int, int] | None = None,
        interactions: Interactions = BUILT_IN,
    ) -> None:
        """`partition=(i, n)`: this fold counts the leads of partition i of n only (those
        whose stream id's last character has a code point equal to i modulo n: see
        `in_partition`); it is given their events and the events of every deal."""
        self.definition = definition
        self.partition = partition
        self.step_of = definition.step_of_event
        self.steps = len(definition.steps)
        self.keep_sequence = definition.mode != "reached"
        self.exclusions = frozenset(definition.exclusions)
        self.first_touch = definition.attribution == "first_touch"
        self.fields = tuple(dict.fromkeys(("channel", *definition.breakdowns)))
        # per event type: its step (or None), whether it is excluded, the touch fields it has
        self.plan: dict[str, tuple[int | None, bool, tuple[str, ...]]] = {
            name: (
                self.step_of.get(name),
                name in self.exclusions,
                tuple(f for f in self.fields if f in cls.model_fields and f not in personal),
            )
            for name, cls in interactions.types.items()
            for personal in [personal_fields(cls)]  # sealed values: never a breakdown's group
        }
        self.plan[LeadForgotten.event_type] = (None, False, ())  # an erasure: counts nowhere
        # what `apply` reads of an event besides its type and stream
        self.event_fields = ("occurred_at", "lead_id", *self.fields)
        # what the pass hands this fold: deal_opened links a deal to its lead
        self.event_types = frozenset(
            name
            for name, (step, excluded, touch) in self.plan.items()
            if step is not None or excluded or touch or name == "deal_opened"
        )

    @property
    def fold_key(self) -> str:
        """Equal for two funnels whose `apply` builds the same state from the same events."""
        return self.definition.model_dump_json(include=self.FOLDED)

    def initial(self) -> FunnelState:
        state = FunnelState()
        state.touches = {f: {} for f in self.fields}
        return state

    def apply(self, view: FunnelState, event: StreamEvent) -> None:
        _, stream, event_type, data = event
        if stream[0] == DEAL_MARK:
            if event_type == "deal_opened" and data.get("lead_id"):
                lead = data["lead_id"]
                if self.partition is None or in_partition(lead_stream(lead), self.partition):
                    view.lead_of_deal[stream] = lead
            lead = view.lead_of_deal.get(stream)
            if lead is None:
                return
        else:
            lead = stream[ID_START:]
        at = data["occurred_at"]  # fixed-width UTC: string order is time order
        step, excluded, touch = self.plan[event_type]
        if step is not None:
            times = view.earliest.get(lead)
            if times is None:
                times = view.earliest[lead] = [None] * self.steps
                times[step] = at
            else:
                seen = times[step]
                if self.keep_sequence:
                    events = view.sequence.get(lead)
                    if events is not None:
                        events.append((at, step))
                    elif seen is not None:  # a step repeats: its events are kept from now on
                        view.sequence[lead] = [*_one_per_step(times), (at, step)]
                if seen is None or at < seen:
                    times[step] = at
        if excluded:
            view.excluded.setdefault(lead, []).append(at)
        for name in touch:
            value = data.get(name)
            if value is not None:
                touches = view.touches[name]
                seen_touch = touches.get(lead)
                if seen_touch is None or (
                    at < seen_touch[0] if self.first_touch else at >= seen_touch[0]
                ):
                    touches[lead] = (at, str(value))

    def folds_alike(self, recorded: StreamEvent, event: StreamEvent) -> bool:
        """Whether `apply` reads the same of both events."""
        if event is recorded:
            return True
        a, b = recorded.data, event.data
        return (
            recorded.type == event.type
            and recorded.stream == event.stream
            and all(a.get(name) == b.get(name) for name in self.event_fields)
        )

    # --- the report: modes, windows, exclusions, breakdowns, cohorts, time to convert ---------

    def report(self, view: FunnelState, as_of: datetime | None = None) -> FunnelView:
        return self.assemble([self.summarise(view)], as_of)

    def summarise(self, view: FunnelState, keep: Keep | None = None) -> FunnelTotals:
        """One pass over the leads (those `keep` keeps): each lead's path, counted once per
        combination of its furthest step, cohort and group values, and its times between
        steps."""
        return self.summarise_each(view, [keep])[0]

    def summarise_each(
        self,
        view: FunnelState,
        keeps: Sequence[Keep | None],
        *,
        unsure: Container[str] | None = None,
    ) -> list[FunnelTotals]:
        """`[summarise(view, keep) for keep in keeps]` in one pass: a lead's path is worked
        out once for every selection that keeps it. `unsure`: every keep keeps every lead
        outside it (they are asked about the leads in it only)."""
        every = [FunnelTotals.none(self.steps) for _ in keeps]
        selective = any(keep is not None for keep in keeps)
        pairs = list(zip(every, keeps, strict=True))
        # the leads outside `unsure` count for every selection: summed once, added at the end
        shared = FunnelTotals.none(self.steps)
        takers, shared_only = every, [shared]
        for lead, key, times in self.counted(view, view.earliest.items()):
            if selective:
                if unsure is not None and lead not in unsure:
                    takers = shared_only
                else:
                    takers = [t for t, keep in pairs if keep is None or keep(lead)]
                    if not takers:
                        continue
            if key is EXCLUDED:
                for totals in takers:
                    totals.excluded += 1
                continue
            k = key[0]
            spans = _days_between(times, k) if k else ()
            for totals in takers:
                totals.combinations[key] = totals.combinations.get(key, 0) + 1
                for a, span in spans:
                    totals.days[a].append(span)
        for totals in every:
            totals.add(shared)
            for (
                days
            ) in totals.days:  # sorted where the leads are (in parallel): see conversion_time
                days.sort()
        return every

    def counted(
        self, view: FunnelState, leads: Iterable[tuple[str, list[str | None]]]
    ) -> Iterator[tuple[str, Combination, list[str | None]]]:
        """Each of `leads` (`(lead, earliest)`) that entered, as it counts: its combination
        (furthest step, cohort, the value of each group's attributed touch) or EXCLUDED, and
        the time it reached each step."""
        touches = [view.touches[name] for name in self.fields]
        period = _period_memo(self.definition.cohort)
        excluded_at = view.excluded
        for lead, k, times in self.paths(leads, view.sequence):
            if excluded_at and lead in excluded_at and self.excludes(times, excluded_at[lead]):
                yield lead, EXCLUDED, times
            else:
                yield (
                    lead,
                    (k, period(entered_at(times)), *[by.get(lead, NO_TOUCH)[1] for by in touches]),
                    times,
                )

    def assemble(self, parts: Iterable[FunnelTotals], as_of: datetime | None = None) -> FunnelView:
        """The funnel view from the totals of disjoint sets of leads: a lead counts at every
        step up to its furthest; the combinations (a few hundred) are summed per group."""
        d, n = self.definition, self.steps
        overall = [0] * n
        cohorts: dict[str, list[int]] = defaultdict(lambda: [0] * n)
        groups: list[dict[str, list[int]]] = [defaultdict(lambda: [0] * n) for _ in self.fields]
        days: list[list[float]] = [[] for _ in range(n)]
        excluded = 0
        for part in parts:
            excluded += part.excluded
            for (step, cohort, *values), leads in part.combinations.items():
                overall[step] += leads
                cohorts[cohort][step] += leads
                for by, value in zip(groups, values, strict=True):
                    by[value][step] += leads
            for mine, theirs in zip(days, part.days, strict=True):
                mine.extend(theirs)
        breakdowns = {
            name: self._breakdown(by) for name, by in zip(self.fields, groups, strict=True)
        }
        reached = _at_least(overall)
        names = d.names
        pairs = [(k, k + 1) for k in range(n - 1)] + ([(0, n - 1)] if n > 2 else [])
        return FunnelView(
            mode=d.mode,
            conversion_window_days=None if d.mode == "reached" else d.conversion_window_days,
            as_of=as_of,
            leads=reached[0] if n else 0,
            excluded_leads=excluded,
            steps=self.step_views(reached),
            by_channel=breakdowns["channel"],
            breakdowns={k: v for k, v in breakdowns.items() if k != "channel"},
            cohorts=self._breakdown(cohorts),
            time_to_convert=[
                conversion_time(names[a], names[b], days[a if b == a + 1 else n - 1])
                for a, b in pairs
            ],
        )

    def _breakdown(self, furthest: dict[str, list[int]]) -> dict[str, FunnelBreakdown]:
        """Per group: from how many leads stopped at each step to how many reached it."""
        return {
            g: FunnelBreakdown(steps=self.step_views(_at_least(furthest[g])))
            for g in sorted(furthest)
        }

    def path(
        self, earliest: list[str | None], sequence: list[tuple[str, int]] | None = None
    ) -> LeadPath | None:
        """One lead's counted path (None: it never entered): `paths` for one lead."""
        sequences = {"": sequence} if sequence is not None else {}
        for _, furthest, times in self.paths([("", earliest)], sequences):
            return _new(LeadPath, (furthest, times))
        return None

    @cached_property
    def paths(self) -> PathRule:
        """`paths(leads, sequences)`: `(lead, furthest step, times)`, the counted path under
        the definition's mode of each lead that entered, from its earliest times (`leads`:
        `(lead, earliest)`) and its step events (`sequences`: only the leads whose events
        were kept; the others had one event per step). The one implementation of the
        reached, ordered and strict rules, made once per funnel with its windows bound; a
        generator over the leads, as it runs for every lead in every summary. The times are
        not to be changed (in reached mode they are the lead's earliest times)."""
        if not self.keep_sequence:
            return _reached_paths
        window_end, step_ends = self._window_ends
        limited = step_ends if any(step_ends) else None
        strict, last = self.definition.mode == "strict", self.steps - 1
        unreached = (None,) * last

        def ordered_paths(
            leads: Iterable[tuple[str, list[str | None]]],
            sequences: Mapping[str, list[tuple[str, int]]],
        ) -> Iterator[tuple[str, int, list[str | None]]]:
            """The furthest path over all entries (each step-1 event starts one; the earliest
            of equally far ones), steps in order, each within the conversion window of its
            entry and its own step window. Without step windows (ordered mode), an attempt
            its window did not cut goes at least as far as any later one (the later entries'
            events are a part of its own): the later ones are not tried."""
            for lead, earliest in leads:
                sequence = sequences.get(lead)
                events = sorted(sequence) if sequence is not None else _one_per_step(earliest)
                best: tuple[str, int, list[str | None]] | None = None
                for after, (entry_at, step) in enumerate(events, 1):
                    if step:
                        continue
                    times: list[str | None] = [entry_at, *unreached]
                    k, cut = 0, False
                    if after < len(events):  # the limits as fixed-width times: events compare
                        end = window_end(entry_at)  # as strings
                        next_by = _limit(entry_at, limited, 1) if limited else None
                        for at, s in itertools.islice(events, after, None):
                            if at > end:
                                cut = True
                                break
                            if s == k + 1:
                                if next_by is not None and at > next_by:
                                    if strict:
                                        break
                                    continue
                                k, times[s] = s, at
                                if k == last:
                                    break
                                if limited:
                                    next_by = _limit(at, limited, k + 1)
                            elif strict and s != k:
                                break  # an event of another step in between ends the attempt
                    if best is None or k > best[1]:
                        best = (lead, k, times)
                    if k == last or not (cut or strict or limited):
                        break
                if best is not None:
                    yield best

        return ordered_paths

    @cached_property
    def _window_ends(self) -> tuple[Later, list[Later | None]]:
        """For the ordered modes: the end of the conversion window of an entry at a time, and
        of each step's own window (None: no window of its own)."""
        d = self.definition
        steps = [later_by(s.within_days) if s.within_days is not None else None for s in d.steps]
        return later_by(d.conversion_window_days), steps

    def excludes(self, times: list[str | None], excluded_at: Iterable[str]) -> bool:
        """Whether the lead with this path has an excluded event after its entry (in the
        ordered modes: inside the conversion window of its entry)."""
        entry = entered_at(times)
        end = None
        if self.definition.mode != "reached":
            end = self._window_ends[0](entry)
        return any(entry <= t and (end is None or t <= end) for t in excluded_at)

    def step_views(self, counts: list[int]) -> list[FunnelStepView]:
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


def conversion_time(from_step: str, to_step: str, days: list[float]) -> ConversionTime:
    """Median, mean, p90 and a histogram of the durations that are not negative.

    `days` is sorted here; when it is a few sorted runs (the parts' totals, each sorted by
    `summarise_each`), the sort is a linear merge. The histogram's buckets are then counted by
    bisection, not value by value."""
    days.sort()
    values = days[bisect_left(days, 0) :] if days and days[0] < 0 else days
    edges = HISTOGRAM_DAYS
    at = [bisect_left(values, edge) for edge in edges] + [len(values)]
    labels = [f"{a}-{b}d" for a, b in itertools.pairwise(edges)] + [f"{edges[-1]}d+"]
    return ConversionTime(
        from_step=from_step,
        to_step=to_step,
        leads=len(values),
        median_days=_median(values) if values else None,
        mean_days=math.fsum(values) / len(values) if values else None,  # statistics.fmean
        p90_days=percentile(values, 0.9) if values else None,
        histogram=[
            HistogramBucket(label=label, leads=at[k + 1] - at[k]) for k, label in enumerate(labels)
        ],
    )


def _median(sorted_values: list[float]) -> float:
    """statistics.median of values already sorted."""
    n = len(sorted_values)
    middle = n // 2
    if n % 2:
        return sorted_values[middle]
    return (sorted_values[middle - 1] + sorted_values[middle]) / 2


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    position = (len(sorted_values) - 1) * q
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def entered_at(times: list[str | None]) -> str:
    """When the lead entered: its step-1 time, or its earliest step when it skipped step 1."""
    return times[0] or min(t for t in times if t is not None)


def _reached_paths(
    leads: Iterable[tuple[str, list[str | None]]],
    sequences: Mapping[str, list[tuple[str, int]]],
) -> Iterator[tuple[str, int, list[str | None]]]:
    """The reached rule: the furthest step the lead has a time for, in any order."""
    for lead, earliest in leads:
        k = len(earliest) - 1
        while k >= 0 and earliest[k] is None:
            k -= 1
        if k >= 0:
            yield lead, k, earliest


def _one_per_step(earliest: list[str | None]) -> list[tuple[str, int]]:
    """A lead's step events when none of its steps repeats: its earliest times, in order."""
    events = [(at, step) for step, at in enumerate(earliest) if at is not None]
    if len(events) > 1:
        events.sort()
    return events


def _days_between(times: list[str | None], furthest: int) -> list[tuple[int, float]]:
    """A counted path's days from step a to a+1 (as (a, days)) for each pair it has both
    times of, and at the last step of a funnel of more than two, from its first step (as
    (steps - 1, days))."""
    spans = []
    parse = datetime.fromisoformat
    first = previous = parse(times[0]).timestamp() if times[0] is not None else None
    for a in range(furthest):
        reached = times[a + 1]
        current = parse(reached).timestamp() if reached is not None else None
        if previous is not None and current is not None:
            spans.append((a, (current - previous) / 86400))
        previous = current
    last = len(times) - 1
    if furthest == last > 1 and first is not None and previous is not None:
        spans.append((last, (previous - first) / 86400))
    return spans


def _at_least(furthest: list[int]) -> list[int]:
    """From the number of leads whose furthest step is k to the number that reached step k."""
    reached, total = [0] * len(furthest), 0
    for k in range(len(furthest) - 1, -1, -1):
        total += furthest[k]
        reached[k] = total
    return reached


def _period_memo(cohort: str) -> Callable[[str], str]:
    """`cohort_of` for one cohort kind, remembered per day (the period depends on the date only)."""
    if cohort == "month":
        return lambda at: at[:7]
    periods: dict[str, str] = {}

    def period(at: str) -> str:
        day = at[:10]
        found = periods.get(day)
        if found is None:
            found = periods[day] = cohort_of(at, cohort)
        return found

    return period


def cohort_of(at: str, cohort: str) -> str:
    """The cohort (a month, `2026-04`, or an ISO week, `2026-W14`) of a lead entered `at`."""
    if cohort == "month":
        return at[:7]
    year, week, _ = _parse(at).isocalendar()
    return f"{year}-W{week:02d}"


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at)


LATEST_TEXT = format_utc(LATEST)
Later = Callable[[str], str]  # a fixed-width UTC time -> the same time a fixed span later
# paths(leads, sequences): each lead's counted path (see FunnelProjection.paths)
PathRule = Callable[
    [Iterable[tuple[str, list[str | None]]], Mapping[str, list[tuple[str, int]]]],
    Iterator[tuple[str, int, list[str | None]]],
]


def later_by(days: float) -> Later:
    """A fixed-width UTC time `days` later. A whole number of days moves the date only: the
    new date is remembered per date (a funnel's leads enter on a few hundred dates)."""
    span = timedelta(days=days)
    if days != int(days):
        return lambda at: format_utc(shifted(_parse(at), span))
    dates: dict[str, str] = {}

    def later(at: str) -> str:
        day = at[:10]
        moved = dates.get(day)
        if moved is None:
            try:
                moved = (date.fromisoformat(day) + span).isoformat()
            except OverflowError:  # past the latest time there is: the window never ends
                moved = ""
            dates[day] = moved
        return moved + at[10:] if moved else LATEST_TEXT

    return later


def _limit(at: str, step_ends: list[Later | None], step: int) -> str | None:
    """By when (a fixed-width time) step `step` must follow a step reached `at`, if limited."""
    end = step_ends[step] if step < len(step_ends) else None
    return None if end is None else end(at)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None
