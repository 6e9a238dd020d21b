"""DNS: the records of a zone, the changes Steward makes to them, and what goes wrong.

Adapters (Cloudflare, RFC 2136, in memory) return records in the canonical form of
``providers.dns.records.canonical``: names are lower-case FQDNs without the trailing dot, and
each type's content has one spelling, so records compare equal when the DNS data is equal.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Literal, Protocol

from values import value

RecordType = Literal["A", "AAAA", "MX", "TXT", "CAA", "CNAME"]
RECORD_TYPES: tuple[RecordType, ...] = ("A", "AAAA", "MX", "TXT", "CAA", "CNAME")


@value
class DnsRecord:
    """One resource record.

    ``content`` is the address (A, AAAA), the target host (MX, CNAME), the whole text with the
    character strings joined (TXT), or ``flags tag "value"`` (CAA). ``priority`` is MX's
    preference and None for every other type."""

    name: str
    type: RecordType
    content: str
    ttl: int = 3600
    priority: int | None = None

    @property
    def key(self) -> tuple[str, RecordType]:
        return (self.name, self.type)

    @property
    def data(self) -> tuple[str, RecordType, str, int | None]:
        """What the record says, without its TTL: two records with the same data are the
        same record with perhaps another cache lifetime."""
        return (self.name, self.type, self.content, self.priority)

    def describe(self) -> str:
        prefix = f"{self.priority} " if self.priority is not None else ""
        return f"{self.name} {self.type} {prefix}{self.content}"


@value
class DnsChanges:
    """Changes to a zone. Adapters delete first, then update, then create, so that a
    conflicting record (a CNAME where an A must go) is gone before its replacement comes."""

    create: tuple[DnsRecord, ...] = ()
    update: tuple[tuple[DnsRecord, DnsRecord], ...] = ()
    delete: tuple[DnsRecord, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete)

    @property
    def count(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


class DnsErrorKind(enum.Enum):
    UNAUTHORIZED = "unauthorized"  # the token or TSIG key is not accepted at all
    FORBIDDEN = "forbidden"  # accepted, but it may not do this (read-only token)
    ZONE_NOT_FOUND = "zone not found"
    UNAVAILABLE = "unavailable"  # the provider is down, unreachable or answers 5xx
    RATE_LIMITED = "rate limited"
    CONFLICT = "conflict"  # the zone changed since it was read
    REJECTED = "rejected"  # the provider refused a record as invalid


class DnsError(Exception):
    """A DNS provider failed; ``str()`` is one short sentence, safe to show in a chat."""

    def __init__(self, kind: DnsErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def retryable(self) -> bool:
        return self.kind in {DnsErrorKind.UNAVAILABLE, DnsErrorKind.RATE_LIMITED}


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class DnsProvider(Protocol):
        """Reads and changes one provider's zones.

        ``list_records`` returns the zone's A, AAAA, MX, TXT, CAA and CNAME records (other types
        are left out: Steward never manages them). ``apply`` first checks that every record it
        updates or deletes is still there (else ``DnsError`` CONFLICT, and nothing changes)."""

        @property
        def label(self) -> str:
            """What to call the provider in a reply: "Cloudflare", "ns1.example.org:53"."""
            ...

        async def list_records(self, zone: str) -> list[DnsRecord]: ...

        async def apply(self, zone: str, changes: DnsChanges) -> None: ...
