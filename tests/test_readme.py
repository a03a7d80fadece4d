"""The README's example runs as written and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_embedding_example_runs() -> None:
    example = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert example is not None
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example.group(1), "README.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith(
        "deal D-1 is in 'proposal': discovery_completed refused: a backward move"
    )
    assert lines[1] == "1 6000.0"


def test_the_readme_commands_are_the_ones_ci_runs() -> None:
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pip install -e '.[dev]' && dealengine demo" in text
    assert "pip install --quiet -e '.[dev]'" in ci
    assert "```sh\npytest\n```" in text and ci.rstrip().endswith("pytest")
