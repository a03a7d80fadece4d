"""Tamper evidence over a whole store: verify every chain, own hash, seal and the seal log;
seal the store and append the seal to its log (the checks: dealengine.audit.verify)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from dealengine.audit.verify import (
    Finding,
    ManifestWriter,
    Seal,
    SealEntry,
    VerifyReport,
    check_seal_log,
    read_manifest,
    verify,
)
from dealengine.domain.errors import DealEngineError
from dealengine.domain.events import format_time
from dealengine.store.application import Store


class Integrity:
    def __init__(self, store: Store, key: bytes | None, clock: Callable[[], datetime]) -> None:
        self.store, self._key, self.clock = store, key, clock

    def verify(
        self,
        *,
        seal: str | None = None,
        manifest: Path | None = None,
        seals: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> VerifyReport:
        """Recompute every stream's hash chain and each event's own hash (under the audit key,
        if set), streaming the store; with a `seal` (and its `manifest`), also compare the
        streams with it; with `seals`, check the seal log's chain and each of its seals
        against the store, and that a given `seal` is in it (dealengine.audit.verify)."""
        sealed = Seal.parse(seal) if seal else None
        if manifest is not None and sealed is None:
            raise DealEngineError("a manifest is checked against its seal: give the seal too")
        summaries = read_manifest(manifest, sealed) if manifest and sealed else None
        log_findings: list[Finding] = []
        usable: list[SealEntry] = []
        unchecked = 0
        if seals:
            entries = [SealEntry(*row) for row in self.store.recorder.seal_log()]
            log_findings, usable, unchecked = check_seal_log(entries, self._key, sealed)
        report = verify(
            self.store.by_stream(),
            self.store.position(),
            seal=sealed,
            manifest=summaries,
            progress=progress,
            key=self._key,
            log=usable,
        )
        report.findings[:0] = log_findings
        report.unchecked += unchecked
        if seals:
            report.seals = len(entries)
        return report

    def seal(
        self, *, manifest: Path | None = None, progress: Callable[[int], None] | None = None
    ) -> VerifyReport:
        """The store's seal at its current position (`report.sealed`; keep it outside the
        system), checking every chain on the way; with `manifest`, also write the seal's
        per-stream manifest there. A seal of a store found intact is appended to the seal
        log (`report.seals`: its number; 0 when it was not)."""
        position = self.store.position()
        if manifest is None:
            report = verify(self.store.by_stream(), position, progress=progress, key=self._key)
        else:
            with ManifestWriter(manifest) as write:
                report = verify(
                    self.store.by_stream(),
                    position,
                    progress=progress,
                    on_summary=write,
                    key=self._key,
                )
                assert report.sealed is not None
                write.close(report.sealed)
        assert report.sealed is not None
        if report.ok:
            log = self.store.recorder.seal_log()
            last = SealEntry(*log[-1]) if log else None
            entry = SealEntry.after(last, report.sealed, format_time(self.clock()), self._key)
            self.store.recorder.append_seal(entry)
            report.seals = entry.number
        return report
