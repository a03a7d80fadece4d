"""The pipeline: the deals being worked, stage by stage (definition: projections/pipeline.toml).

The fold keeps a few facts per deal (stage, amount, owner, when it opened, closed and last
moved, and its stays in each stage); `report()` turns them into the stage totals, forecast,
time in stage, cycle, win rates, velocity and stale deals, as of a moment.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, field_serializer

from dealengine.domain.catalogue import BUILT_IN, Interactions
from dealengine.domain.deal import stage_after
from dealengine.domain.definitions import FORECAST_CATEGORIES, PipelineDefinition
from dealengine.domain.errors import undefined_pipeline, undefined_stage
from dealengine.domain.events import DEAL_EVENTS
from dealengine.domain.rates import NO_RATES, ExchangeRates, day_of
from dealengine.domain.streams import DEAL_MARK, id_of
from dealengine.domain.values import MINOR_UNITS, minor_unit
from dealengine.projections.stream import StreamEvent

CENT = Decimal("0.01")
DEAL_EVENT_TYPES = frozenset(cls.event_type for cls in DEAL_EVENTS)
DAY = 86400.0


def money(value: Decimal) -> str:
    return str(value.quantize(CENT))


ByCurrency = dict[str, Decimal]
"""Original amounts by currency code (`amounts_by_currency`, `unconverted`): each shown to its
currency's minor unit."""


class Money(BaseModel):
    @field_serializer("*", when_used="json")
    def _money(self, value: object) -> object:
        if isinstance(value, Decimal):
            return money(value)
        if isinstance(value, dict) and value and isinstance(next(iter(value.values())), Decimal):
            return {c: str(v.quantize(minor_unit(c))) if c in MINOR_UNITS else str(v)
                    for c, v in value.items()}  # fmt: skip
        return value


class MissingRate(BaseModel):
    """No rate from `from_currency` to the pipeline's currency in force on `on` (the earliest
    day one is needed): `deals` deals are left unconverted."""

    from_currency: str
    to_currency: str
    on: date
    deals: int

    def advice(self) -> str:
        """The one warning line a command prints."""
        return (
            f"no exchange rate {self.from_currency}->{self.to_currency} in force on {self.on}: "
            f"{self.deals} deal(s) left unconverted; add it with: dealengine rates set "
            f"{self.from_currency} {self.to_currency} RATE --from {self.on}"
        )


class StageView(Money):
    name: str
    probability: float
    open_deals: int
    amount: Decimal
    weighted_amount: Decimal
    median_days_in_stage: float | None = None  # over the deals that entered and left it
    mean_days_in_stage: float | None = None
    mean_age_days: float | None = None  # of the open deals now in it, since they entered
    amounts_by_currency: ByCurrency = {}  # every deal's original amount, by its currency
    unconverted: ByCurrency = {}  # the deals with no rate: counted, never summed in `amount`


class ClosedView(Money):
    deals: int
    amount: Decimal
    amounts_by_currency: ByCurrency = {}
    unconverted: ByCurrency = {}


class CycleView(BaseModel):
    deals: int
    median_days: float | None
    mean_days: float | None


class ForecastView(Money):
    deals: int
    amount: Decimal
    weighted_amount: Decimal


class StaleDeal(Money):
    deal_id: str
    stage: str
    owner: str
    amount: Decimal
    days_without_event: float
    limit_days: float


class PipelineBreakdown(Money):
    stages: list[StageView]
    won: ClosedView
    lost: ClosedView
    win_rate: float | None  # won / closed, by count; None before any deal closes


class PipelineView(PipelineBreakdown):
    name: str
    currency: str
    as_of: datetime | None
    win_rate_by_amount: float | None
    average_deal_size: Decimal | None  # mean amount of the won deals
    cycle: dict[str, CycleView]  # "won", "lost": days from opened to closed
    velocity_per_day: Decimal | None  # open deals x win rate x average won / mean won cycle
    lost_reasons: dict[str, int]
    forecast: dict[str, ForecastView]  # by forecast category
    forecast_by_close_month: dict[str, ForecastView]  # open deals by expected close month
    stale: list[StaleDeal]
    by_owner: dict[str, PipelineBreakdown]
    missing_rates: list[MissingRate] = []  # by pair: each an unconverted deal's missing rate


