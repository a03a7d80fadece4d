"""The funnel: every lead from first awareness to purchase (definition: projections/funnel.toml).

`reached` counting: a lead counts at every step up to the furthest step it reached, so
skipped steps count as passed. A deal's events count for the lead it was opened from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from dealengine.domain.definitions import FunnelDefinition
from dealengine.projections.stream import StreamEvent

UNKNOWN_CHANNEL = "unknown"


class FunnelStepView(BaseModel):
    name: str
    leads: int
    conversion_from_previous: float | None
    conversion_from_first: float | None
    drop_off: int  # leads at the previous step that did not reach this one


class FunnelBreakdown(BaseModel):
    steps: list[FunnelStepView]


class FunnelView(FunnelBreakdown):
    leads: int
    by_channel: dict[str, FunnelBreakdown]


@dataclass(slots=True)
class FunnelState:
    furthest: dict[str, int] = field(default_factory=dict)  # lead id -> furthest step index
    touch: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # lead -> (occurred_at, channel)
    lead_of_deal: dict[str, str] = field(default_factory=dict)  # deal stream -> lead id


class FunnelProjection:
    def __init__(self, definition: FunnelDefinition) -> None:
        self.definition = definition
        self.step_of = definition.step_of_event
        self.first_touch = definition.attribution == "first_touch"

    def initial(self) -> FunnelState:
        return FunnelState()

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
        step = self.step_of.get(event.type)
        if step is not None and step > view.furthest.get(lead, -1):
            view.furthest[lead] = step
        channel = data.get("channel")
        if channel is not None:
            at = data["occurred_at"]  # fixed-width UTC: string order is time order
            seen = view.touch.get(lead)
            if seen is None or (at < seen[0] if self.first_touch else at >= seen[0]):
                view.touch[lead] = (at, channel)

    def report(self, view: FunnelState) -> FunnelView:
        n = len(self.definition.steps)
        overall = [0] * n
        by_channel: dict[str, list[int]] = {}
        for lead, furthest in view.furthest.items():
            touch = view.touch.get(lead)
            channel = touch[1] if touch else UNKNOWN_CHANNEL
            counts = by_channel.setdefault(channel, [0] * n)
            for k in range(furthest + 1):
                overall[k] += 1
                counts[k] += 1
        return FunnelView(
            leads=overall[0] if n else 0,
            steps=self._steps(overall),
            by_channel={
                c: FunnelBreakdown(steps=self._steps(by_channel[c])) for c in sorted(by_channel)
            },
        )

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


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None
