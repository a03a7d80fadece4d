"""The sales model: the definitions a store's writes are decided under (the pipelines, the
funnel and the declared interactions), read from one folder, and the digest that names them.

The digest is a SHA-256 of the definitions' canonical content: the validated models as JSON
(defaults filled in, keys sorted; a declared interaction as its JSON schema and version), not
the files' bytes. So a comment or a key spelled in another order is the same model, a changed
probability, stage or field is another one, and the models an API host builds in code get the
digest of the folder they match. The content is what the store keeps beside the digest
(store/recorders.py), for an auditor to read the rules back.
"""

from __future__ import annotations

import hashlib
import shutil
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import orjson

from dealengine.domain.catalogue import (
    BUILT_IN,
    BUILT_IN_NAMES,
    Interactions,
    load_interactions,
    with_stage_moves,
)
from dealengine.domain.definitions import (
    FunnelDefinition,
    Pipelines,
    definitions_dir,
    load_funnel,
    load_pipelines,
)
from dealengine.domain.errors import DealEngineError
from dealengine.domain.events import DomainEvent

MODEL_FILES = ("pipeline.toml", "funnel.toml", "interactions.toml")
COPIED = (*MODEL_FILES, "scenarios", "mappings")  # what `init` copies


@dataclass(frozen=True)
class SalesModel:
    """The pipelines, the funnel and the interactions in force, and the folder they were read
    from (None: given as loaded models)."""

    pipelines: Pipelines
    funnel: FunnelDefinition
    interactions: Interactions = BUILT_IN
    folder: Path | None = None

    @cached_property
    def content(self) -> bytes:
        """The canonical content: what the digest is taken of and what the store keeps."""
        declared = {
            name: {"version": model.class_version, "schema": model.model_json_schema()}
            for name, model in sorted(self.interactions.types.items())
            if name not in BUILT_IN_NAMES
        }
        model = {
            "funnel": self.funnel.model_dump(mode="json"),
            "pipelines": self.pipelines.model_dump(mode="json"),
            "interactions": declared,
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


def load_model(
    folder: Path | None = None,
    own: Path | None = None,
    *,
    pipelines: Pipelines | None = None,
    funnel: FunnelDefinition | None = None,
    interactions: Interactions | None = None,
    models: Sequence[type[DomainEvent]] = (),
) -> SalesModel:
    """The model in `folder` (its pipeline.toml, funnel.toml and interactions.toml, if any;
    default: the shipped definitions), with `own`'s files instead where it has them (a
    tenant's definitions); `pipelines`, `funnel` or a whole `interactions` catalogue given
    replace the folder's, `models` are declared beside its interactions. A missing folder or
    file, or a bad definition, fails naming it."""
    folder = (folder or definitions_dir()).resolve()
    if not folder.is_dir():
        raise DealEngineError(
            f"definitions folder {folder}: not a folder (write one with: dealengine init DIR)"
        )
    files = {name: folder / name for name in MODEL_FILES}
    if own is not None:
        files.update({name: own / name for name in MODEL_FILES if (own / name).is_file()})
    if interactions is None:
        path = files["interactions.toml"]
        interactions = load_interactions(path) if path.is_file() else BUILT_IN
    if models:
        interactions = interactions.with_models(models)
    read = pipelines is None or funnel is None
    pipelines = with_stage_moves(pipelines or load_pipelines(files["pipeline.toml"]), interactions)
    funnel = funnel or load_funnel(files["funnel.toml"], context=interactions.context)
    used = own if any(path.parent == own for path in files.values()) else folder
    return SalesModel(pipelines, funnel, interactions, used if read else None)


def init_model_folder(folder: Path) -> list[Path]:
    """Write a working copy of the shipped definitions into `folder` (new, or empty): the
    pipelines, the funnel, the interactions, the scenarios and the mappings, each commented.
    Returns what it wrote; overwrites nothing."""
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
    return written
