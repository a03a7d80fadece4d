"""Personal data on the way in and out: commands' personal fields sealed with their lead's key
before they are decided (so an event's hash covers the ciphertext), histories revealed with
the keys still kept (`[erased]` where a key is destroyed). The format: domain/personal.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dealengine.domain.deal import Deal
from dealengine.domain.errors import InvalidEvent
from dealengine.domain.events import DomainEvent
from dealengine.domain.interaction import Interaction
from dealengine.domain.personal import (
    LeadKey,
    LeadKeys,
    checked_plaintext,
    key_id_of,
    new_lead_key,
    personal_fields,
    seal,
    unseal,
)
from dealengine.domain.replay import State
from dealengine.domain.streams import deal_stream, stream_of


def has_personal_values(cmd: Interaction) -> bool:
    personal = personal_fields(cmd.event_class)
    if not personal:  # most commands: no call below
        return False
    fields = cmd.fields
    return any(fields.get(name) is not None for name in personal)


class Sealer:
    """Seals the commands of one batch: the keys of the batch's leads read, and the missing
    ones made, in one go (a key made for a command then refused holds nothing; a dry run
    seals under throwaway keys and stores none)."""

    def __init__(self, keys: LeadKeys, *, create: bool) -> None:
        self.keys, self.create = keys, create
        self._held: dict[str, LeadKey] = {}
        self._ciphers: dict[str, AESGCM] = {}  # per key id, for this batch only

    def prefetch(self, commands: Iterable[Interaction]) -> None:
        """The keys of the leads of these commands' personal values, read or made at once."""
        wanted = {
            cmd.target
            for cmd in commands
            if cmd.event_class.aggregate == "lead" and has_personal_values(cmd)
        }
        wanted -= self._held.keys()
        if wanted:
            self._held.update(self.keys.keys_for(wanted, create=self.create))

    def key(self, lead_id: str) -> LeadKey:
        held = self._held.get(lead_id)
        if held is None:
            # a dry run's key is never stored nor used again
            held = self.keys.keys_for([lead_id])[lead_id] if self.create else new_lead_key()
            self._held[lead_id] = held
        return held

    def sealed(self, cmd: Interaction, state: Callable[[str], State]) -> Interaction:
        """`cmd` with its personal values checked and sealed with its lead's key (a deal's
        lead: the one its opening names); `cmd` itself when it has none."""
        if not has_personal_values(cmd):
            return cmd
        cls = cmd.event_class
        lead_id = lead_of(cmd, state)
        if lead_id is None:
            raise InvalidEvent(
                f"{cmd.event_type}: {cls.aggregate} {cmd.target} has no lead: personal fields "
                "are kept under a lead's key, to be erased with it"
            )
        stream = stream_of(cls.aggregate, cmd.target)
        fields: dict[str, Any] = dict(cmd.fields)
        key = None
        for name in sorted(personal_fields(cls)):
            value = fields.get(name)
            if value is not None:
                plain = checked_plaintext(cls, name, value)
                key = key or self.key(lead_id)
                cipher = self._ciphers.get(key.id) or self._ciphers.setdefault(
                    key.id, AESGCM(key.secret)
                )
                fields[name] = seal(plain, key, stream, name, cipher)
        return cmd._replace(fields=fields)


def lead_of(cmd: Interaction, state: Callable[[str], State]) -> str | None:
    """The lead whose key seals a command's personal values (None: a deal without a lead)."""
    if cmd.event_class.aggregate == "lead":
        return cmd.target
    if cmd.event_type == "deal_opened":
        lead = cmd.fields.get("lead_id")
        return lead if isinstance(lead, str) else None
    deal = state(deal_stream(cmd.target))
    return deal.lead_id if isinstance(deal, Deal) else None


def revealed(events: list[DomainEvent], keys: LeadKeys) -> list[DomainEvent]:
    """The events with their personal values in plaintext, or `[erased]` where the key is
    destroyed; the stored JSON and hashes as stored (nothing here is written back)."""
    sealed = [(i, e, personal_fields(type(e))) for i, e in enumerate(events)]
    sealed = [(i, e, names) for i, e, names in sealed if names]
    if not sealed:
        return events
    key_ids = {key_id_of(getattr(e, name)) for _, e, names in sealed for name in names}
    key_ids.discard(None)
    secrets = keys.secrets([k for k in key_ids if k is not None])
    shown = list(events)
    for i, event, names in sealed:
        update = {
            name: unseal(value, secrets, event.originator_id, name)
            for name in names
            if isinstance(value := getattr(event, name), str)
        }
        shown[i] = event.model_copy(update=update)
    return shown
