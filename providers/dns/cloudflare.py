"""DNS at Cloudflare, through the official ``cloudflare`` SDK (API v4).

The SDK is imported when the adapter is built, so a bot without Cloudflare never loads it.
Its synchronous client runs in worker threads. Every call goes through ``_call``, the one I/O
seam, which turns the SDK's exceptions into ``DnsError``.

Retry policy (the SDK's own, set by ``max_retries``): timeouts, connection errors, 408, 409,
429 and 5xx are retried with exponential backoff from 0.5 s up to 8 s, honouring
Retry-After; 400, 401, 403 and 404 never are. The error after the last try is what the user
sees.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from providers.dns.base import RECORD_TYPES, DnsChanges, DnsError, DnsErrorKind, DnsRecord
from providers.dns.records import caa_parts, canonical, canonical_name, check_applicable, zone_txt

if TYPE_CHECKING:
    from cloudflare import Cloudflare

_T = TypeVar("_T")
_PER_PAGE = 500
_READ, _CHANGE = "read", "change"


class CloudflareDns:
    """``DnsProvider`` for zones at Cloudflare. The token needs Zone:Read and DNS:Edit."""

    label = "Cloudflare"

    def __init__(
        self,
        token: str,
        *,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout: float = 30.0,
    ) -> None:
        from cloudflare import Cloudflare  # noqa: PLC0415 - only when Cloudflare is configured

        self._client: Cloudflare = Cloudflare(
            api_token=token, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        self._zone_ids: dict[str, str] = {}

    async def list_records(self, zone: str) -> list[DnsRecord]:
        return [record for _, record in await self._records(zone)]

    async def apply(self, zone: str, changes: DnsChanges) -> None:
        if not changes:
            return
        zone = canonical_name(zone)
        current = await self._records(zone)
        check_applicable(zone, [record for _, record in current], changes)
        ids = {record.data: record_id for record_id, record in current}
        zone_id = self._zone_ids[zone]
        steps = [self._deletion(zone_id, ids[canonical(r).data]) for r in changes.delete]
        steps += [self._edit(zone_id, ids[canonical(old).data], new) for old, new in changes.update]
        steps += [self._creation(zone_id, record) for record in changes.create]
        for done, step in enumerate(steps):
            try:
                await self._call(zone, _CHANGE, step)
            except DnsError as error:
                if done:
                    reason = re.sub(r"^The ", "the ", str(error))
                    message = f"Only {done} of {len(steps)} DNS changes were made: {reason}"
                    raise DnsError(error.kind, message) from None
                raise

    # -- reading --------------------------------------------------------------------------

    async def _records(self, zone: str) -> list[tuple[str, DnsRecord]]:
        zone = canonical_name(zone)
        zone_id = await self._zone_id(zone)
        try:
            raw = await self._call(zone, _READ, lambda: self._list(zone_id))
        except DnsError as error:
            if error.kind is DnsErrorKind.ZONE_NOT_FOUND:  # deleted since: ask again next time
                self._zone_ids.pop(zone, None)
            raise
        return [(record_id, record) for record_id, record in map(_from_sdk, raw) if record]

    def _list(self, zone_id: str) -> list[Any]:
        # Iterating the page fetches the following ones until one comes back empty.
        return list(self._client.dns.records.list(zone_id=zone_id, per_page=_PER_PAGE))

    async def _zone_id(self, zone: str) -> str:
        if zone not in self._zone_ids:
            # Zone names are unique: the first page is the answer.
            zones = await self._call(zone, _READ, lambda: self._client.zones.list(name=zone).result)
            found = [z.id for z in zones if canonical_name(z.name) == zone]
            if not found:
                raise DnsError(
                    DnsErrorKind.ZONE_NOT_FOUND,
                    f"Cloudflare has no zone {zone} that this API token can see.",
                )
            self._zone_ids[zone] = found[0]
        return self._zone_ids[zone]

    # -- writing --------------------------------------------------------------------------

    def _deletion(self, zone_id: str, record_id: str) -> Callable[[], object]:
        return lambda: self._client.dns.records.delete(record_id, zone_id=zone_id)

    def _edit(self, zone_id: str, record_id: str, record: DnsRecord) -> Callable[[], object]:
        records = cast(Any, self._client.dns.records)  # one overload per record type
        return lambda: records.edit(record_id, zone_id=zone_id, **_to_sdk(record))

    def _creation(self, zone_id: str, record: DnsRecord) -> Callable[[], object]:
        records = cast(Any, self._client.dns.records)
        return lambda: records.create(zone_id=zone_id, **_to_sdk(record))

    # -- the I/O seam ---------------------------------------------------------------------

    async def _call(self, zone: str, action: str, call: Callable[[], _T]) -> _T:
        import cloudflare  # noqa: PLC0415 - loaded by the constructor already

        try:
            return await asyncio.to_thread(call)
        except cloudflare.APIStatusError as error:
            raise _status_error(error, zone, action) from None
        except cloudflare.APITimeoutError:
            raise DnsError(
                DnsErrorKind.UNAVAILABLE, "Cloudflare did not answer in time; try again later."
            ) from None
        except cloudflare.APIConnectionError:
            raise DnsError(
                DnsErrorKind.UNAVAILABLE, "Cannot reach Cloudflare; try again later."
            ) from None
        except cloudflare.CloudflareError:
            raise DnsError(
                DnsErrorKind.UNAVAILABLE, "Cloudflare gave an answer Steward cannot read."
            ) from None


def _status_error(error: Any, zone: str, action: str) -> DnsError:
    status = int(error.status_code)
    codes = {int(e.code) for e in error.errors if isinstance(getattr(e, "code", None), int)}
    if status == 404 and 81044 in codes:  # "Record does not exist."
        return DnsError(DnsErrorKind.CONFLICT, f"The zone {zone} changed meanwhile at Cloudflare.")
    known = {
        401: (DnsErrorKind.UNAUTHORIZED, "Cloudflare rejected the API token."),
        403: (
            DnsErrorKind.FORBIDDEN,
            f"The Cloudflare API token may not {action} the zone {zone}.",
        ),
        404: (DnsErrorKind.ZONE_NOT_FOUND, f"Cloudflare has no zone {zone}."),
        429: (
            DnsErrorKind.RATE_LIMITED,
            "Cloudflare is limiting requests; try again in a minute.",
        ),
    }
    if status in known:
        return DnsError(*known[status])
    if status >= 500:
        return DnsError(
            DnsErrorKind.UNAVAILABLE,
            f"Cloudflare is not answering (HTTP {status}); try again later.",
        )
    return DnsError(DnsErrorKind.REJECTED, f"Cloudflare refused the change: {_reason(error)}")


def _reason(error: Any) -> str:
    messages = [str(e.message) for e in error.errors if getattr(e, "message", None)]
    text = " ".join(messages)[:200].strip() or f"HTTP {error.status_code}"
    return text if text.endswith(".") else text + "."


def _from_sdk(raw: Any) -> tuple[str, DnsRecord | None]:
    kind = getattr(raw, "type", None)
    if kind not in RECORD_TYPES:
        return "", None
    content = getattr(raw, "content", None)
    if kind == "CAA" and not content and raw.data is not None:
        content = f'{raw.data.flags} {raw.data.tag} "{raw.data.value}"'
    priority = getattr(raw, "priority", None)
    record = DnsRecord(
        name=raw.name,
        type=kind,
        content=str(content or ""),
        ttl=int(raw.ttl or 1),
        priority=int(priority) if priority is not None else None,
    )
    try:
        return str(raw.id), canonical(record)
    except ValueError:
        return str(raw.id), record


def _to_sdk(record: DnsRecord) -> dict[str, Any]:
    record = canonical(record)
    body: dict[str, Any] = {"name": record.name, "type": record.type, "ttl": record.ttl}
    if record.type == "CAA":
        flags, tag, value = caa_parts(record.content)
        body["data"] = {"flags": flags, "tag": tag, "value": value}
    elif record.type == "TXT":
        body["content"] = zone_txt(record.content)
    else:
        body["content"] = record.content
    if record.type == "MX":
        body["priority"] = record.priority
    return body
