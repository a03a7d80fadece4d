"""Personal data: the marker a field that holds it carries, and how its values are sealed.

A built-in event marks such a field `Annotated[Text, PERSONAL]`; a declared interaction marks it
`personal = true` in interactions.toml, which builds the same annotation. The write path
encrypts these fields with a key per lead (so that forgetting the lead erases them) and every
reader finds them with `personal_fields`.

A sealed value is one string, versioned and self-describing (docs/privacy.md):

    enc:v1:<key id>:<nonce>:<ciphertext>

AES-256-GCM under the lead's key `<key id>` (32 hex digits, random: it says nothing of the
lead), a random 96-bit nonce, the ciphertext with its 16-byte tag; nonce and ciphertext in
unpadded base64url. The associated data binds it to its place: `dealengine-personal-v1`, the
key id, the stream and the field, one per line; a value moved to another place does not
open. The event's JSON holds the sealed value, so its hash covers the ciphertext: destroying
the key erases the value and leaves every hash intact.
"""

from __future__ import annotations

import os
import re
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Collection, Mapping
from functools import cache
from typing import Annotated, Any, NamedTuple, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, GetCoreSchemaHandler, TypeAdapter, ValidationError
from pydantic_core import CoreSchema, core_schema

from dealengine.domain.errors import InvalidEvent
from dealengine.domain.values import explain

ERASED = "[erased]"  # what every reader shows for a value whose key is destroyed
SEALED_PREFIX = "enc:v1:"
_B64 = r"[A-Za-z0-9_-]+"
SEALED = re.compile(rf"enc:v1:([0-9a-f]{{32}}):({_B64}):({_B64})")


class Personal:
    """The marker (one instance, PERSONAL) in a field's Annotated metadata. Such a field
    accepts its type's values (plaintext, when a command is checked) and sealed values (what
    is stored, and read back)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PERSONAL"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        def sealed_or_plain(value: Any, validate: core_schema.ValidatorFunctionWrapHandler) -> Any:
            if isinstance(value, str) and SEALED.fullmatch(value):
                return value
            return validate(value)

        return core_schema.no_info_wrap_validator_function(sealed_or_plain, handler(source))


PERSONAL = Personal()


@cache
def personal_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` that hold personal data."""
    return frozenset(
        name
        for name, field in model.model_fields.items()
        if any(isinstance(m, Personal) for m in field.metadata)
    )


# --- keys ------------------------------------------------------------------------------------


class LeadKey(NamedTuple):
    """A lead's data key: its id (stored in each sealed value) and its 32-byte secret."""

    id: str
    secret: bytes

    def __repr__(self) -> str:
        return f"LeadKey(id={self.id!r}, secret=<hidden>)"  # a key is never shown nor logged


def new_lead_key() -> LeadKey:
    return LeadKey(os.urandom(16).hex(), AESGCM.generate_key(bit_length=256))


class LeadKeys(Protocol):
    """Where leads' data keys live: dealengine's own table in the store (the default), or a
    key store the host supplies (`Engine(lead_keys=...)`). Thread-safe."""

    def keys_for(self, lead_ids: Collection[str], *, create: bool = True) -> Mapping[str, LeadKey]:
        """The current key of each lead, made (and kept) for a lead that has none; with
        `create=False`, the leads that have one only."""
        ...

    def secrets(self, key_ids: Collection[str]) -> Mapping[str, bytes]:
        """The secrets of the keys still kept among `key_ids` (a destroyed key is absent)."""
        ...

    def destroy(self, lead_id: str) -> int:
        """Destroy every key of the lead, leaving nothing of them readable; how many."""
        ...


# --- sealing ---------------------------------------------------------------------------------


def _aad(key_id: str, stream: str, field: str) -> bytes:
    return f"dealengine-personal-v1\n{key_id}\n{stream}\n{field}".encode()


def _b64(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(value: str, key: LeadKey, stream: str, field: str, cipher: AESGCM | None = None) -> str:
    """`value` encrypted under the lead's key, for the field `field` of an event of `stream`
    (`cipher`: the key's AESGCM, when the caller made it once for several values)."""
    nonce = os.urandom(12)
    cipher = cipher or AESGCM(key.secret)
    sealed = cipher.encrypt(nonce, value.encode(), _aad(key.id, stream, field))
    return f"{SEALED_PREFIX}{key.id}:{_b64(nonce)}:{_b64(sealed)}"


def key_id_of(value: object) -> str | None:
    """The key id a sealed value names (None: not a sealed value)."""
    match = SEALED.fullmatch(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def unseal(value: str, secrets: Mapping[str, bytes], stream: str, field: str) -> str:
    """The plaintext of a sealed value, or ERASED when its key is no longer kept. A value that
    does not open under its key (moved or altered) is an error naming the stream and field."""
    match = SEALED.fullmatch(value)
    if match is None:
        return value  # not sealed (an event stored before sealing, or a what-if's)
    key_id, nonce, sealed = match.groups()
    secret = secrets.get(key_id)
    if secret is None:
        return ERASED
    try:
        plain = AESGCM(secret).decrypt(_unb64(nonce), _unb64(sealed), _aad(key_id, stream, field))
    except (InvalidTag, ValueError):
        raise InvalidEvent(f"{stream}: field '{field}': its sealed value does not open") from None
    return plain.decode()


# --- checking plaintext ----------------------------------------------------------------------


@cache
def _plain_validator(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    field = model.model_fields[name]
    metadata = [m for m in field.metadata if not isinstance(m, Personal)]
    annotation: Any = field.annotation
    for item in metadata:
        annotation = Annotated[annotation, item]
    return TypeAdapter(annotation)


def checked_plaintext(model: type[BaseModel], name: str, value: Any) -> Any:
    """`value` validated for the personal field `name` of `model`, or InvalidEvent naming the
    field and the rule, never the value (an error message is shown and may be logged)."""
    try:
        return _plain_validator(model, name).validate_python(value)
    except ValidationError as e:
        why = "; ".join(explain(err) for err in e.errors())
        event_type = getattr(model, "event_type", model.__name__)
        raise InvalidEvent(
            f"{event_type}: field '{name}': {why} (a personal value: not shown)"
        ) from None
