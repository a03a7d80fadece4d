"""The pipeline: the deals being worked, stage by stage (definition: projections/pipeline.toml)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from pydantic import BaseModel, field_serializer

from dealengine.domain.deal import stage_after
from dealengine.domain.definitions import PipelineDefinition
from dealengine.projections.stream import StreamEvent

CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    return str(value.quantize(CENT))


class StageView(BaseModel):
    name: str
    probability: float
    open_deals: int
    amount: Decimal
    weighted_amount: Decimal

    @field_serializer("amount", "weighted_amount", when_used="json")
    def _money(self, value: Decimal) -> str:
        return money(value)


class ClosedView(BaseModel):
    deals: int
    amount: Decimal

    @field_serializer("amount", when_used="json")
    def _money(self, value: Decimal) -> str:
        return money(value)


class PipelineBreakdown(BaseModel):
    stages: list[StageView]
    won: ClosedView
    lost: ClosedView
    win_rate: float | None  # won / closed, by count; None before any deal closes


class PipelineView(PipelineBreakdown):
    name: str
    currency: str
    by_owner: dict[str, PipelineBreakdown]


# A deal in the fold: [stage, amount as stored (a decimal string), owner]
DealRow = list[str]


class PipelineProjection:
    def __init__(self, definition: PipelineDefinition) -> None:
        self.definition = definition

    def initial(self) -> dict[str, DealRow]:
        return {}

    def apply(self, view: dict[str, DealRow], event: StreamEvent) -> None:
        stream = event.stream
        if stream[0] != "d":
            return
        data = event.data
        if event.type == "deal_opened":
            view[stream] = [self.definition.initial_stage, data["amount"], data["owner"]]
            return
        deal = view[stream]
        deal[0] = stage_after(self.definition, deal[0], event.type, data.get("to_stage"))
        amount = data.get("amount")
        if amount is not None:
            deal[1] = amount

    def report(self, view: dict[str, DealRow]) -> PipelineView:
        overall: list[tuple[str, Decimal]] = []
        by_owner: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
        for stage, amount, owner in view.values():
            deal = (stage, Decimal(amount))
            overall.append(deal)
            by_owner[owner].append(deal)
        summary = self._summarise(overall)
        return PipelineView(
            name=self.definition.name,
            currency=self.definition.currency,
            **dict(summary),
            by_owner={o: self._summarise(by_owner[o]) for o in sorted(by_owner)},
        )

    def _summarise(self, deals: list[tuple[str, Decimal]]) -> PipelineBreakdown:
        d = self.definition
        count: dict[str, int] = defaultdict(int)
        total: dict[str, Decimal] = defaultdict(Decimal)
        for stage, amount in deals:
            count[stage] += 1
            total[stage] += amount
        won, lost = count[d.won_stage], count[d.lost_stage]
        return PipelineBreakdown(
            stages=[
                StageView(
                    name=s,
                    probability=d.probability[s],
                    open_deals=count[s],
                    amount=total[s],
                    weighted_amount=total[s] * Decimal(str(d.probability[s])),
                )
                for s in d.open_stages
            ],
            won=ClosedView(deals=won, amount=total[d.won_stage]),
            lost=ClosedView(deals=lost, amount=total[d.lost_stage]),
            win_rate=won / (won + lost) if won + lost else None,
        )