class StageStay(BaseModel):
    stage: str
    entered_at: datetime
    left_at: datetime | None  # None: still there


class StageTime(BaseModel):
    stage: str
    entries: int
    latest_days: float  # the latest stay (up to now when the deal is still there)
    cumulative_days: float


class DealStageTimes(Money):
    deal_id: str
    stage: str
    amount: Decimal
    stays: list[StageStay]
    by_stage: list[StageTime]
    currency: str  # the deal's own (`amount` is in it)
    converted_amount: Decimal | None  # in the pipeline's currency; None: no rate
    rate_day: date | None = None  # the day whose rate converts it (another currency only)


@dataclass(slots=True)
class Stay:
    stage: str
    entered: str
    left: str | None = None


@dataclass(slots=True)
class DealFacts:
    """What the fold keeps of a deal; `copy`, `dump` and `load` carry every field (a list
    field holds the dataclass its metadata names, stored as lists of its fields)."""

    stage: str
    amount: str  # as stored: a decimal string
    owner: str
    opened_at: str  # fixed-width UTC strings: they order as they sort
    last_at: str
    expected_close_on: str | None
    stays: list[Stay] = field(default_factory=list, metadata={"of": Stay})
    closed_at: str | None = None
    lost_reason: str | None = None
    currency: str | None = None  # the deal's, when not the pipeline's

    def copy(self) -> DealFacts:
        """A copy the fold can change without changing this one (the fold changes the stays)."""
        _, values, kinds = _shape(type(self))
        copied: list[Any] = [
            [of(*_shape(of)[1](x)) for x in value] if of else value
            for value, of in zip(values(self), kinds, strict=True)
        ]
        return type(self)(*copied)


Shape = tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]], tuple[Any, ...]]


def _shape(kind: type) -> Shape:
    """A dataclass's field names, a getter of all their values, and per field the dataclass
    its list holds (metadata `of`) or None; remembered per dataclass."""
    found = _SHAPES.get(kind)
    if found is None:
        names = tuple(f.name for f in fields(kind))
        getter = attrgetter(*names)
        values = getter if len(names) > 1 else lambda x: (getter(x),)
        kinds = tuple(f.metadata.get("of") for f in fields(kind))
        found = _SHAPES[kind] = (names, values, kinds)
    return found


_SHAPES: dict[type, Shape] = {}


class Derived(NamedTuple):
    """What a report derives from a deal's facts, once (see `PipelineProjection._derive`)."""

    stream: str
    facts: DealFacts
    amount: Decimal  # in the pipeline's currency; 0 when unconverted
    spent: dict[str, float]  # stage -> days, over the stays the deal left
    age: float | None  # days in its current stage; None when closed
    missing: date | None = None  # unconverted: the day no rate was in force on


