"""The audit's forms of a state: the after-state columns of a timeline, and canonical JSON
(the same events give byte-identical output). The replay rules: dealengine.domain.replay."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import orjson

from dealengine.domain.deal import Deal
from dealengine.domain.lead import Lead
from dealengine.domain.replay import State


def state_fields(state: State) -> dict[str, Any]:
    """The after-state columns of a timeline: a deal's stage, amount and the amount's
    currency (the deal's own, as recorded), a lead's status."""
    if isinstance(state, Deal):
        return {"stage_after": state.stage, "amount_after": str(state.amount),
                "currency_after": state.currency}  # fmt: skip
    if isinstance(state, Lead):
        return {"status_after": state.status}
    return {}


def canonical_json(state: Lead | Deal) -> bytes:
    """The state as canonical JSON: sorted keys, no spaces, decimals and sets as strings and
    sorted lists, dates in ISO 8601. The same events give byte-identical output."""
    kind = "deal" if isinstance(state, Deal) else "lead"
    return orjson.dumps(
        {"kind": kind, **state._asdict()}, default=_plain, option=orjson.OPT_SORT_KEYS
    )


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not canonical JSON: {type(value).__name__}")
