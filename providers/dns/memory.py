"""A DNS provider in memory, with failure injection, for demo mode and handler tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from providers.dns.base import DnsChanges, DnsError, DnsErrorKind, DnsRecord
from providers.dns.records import apply_changes, canonical, canonical_name, check_applicable

_MESSAGES = {
    DnsErrorKind.UNAUTHORIZED: "The DNS provider rejected the API token.",
    DnsErrorKind.FORBIDDEN: "The API token may read the zone {zone} but not change it.",
    DnsErrorKind.UNAVAILABLE: "The DNS provider is not answering; try again later.",
    DnsErrorKind.RATE_LIMITED: "The DNS provider is limiting requests; try again in a minute.",
}


@dataclass
class MemoryDns:
    """Zones in memory. Set ``failure`` to make every call fail as the real providers do
    (UNAUTHORIZED, UNAVAILABLE, RATE_LIMITED); ``read_only`` refuses changes (FORBIDDEN); a
    zone that is not in ``zones`` is ZONE_NOT_FOUND. ``calls`` records what was asked."""

    zones: dict[str, list[DnsRecord]] = field(default_factory=dict)
    failure: DnsErrorKind | None = None
    read_only: bool = False
    delay: float = 0.0
    calls: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def with_zone(cls, zone: str, records: Iterable[DnsRecord] = ()) -> MemoryDns:
        return cls({canonical_name(zone): [canonical(record) for record in records]})

    @property
    def label(self) -> str:
        return "the demo DNS provider"

    async def list_records(self, zone: str) -> list[DnsRecord]:
        records = await self._zone("list", zone)
        return list(records)

    async def apply(self, zone: str, changes: DnsChanges) -> None:
        if not changes:
            return
        current = await self._zone("apply", zone)
        if self.read_only:
            raise DnsError(DnsErrorKind.FORBIDDEN, self._message(DnsErrorKind.FORBIDDEN, zone))
        check_applicable(zone, current, changes)
        self.zones[canonical_name(zone)] = apply_changes(current, changes)

    async def _zone(self, call: str, zone: str) -> list[DnsRecord]:
        self.calls.append((call, zone))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise DnsError(self.failure, self._message(self.failure, zone))
        records = self.zones.get(canonical_name(zone))
        if records is None:
            raise DnsError(DnsErrorKind.ZONE_NOT_FOUND, f"The DNS provider has no zone {zone}.")
        return records

    @staticmethod
    def _message(kind: DnsErrorKind, zone: str) -> str:
        template = _MESSAGES.get(kind, "The DNS provider failed.")
        return template.format(zone=zone)