class PipelineProjection:
    """The view of one pipeline: it keeps the deals opened in it and ignores the others."""

    # what `apply` reads of the definition: probabilities, forecast categories, stale limits
    # and moves are read by the reports (and the stage rules of the aggregate) only
    FOLDED: ClassVar[dict[str, Any]] = {
        "name": True,
        "initial_stage": True,
        "stages": {"__all__": {"name", "closed"}},
        "events": True,
    }

    def __init__(
        self,
        definition: PipelineDefinition,
        *,
        default: bool = True,
        interactions: Interactions = BUILT_IN,
        rates: ExchangeRates = NO_RATES,
        defined: Collection[str] | None = None,
    ) -> None:
        """`defined`: every pipeline of the model; a deal opened in another is an
        UndefinedInModel error (None: deals of other pipelines are only ignored)."""
        self.definition = definition
        self.rates = rates  # what the reports convert deals in other currencies with
        self.default = default  # deals opened before pipelines existed belong to the default
        self.defined = defined
        # what the pass hands this fold: every deal interaction of the model (each one is the
        # deal's latest activity; a declared one may move it: domain/catalogue.py)
        self.event_types = DEAL_EVENT_TYPES.union(
            name for name, model in interactions.types.items() if model.aggregate == "deal"
        )
        self.weight = {s: Decimal(str(v)) for s, v in definition.probability.items()}
        self.closed = frozenset((definition.won_stage, definition.lost_stage))  # is_closed
        self.deals_only = True  # `apply` reads the deals' streams only

    @property
    def fold_key(self) -> tuple[bool, str]:
        """Equal for two pipelines whose `apply` builds the same state from the same events."""
        return self.default, self.definition.model_dump_json(include=self.FOLDED)

    def initial(self) -> dict[str, DealFacts]:
        return {}

    def apply(self, view: dict[str, DealFacts], event: StreamEvent) -> None:
        _, stream, event_type, data = event
        if stream[0] != DEAL_MARK:
            return
        d = self.definition
        at = data["occurred_at"]
        if event_type == "deal_opened":
            pipeline = data.get("pipeline")
            if pipeline != d.name and (pipeline is not None or not self.default):
                defined = self.defined
                if defined is not None and pipeline is not None and pipeline not in defined:
                    raise undefined_pipeline(f"deal {id_of(stream)}", pipeline, defined)
                return
            facts = view[stream] = DealFacts(
                d.initial_stage, data["amount"], data["owner"], at, at,
                data.get("expected_close_on"), [Stay(d.initial_stage, at)],
            )  # fmt: skip
            currency = data.get("currency")
            if currency is not None and currency != d.currency:
                facts.currency = currency
            return
        deal = view.get(stream)
        if deal is None:
            return  # a deal of another pipeline
        to_stage = data.get("to_stage")
        if to_stage is not None and to_stage not in d.index:
            raise undefined_stage(f"deal {id_of(stream)}", d.name, to_stage)
        stage = stage_after(d, deal.stage, event_type, to_stage)
        if stage != deal.stage:
            deal.stays[-1].left = at
            deal.stays.append(Stay(stage, at))
            if stage in self.closed:
                deal.closed_at = at
                deal.lost_reason = data.get("reason") if stage == d.lost_stage else None
            elif deal.stage in self.closed:
                deal.closed_at = deal.lost_reason = None
            deal.stage = stage
        amount = data.get("amount")
        if amount is not None:
            deal.amount = amount
        if at > deal.last_at:
            deal.last_at = at

    # --- reports ------------------------------------------------------------------------------

    def report(
        self,
        view: dict[str, DealFacts],
        as_of: datetime | None = None,
        now: datetime | None = None,
        derived: list[Derived] | None = None,
    ) -> PipelineView:
        """The pipeline as of `as_of` (ages and staleness measured at `as_of`, else `now`).
        `derived`: `derive(view, as_of or now)` when already computed (by a fold of the same
        key: it reads only which stages are closed)."""
        d = self.definition
        moment = as_of or now or datetime.now(UTC)
        deals = self.derive(view, moment) if derived is None else derived
        summary = self._summarise(deals)
        won = [x for x in deals if x.facts.stage == d.won_stage]
        lost = [x for x in deals if x.facts.stage == d.lost_stage]
        won_amount = sum((x.amount for x in won), Decimal(0))
        lost_amount = sum((x.amount for x in lost), Decimal(0))
        cycle = {"won": _cycle(won), "lost": _cycle(lost)}
        won_converted = sum(1 for x in won if x.missing is None)
        average = won_amount / won_converted if won_converted else None
        open_deals = sum(s.open_deals for s in summary.stages)
        velocity = None
        if average is not None and summary.win_rate is not None and cycle["won"].mean_days:
            days = Decimal(str(cycle["won"].mean_days))
            velocity = open_deals * Decimal(str(summary.win_rate)) * average / days
        by_owner: dict[str, list[Derived]] = defaultdict(list)
        for x in deals:
            by_owner[x.facts.owner].append(x)
        reasons = Counter(x.facts.lost_reason or "unknown" for x in lost)
        # ties in name order, here and in the stale deals: the report is the same whatever
        # order the deals come in
        lost_reasons = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
        return PipelineView(
            name=d.name,
            currency=d.currency,
            as_of=as_of,
            **dict(summary),
            win_rate_by_amount=_ratio(won_amount, won_amount + lost_amount),
            average_deal_size=average,
            cycle=cycle,
            velocity_per_day=velocity,
            lost_reasons=dict(lost_reasons),
            forecast=self._forecast(deals),
            forecast_by_close_month=self._by_close_month(deals),
            stale=self._stale(deals, moment),
            by_owner={o: self._summarise(by_owner[o]) for o in sorted(by_owner)},
            missing_rates=self.missing_rates(deals),
        )

    def derive(self, view: dict[str, DealFacts], moment: datetime) -> list[Derived]:
        """What the report needs of each deal, at `moment`."""
        return [self._derive(stream, facts, moment) for stream, facts in view.items()]

    def _derive(self, stream: str, facts: DealFacts, now: datetime) -> Derived:
        """What the report needs of a deal, computed once: its amount in the pipeline's
        currency, the days it spent in each stage it left, and its age in its stage when it is
        open."""
        spent: dict[str, float] = {}
        for stay in facts.stays:
            if stay.left is not None:
                days = _days(_parse(stay.entered), _parse(stay.left))
                spent[stay.stage] = spent.get(stay.stage, 0.0) + days
        age = None
        if facts.stage not in self.closed:
            age = _days(_parse(facts.stays[-1].entered), now)
        if facts.currency is None:
            return Derived(stream, facts, Decimal(facts.amount), spent, age)
        day = self.rate_day(facts, now)
        amount = self.convert(facts, day)
        if amount is None:
            return Derived(stream, facts, Decimal(0), spent, age, day)
        return Derived(stream, facts, amount, spent, age)

    def rate_day(self, facts: DealFacts, now: datetime) -> date:
        """The day whose rate converts a deal: its close date when it is closed, else the
        day of `now` (the view's as-of time). The rule: docs/currencies.md."""
        closed = facts.closed_at if facts.stage in self.closed else None
        return day_of(closed or now)

    def convert(self, facts: DealFacts, day: date) -> Decimal | None:
        """The deal's amount in the pipeline's currency at the rate in force on `day`,
        rounded half-even to its minor unit (None: no rate)."""
        if facts.currency is None:
            return Decimal(facts.amount)
        pair = (facts.currency, self.definition.currency)
        return self.rates.convert(Decimal(facts.amount), pair, day)

    def missing_rates(self, deals: list[Derived]) -> list[MissingRate]:
        """The rates the unconverted deals need, by pair, each from the earliest day needed."""
        return self.missing_for((x.facts.currency or "", x.missing) for x in deals)

    def missing_for(self, needs: Iterable[tuple[str, date | None]]) -> list[MissingRate]:
        """The missing rates of (currency, day without a rate or None) pairs, by currency."""
        needed: dict[str, list[date]] = defaultdict(list)
        for currency, day in needs:
            if day is not None:
                needed[currency].append(day)
        to = self.definition.currency
        return [
            MissingRate(from_currency=c, to_currency=to, on=min(days), deals=len(days))
            for c, days in sorted(needed.items())
        ]

    def stage_times(self, view: dict[str, DealFacts], now: datetime) -> list[DealStageTimes]:
        """For every deal: when it entered and left each stage; latest and cumulative days."""
        report = []
        for stream, facts in view.items():
            day = self.rate_day(facts, now) if facts.currency is not None else None
            converted = self.convert(facts, day) if day is not None else Decimal(facts.amount)
            stays = [_stay(s) for s in facts.stays]
            by_stage: dict[str, list[float]] = defaultdict(list)
            for stay in stays:
                by_stage[stay.stage].append(_days(stay.entered_at, stay.left_at or now))
            report.append(
                DealStageTimes(
                    deal_id=id_of(stream),
                    stage=facts.stage,
                    amount=Decimal(facts.amount),
                    stays=stays,
                    by_stage=[
                        StageTime(
                            stage=s, entries=len(t), latest_days=t[-1], cumulative_days=sum(t)
                        )
                        for s, t in by_stage.items()
                    ],
                    currency=facts.currency or self.definition.currency,
                    converted_amount=converted,
                    rate_day=day,
                )
            )
        return report

    def _summarise(self, deals: list[Derived]) -> PipelineBreakdown:
        d = self.definition
        count: dict[str, int] = defaultdict(int)
        total: dict[str, Decimal] = defaultdict(Decimal)
        ages: dict[str, list[float]] = defaultdict(list)
        done: dict[str, list[float]] = defaultdict(list)  # cumulative days of left stays
        originals: dict[str, ByCurrency] = defaultdict(dict)
        unconverted: dict[str, ByCurrency] = defaultdict(dict)
        home = d.currency
        for x in deals:
            stage = x.facts.stage
            count[stage] += 1
            total[stage] += x.amount
            currency = x.facts.currency or home
            original = x.amount if x.facts.currency is None else Decimal(x.facts.amount)
            by = originals[stage]
            by[currency] = by.get(currency, Decimal(0)) + original
            if x.missing is not None:
                by = unconverted[stage]
                by[currency] = by.get(currency, Decimal(0)) + original
            for left, days in x.spent.items():
                done[left].append(days)
            if x.age is not None:
                ages[stage].append(x.age)
        won, lost = count[d.won_stage], count[d.lost_stage]

        def closed(stage: str) -> ClosedView:
            return ClosedView(
                deals=count[stage],
                amount=total[stage],
                amounts_by_currency=_sorted(originals[stage]),
                unconverted=_sorted(unconverted[stage]),
            )

        return PipelineBreakdown(
            stages=[
                StageView(
                    name=s,
                    probability=d.probability[s],
                    open_deals=count[s],
                    amount=total[s],
                    weighted_amount=total[s] * self.weight[s],
                    median_days_in_stage=statistics.median(done[s]) if done[s] else None,
                    mean_days_in_stage=statistics.fmean(done[s]) if done[s] else None,
                    mean_age_days=statistics.fmean(ages[s]) if ages[s] else None,
                    amounts_by_currency=_sorted(originals[s]),
                    unconverted=_sorted(unconverted[s]),
                )
                for s in d.open_stages
            ],
            won=closed(d.won_stage),
            lost=closed(d.lost_stage),
            win_rate=won / (won + lost) if won + lost else None,
        )

    def _forecast(self, deals: list[Derived]) -> dict[str, ForecastView]:
        d = self.definition
        groups: dict[str, list[Derived]] = {c: [] for c in FORECAST_CATEGORIES}
        for x in deals:
            groups[d.forecast_category(x.facts.stage)].append(x)
        return {c: self._totals(groups[c]) for c in FORECAST_CATEGORIES}

    def _by_close_month(self, deals: list[Derived]) -> dict[str, ForecastView]:
        groups: dict[str, list[Derived]] = defaultdict(list)
        for x in deals:
            if x.age is not None:  # open
                groups[(x.facts.expected_close_on or "none")[:7]].append(x)
        return {month: self._totals(groups[month]) for month in sorted(groups)}

    def _totals(self, deals: list[Derived]) -> ForecastView:
        weight = self.weight
        return ForecastView(
            deals=len(deals),
            amount=sum((x.amount for x in deals), Decimal(0)),
            weighted_amount=sum((x.amount * weight[x.facts.stage] for x in deals), Decimal(0)),
        )

    def _stale(self, deals: list[Derived], now: datetime) -> list[StaleDeal]:
        stale = []
        for x in deals:
            facts = x.facts
            limit = self.definition.stage[facts.stage].stale_after_days
            if limit is None:
                continue
            idle = _days(_parse(facts.last_at), now)
            if idle > limit:
                stale.append(
                    StaleDeal(
                        deal_id=id_of(x.stream),
                        stage=facts.stage,
                        owner=facts.owner,
                        amount=x.amount,
                        days_without_event=idle,
                        limit_days=limit,
                    )
                )
        return sorted(stale, key=lambda s: (-s.days_without_event, s.deal_id))


