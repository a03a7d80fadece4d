"""Stream ids: `lead:<id>` and `deal:<id>`, made and read by domain/streams.py only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dealengine.domain.streams import (
    DEAL_MARK,
    ID_START,
    deal_stream,
    id_of,
    is_stream,
    lead_stream,
    parse_stream,
    stream_of,
)

SOURCE = Path(__file__).resolve().parents[1] / "src" / "dealengine"


def test_a_lead_and_a_deal_are_named_by_their_kind_and_id() -> None:
    assert lead_stream("L-17") == "lead:L-17"
    assert deal_stream("D-9") == "deal:D-9"
    assert stream_of("lead", "L-17") == "lead:L-17"
    assert stream_of("deal", "D-9") == "deal:D-9"


@pytest.mark.parametrize(
    ("stream", "kind", "user_id"),
    [
        ("lead:L-17", "lead", "L-17"),
        ("deal:D-9", "deal", "D-9"),
        ("deal:acme:2026:renewal", "deal", "acme:2026:renewal"),  # a colon in an id is kept
        ("lead:deal:1", "lead", "deal:1"),
    ],
)
def test_a_stream_id_gives_back_its_kind_and_id(stream: str, kind: str, user_id: str) -> None:
    assert parse_stream(stream) == (kind, user_id)
    assert id_of(stream) == user_id
    assert stream[ID_START:] == user_id  # the hot loops' slice
    assert (stream[0] == DEAL_MARK) == (kind == "deal")  # the hot loops' test
    assert is_stream(stream)


@pytest.mark.parametrize("value", ["L-17", "account:A-1", "Lead:L-1", "lead", "dealD-9", ""])
def test_anything_else_is_not_a_stream_id(value: str) -> None:
    assert not is_stream(value)
    with pytest.raises(ValueError, match="not a lead or deal stream: "):
        parse_stream(value)


# Spellings of a stream id by hand: a prefix in a string literal, a slice or a first-letter
# test by a literal, a `kind:id` f-string, or splitting a stream or originator id at ":".
BY_HAND = re.compile(
    r"""["'](lead|deal):"""
    r"""|\[5:\]|\[0\] *[!=]= *["'][dl]["']"""
    r"""|\{kind\}:|aggregate\}:"""
    r"""|(stream|originator_id)\.(partition|split)\(["']:"""
)


def test_no_module_but_streams_spells_a_stream_id() -> None:
    found = [
        f"{path.relative_to(SOURCE)}:{number}: {line.strip()}"
        for path in sorted(SOURCE.rglob("*.py"))
        if path.name != "streams.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BY_HAND.search(line)
    ]
    assert found == []
