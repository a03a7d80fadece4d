"""Personal data: the marker a field that holds it carries.

A built-in event marks such a field `Annotated[Text, PERSONAL]`; a declared interaction marks it
`personal = true` in interactions.toml, which builds the same annotation. The write path
encrypts these fields with a key per lead (so that forgetting the lead erases them) and every
reader finds them with `personal_fields`.
"""

from __future__ import annotations

from functools import cache

from pydantic import BaseModel


class Personal:
    """The marker (one instance, PERSONAL) in a field's Annotated metadata."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PERSONAL"


PERSONAL = Personal()


@cache
def personal_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` that hold personal data."""
    return frozenset(
        name
        for name, field in model.model_fields.items()
        if any(isinstance(m, Personal) for m in field.metadata)
    )