def _cycle(deals: list[Derived]) -> CycleView:
    days = [
        _days(_parse(x.facts.opened_at), _parse(x.facts.closed_at))
        for x in deals
        if x.facts.closed_at
    ]
    return CycleView(
        deals=len(days),
        median_days=statistics.median(days) if days else None,
        mean_days=statistics.fmean(days) if days else None,
    )


def _stay(stay: Stay) -> StageStay:
    left = _parse(stay.left) if stay.left else None
    return StageStay(stage=stay.stage, entered_at=_parse(stay.entered), left_at=left)


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at)


def _days(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / DAY


def _sorted(by: ByCurrency) -> ByCurrency:
    return {c: by[c] for c in sorted(by)}


def _ratio(part: Decimal, whole: Decimal) -> float | None:
    return float(part / whole) if whole else None


# --- movement between two dates: the waterfall ------------------------------------------------


class Movement(Money):
    deals: int = 0
    amount: Decimal = Decimal(0)

    def add(self, amount: Decimal) -> None:
        self.deals += 1
        self.amount += amount


class PipelineChanges(Money):
    """How the open pipeline moved between two dates. The amounts add up:
    open_at_start + new + reopened + amount_up - amount_down + rate_effect - won - lost
    = open_at_end.
    `won` and `lost` are the amounts deals closed with; a deal open at the start and closed
    by the end puts its change from its start amount to its closing amount under amount_up
    or amount_down; a deal opened in between counts under `new` at its amount at the end (or
    at its close). `advanced` and `moved_back` count the deals open at both dates that changed
    stage (at their end amount). A deal in another currency is converted at the start at the
    start's rate and at the end at the end's (or its close date's); `rate_effect` (signed) is
    what the change of rate alone made of its start amount. The rules, with examples:
    docs/pipeline-changes.md and docs/currencies.md.
    """

    start: datetime
    end: datetime
    open_at_start: Movement
    new: Movement
    reopened: Movement
    amount_up: Movement
    amount_down: Movement
    won: Movement
    lost: Movement
    open_at_end: Movement
    advanced: Movement
    moved_back: Movement
    rate_effect: Movement = Movement()
    unconverted: ByCurrency = {}  # deals with no rate at a needed date: left out of every line
    missing_rates: list[MissingRate] = []


MOVEMENTS = [n for n, f in PipelineChanges.model_fields.items() if f.annotation is Movement]


def changes(
    pipeline: PipelineProjection,
    before: dict[str, DealFacts],
    after: dict[str, DealFacts],
    start: datetime,
    end: datetime,
) -> PipelineChanges:
    d = pipeline.definition
    m = {name: Movement() for name in MOVEMENTS}
    unconverted: ByCurrency = {}
    missing: list[Derived] = []
    for stream, now in after.items():
        then = before.get(stream)
        was_open = then is not None and not d.is_closed(then.stage)
        is_open = not d.is_closed(now.stage)
        if then is not None and not was_open and not is_open:
            continue  # closed at both dates: not in the waterfall
        # each end converted by the view's rule; the start amount also at the end's rate
        end_day = pipeline.rate_day(now, end)
        b = pipeline.convert(now, end_day)
        a_then = a = Decimal(0)  # the start amount at the start's rate, and at the end's
        if then is not None and was_open:
            start_day = pipeline.rate_day(then, start)
            at_start, at_end = pipeline.convert(then, start_day), pipeline.convert(then, end_day)
            if at_start is None:
                b, end_day = None, start_day
            elif at_end is None:
                b = None
            else:
                a_then, a = at_start, at_end
        if b is None:
            currency = now.currency or d.currency
            unconverted[currency] = unconverted.get(currency, Decimal(0)) + Decimal(now.amount)
            missing.append(Derived(stream, now, Decimal(0), {}, None, end_day))
            continue
        if was_open:
            m["open_at_start"].add(a_then)
            if a != a_then:
                m["rate_effect"].add(a - a_then)
        if is_open:
            m["open_at_end"].add(b)
        if then is None:
            m["new"].add(b)
            if not is_open:
                m["won" if now.stage == d.won_stage else "lost"].add(b)
        elif was_open and not is_open:  # closed in the window: at its closing amount, and
            m["won" if now.stage == d.won_stage else "lost"].add(b)  # how it got there
            if b != a:
                m["amount_up" if b > a else "amount_down"].add(abs(b - a))
        elif not was_open and is_open:
            m["reopened"].add(b)
        elif was_open and is_open:
            if b != a:
                m["amount_up" if b > a else "amount_down"].add(abs(b - a))
            if now.stage != then.stage:
                forward = d.index[now.stage] > d.index[then.stage]
                m["advanced" if forward else "moved_back"].add(b)
    return PipelineChanges(
        start=start, end=end, **m, unconverted=_sorted(unconverted),
        missing_rates=pipeline.missing_rates(missing),
    )  # fmt: skip
