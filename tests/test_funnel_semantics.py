"""Every worked example of docs/funnel-semantics.md, run as written."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest

from dealengine import Engine
from dealengine.domain.events import parse_moment
from dealengine.domain.lines import interaction_from

DOC = Path(__file__).resolve().parents[1] / "docs" / "funnel-semantics.md"
BLOCK = re.compile(r"```(jsonl|toml|expect)\n(.*?)```", re.S)


def examples() -> list[tuple[str, str]]:
    parts = re.split(r"^### ", DOC.read_text(), flags=re.M)[1:]
    return [(p.splitlines()[0], p) for p in parts]


def counts(breakdown: Any) -> list[int]:
    return [s.leads for s in breakdown.steps]


@pytest.mark.parametrize(("title", "text"), examples(), ids=[t for t, _ in examples()])
def test_worked_example(title: str, text: str) -> None:
    blocks = BLOCK.findall(text)
    assert blocks[0][0] == "jsonl", title
    checked = 0
    with Engine.in_memory() as engine:
        lines = [orjson.loads(line) for line in blocks[0][1].splitlines() if line.strip()]
        outcomes = engine.execute_batch([interaction_from(line, "doc", "doc") for line in lines])
        assert all(not isinstance(o, Exception) for o in outcomes), outcomes
        overrides: dict[str, Any] = {}
        for kind, body in blocks[1:]:
            if kind == "toml":
                overrides = tomllib.loads(body)
                continue
            expect = orjson.loads(body)
            view = engine.funnel(**overrides)
            if "steps" in expect:
                assert counts(view) == expect["steps"], title
            if "excluded_leads" in expect:
                assert view.excluded_leads == expect["excluded_leads"]
            for channel, want in expect.get("by_channel", {}).items():
                assert counts(view.by_channel[channel]) == want
            assert set(expect.get("by_channel", view.by_channel)) == set(view.by_channel)
            for field, groups in expect.get("breakdowns", {}).items():
                assert {g: counts(b) for g, b in view.breakdowns[field].items()} == groups
            if "cohorts" in expect:
                assert {c: counts(b) for c, b in view.cohorts.items()} == expect["cohorts"]
            for moment, want in expect.get("as_of", {}).items():
                assert counts(engine.funnel(as_of=parse_moment(moment), **overrides)) == want
            overrides = {}
            checked += 1
    assert checked >= 1


def test_the_rules_say_at_or_after_and_included_where_the_code_means_it() -> None:
    """The code compares `at >= reached` and `at <= window end` (ties and the window's end
    count): the rules say so in those words, not 'after' or 'within'."""
    text = " ".join(DOC.read_text().split())
    assert "first event of step k+1 at or after the time it reached step k" in text
    assert "at or before the end of the conversion window of the attempt's entry" in text
    assert "the events that occurred at or before then" in text
    assert "### 11. Ties and the window's end are included" in text
