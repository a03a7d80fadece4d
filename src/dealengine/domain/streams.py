"""A stream id, `lead:<id>`, `deal:<id>` or a currency pair's `rates:<FROM>-<TO>`: made and
read here only.

The folds' hot loops tell a deal's stream from a lead's by its first character (`DEAL_MARK`)
and take the id by a slice from `ID_START`, both from the prefixes below; everything else calls
the functions. The store's SQL selects deals by `DEAL_PREFIX` too.
"""

from __future__ import annotations

from typing import Literal, cast

AggregateKind = Literal["lead", "deal"]
StreamKind = Literal["lead", "deal", "rates"]  # rates: a currency pair's (domain/rates.py)

LEAD_PREFIX = "lead:"
DEAL_PREFIX = "deal:"
RATES_PREFIX = "rates:"
_PREFIXES: dict[str, str] = {"lead": LEAD_PREFIX, "deal": DEAL_PREFIX, "rates": RATES_PREFIX}
ID_START = len(LEAD_PREFIX)  # where the id starts, in either kind of stream id
DEAL_MARK = DEAL_PREFIX[0]  # a stream id starting with it is a deal's
assert len(DEAL_PREFIX) == ID_START and LEAD_PREFIX[0] != DEAL_MARK


def lead_stream(lead_id: str) -> str:
    return LEAD_PREFIX + lead_id


def deal_stream(deal_id: str) -> str:
    return DEAL_PREFIX + deal_id


def rates_stream(pair_id: str) -> str:
    """The stream of a currency pair's rates (`EUR-USD`)."""
    return RATES_PREFIX + pair_id


def stream_of(kind: StreamKind, user_id: str) -> str:
    """The stream of lead, deal or currency pair `user_id`."""
    return _PREFIXES[kind] + user_id


def parse_stream(value: str) -> tuple[AggregateKind, str]:
    """`(kind, id)` of a stream id; ValueError naming `value` if it is neither kind's."""
    if value.startswith(LEAD_PREFIX):
        return "lead", value[ID_START:]
    if value.startswith(DEAL_PREFIX):
        return "deal", value[ID_START:]
    raise ValueError(f"not a lead or deal stream: {value!r}")


def kind_and_id(value: str) -> tuple[StreamKind, str]:
    """`(kind, id)` of any stream id: a lead's, a deal's or a currency pair's rates'."""
    for kind, prefix in _PREFIXES.items():
        if value.startswith(prefix):
            return cast(StreamKind, kind), value[len(prefix) :]
    raise ValueError(f"not a stream id: {value!r}")


def is_stream(value: str) -> bool:
    """Whether `value` is already a stream id (`lead:ID` or `deal:ID`), not a bare id."""
    return value.startswith((LEAD_PREFIX, DEAL_PREFIX))


def id_of(stream: str) -> str:
    """The lead's or deal's own id in a stream id known to be one."""
    return stream[ID_START:]
