"""The sales model: the definitions a store's writes are decided under (the pipelines and the
funnel), read from one folder, and the digest that names them.

The digest is a SHA-256 of the definitions' canonical content: the validated models as JSON
(defaults filled in, keys sorted), not the files' bytes. So a comment or a key spelled in
another order is the same model, a changed probability or stage is another one, and the models
an API host builds in code get the digest of the folder they match. The content is what the
store keeps beside the digest (store/recorders.py), for an auditor to read the rules back.
"""

from __future__ import annotations

import hashlib
import shutil
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import orjson

from dealengine.domain.definitions import (
    FunnelDefinition,
    Pipelines,
    definitions_dir,
    load_funnel,
    load_pipelines,
)
from dealengine.domain.errors import DealEngineError

MODEL_FILES = ("pipeline.toml", "funnel.toml")
COPIED = ("pipeline.toml", "funnel.toml", "scenarios", "mappings")  # what `init` copies
INTERACTIONS_EXAMPLE = """\
# Interactions you declare beside the built-in ones (ad_viewed, deal_won, ...): each is
# recorded, validated, hashed, audited and mapped like a built-in one, and may be named in
# funnel steps, exclusions and breakdowns. Every line below is a comment: an example.
#
# [[interactions]]
# name = "trial_started"
# on = "lead"                       # or "deal"
# fields = { plan = "text", seats = "integer" }
#   (a field is text, integer, decimal, amount, boolean, date or datetime)
#
# [[interactions]]
# name = "contract_signed"
# on = "deal"
# stage = "negotiation"             # moves the deal there, under the stage rules
"""


@dataclass(frozen=True)
class SalesModel:
    """The pipelines and the funnel in force, and the folder they were read from (None: given
    as loaded models)."""

    pipelines: Pipelines
    funnel: FunnelDefinition
    folder: Path | None = None

    @cached_property
    def content(self) -> bytes:
        """The canonical content: what the digest is taken of and what the store keeps."""
        model = {
            "funnel": self.funnel.model_dump(mode="json"),
            "pipelines": self.pipelines.model_dump(mode="json"),
        }
        return orjson.dumps(model, option=orjson.OPT_SORT_KEYS)

    @cached_property
    def digest(self) -> str:
        """`sha256:<hex>` of the canonical content."""
        return "sha256:" + hashlib.sha256(self.content).hexdigest()

    @property
    def source(self) -> str:
        """Where the definitions come from, as an error message names it."""
        return str(self.folder) if self.folder is not None else "given to the Engine"


class ModelChange(NamedTuple):
    """From the event at `position` on (up to the next change), writes were decided under the
    model `digest`, first used at `first_used_at`."""

    position: int
    digest: str
    first_used_at: str


def model_at(changes: list[ModelChange], position: int) -> str | None:
    """The digest in force at `position`: the last change at or before it (None: none)."""
    at = bisect_right([c.position for c in changes], position)
    return changes[at - 1].digest if at else None


def load_model(folder: Path | None = None, own: Path | None = None) -> SalesModel:
    """The model in `folder` (its pipeline.toml and funnel.toml; default: the shipped
    definitions), with `own`'s files instead where it has them (a tenant's definitions). A
    missing folder or file, or a bad definition, fails naming it."""
    folder = (folder or definitions_dir()).resolve()
    if not folder.is_dir():
        raise DealEngineError(
            f"definitions folder {folder}: not a folder (write one with: dealengine init DIR)"
        )
    files = {name: folder / name for name in MODEL_FILES}
    if own is not None:
        files.update({name: own / name for name in MODEL_FILES if (own / name).is_file()})
    used = own if any(path.parent == own for path in files.values()) else folder
    return SalesModel(
        load_pipelines(files["pipeline.toml"]), load_funnel(files["funnel.toml"]), used
    )


def init_model_folder(folder: Path) -> list[Path]:
    """Write a working copy of the shipped definitions into `folder` (new, or empty): the
    pipelines, the funnel, the scenarios and the mappings, each commented, and an
    interactions.toml of commented examples. Returns what it wrote; overwrites nothing."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DealEngineError(f"init {folder}: exists and is not an empty folder")
    shipped = definitions_dir()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in COPIED:
        source, target = shipped / name, folder / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        written.append(target)
    interactions = folder / "interactions.toml"
    interactions.write_text(INTERACTIONS_EXAMPLE, encoding="utf-8")
    return [*written, interactions]
