"""DNS on one's own authoritative name server (Knot, BIND, PowerDNS): the zone is read with
a TSIG-signed AXFR and changed with one RFC 2136 dynamic UPDATE, which the server applies
whole or not at all.

dnspython is imported on the first call, so a bot without RFC 2136 never loads it. Its
blocking calls run in worker threads; ``_call`` is the one I/O seam and turns failures into
``DnsError``. Retry policy: none. Each call is one TCP exchange with a time limit, and the
user sees the first failure.

The TSIG key file holds one key in any of these spellings::

    key "steward" { algorithm hmac-sha256; secret "base64…"; };    # BIND, tsig-keygen
    key:                                                           # Knot, keymgr -t
      - id: steward
        algorithm: hmac-sha256
        secret: base64…
    steward:hmac-sha256:base64…                                    # name:algorithm:secret
    hmac-sha256:steward:base64…                                    # kdig/nsupdate -y
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import socket
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from providers.dns.base import RECORD_TYPES, DnsChanges, DnsError, DnsErrorKind, DnsRecord
from providers.dns.records import canonical, canonical_name, check_applicable, txt_content, zone_txt
from values import value

if TYPE_CHECKING:
    import dns.rdata
    import dns.tsig
    import dns.zone

_T = TypeVar("_T")
ALGORITHMS = {
    "hmac-md5": "HMAC-MD5.SIG-ALG.REG.INT",
    "hmac-sha1": "hmac-sha1",
    "hmac-sha224": "hmac-sha224",
    "hmac-sha256": "hmac-sha256",
    "hmac-sha384": "hmac-sha384",
    "hmac-sha512": "hmac-sha512",
}
_BIND = re.compile(
    r'key\s+"?([^"\s{]+)"?\s*\{(?=[^}]*algorithm\s+"?([\w-]+)"?\s*;)(?=[^}]*secret\s+"([^"]+)")',
    re.IGNORECASE,
)
_KNOT = {
    word: re.compile(rf"^\s*-?\s*{word}:\s*(\S+)\s*$", re.MULTILINE)
    for word in ("id", "algorithm", "secret")
}
_READ, _CHANGE = "read", "change"


@value
class TsigKey:
    name: str
    algorithm: str
    secret: str = field(repr=False)


def parse_tsig_key(text: str) -> TsigKey:
    """The key in a BIND, Knot or one-line key file; ValueError (without the secret) if there
    is none or it is malformed."""
    found = _BIND.search(text)
    if found is not None:
        return _checked(found[1], found[2], found[3])
    knot = {word: pattern.search(text) for word, pattern in _KNOT.items()}
    if all(knot.values()):
        name, algorithm, secret = (match[1].strip("\"'") for match in knot.values() if match)
        return _checked(name, algorithm, secret)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("#", "//", ";"))]
    if len(lines) == 1 and lines[0].count(":") == 2:
        first, second, secret = lines[0].split(":")
        if first.lower() in ALGORITHMS:
            return _checked(second, first, secret)
        return _checked(first, second, secret)
    raise ValueError("no TSIG key in the file")


def _checked(name: str, algorithm: str, secret: str) -> TsigKey:
    algorithm = algorithm.lower()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown TSIG algorithm {algorithm}")
    try:
        base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the secret of TSIG key {name} is not base64") from None
    return TsigKey(name.rstrip("."), algorithm, secret)


def parse_server(server: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address; port 53 by default."""
    server = server.strip()
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", server)
    if bracketed:
        return bracketed[1], int(bracketed[2] or 53)
    if server.count(":") == 1:
        host, port = server.split(":")
        return host, int(port)
    return server, 53


class Rfc2136Dns:
    """``DnsProvider`` for a name server that allows AXFR and UPDATE with a TSIG key."""

    def __init__(self, server: str, tsig_file: Path, *, timeout: float = 10.0) -> None:
        self._host, self._port = parse_server(server)
        self._tsig_file = tsig_file
        self._timeout = timeout
        self._key: TsigKey | None = None

    @property
    def label(self) -> str:
        return f"the name server {self._host}:{self._port}"

    async def list_records(self, zone: str) -> list[DnsRecord]:
        zone = canonical_name(zone)
        key, address = await asyncio.to_thread(self._prepare)
        return await self._call(zone, _READ, key, lambda: self._transfer(zone, key, address))

    async def apply(self, zone: str, changes: DnsChanges) -> None:
        if not changes:
            return
        zone = canonical_name(zone)
        key, address = await asyncio.to_thread(self._prepare)
        current = await self._call(zone, _READ, key, lambda: self._transfer(zone, key, address))
        check_applicable(zone, current, changes)
        await self._call(zone, _CHANGE, key, lambda: self._update(zone, changes, key, address))

    # -- blocking work, in worker threads -------------------------------------------------

    def _prepare(self) -> tuple[TsigKey, str]:
        if self._key is None:
            self._key = self._read_key()
        try:
            infos = socket.getaddrinfo(self._host, self._port, proto=socket.IPPROTO_TCP)
        except OSError:
            raise DnsError(
                DnsErrorKind.UNAVAILABLE, f"Cannot resolve the name server {self._host}."
            ) from None
        return self._key, str(infos[0][4][0])

    def _read_key(self) -> TsigKey:
        try:
            return parse_tsig_key(self._tsig_file.read_text())
        except OSError as error:
            reason = error.strerror or "unreadable"
            message = f"Cannot read the TSIG key file {self._tsig_file}: {reason}."
        except ValueError as error:
            message = f"The TSIG key file {self._tsig_file} is not usable: {error}."
        raise DnsError(DnsErrorKind.UNAUTHORIZED, message)

    def _transfer(self, zone: str, key: TsigKey, address: str) -> list[DnsRecord]:
        import dns.query  # noqa: PLC0415 - only when RFC 2136 is configured
        import dns.xfr  # noqa: PLC0415
        import dns.zone  # noqa: PLC0415

        contents = dns.zone.Zone(zone + ".")
        query, _ = dns.xfr.make_query(contents, serial=None, keyring=_dns_key(key))
        dns.query.inbound_xfr(
            address, contents, query, port=self._port, timeout=self._timeout, lifetime=self._timeout
        )
        return _records_of(contents)

    def _update(self, zone: str, changes: DnsChanges, key: TsigKey, address: str) -> None:
        import dns.query  # noqa: PLC0415
        import dns.rcode  # noqa: PLC0415
        import dns.update  # noqa: PLC0415

        message = dns.update.UpdateMessage(zone + ".", keyring=_dns_key(key))
        for record in [*changes.delete, *(old for old, _ in changes.update)]:
            message.delete(_absolute(record.name), _rdata(record))
        for record in [*(new for _, new in changes.update), *changes.create]:
            message.add(_absolute(record.name), record.ttl, _rdata(record))
        answer = dns.query.tcp(message, address, port=self._port, timeout=self._timeout)
        if answer.rcode() != dns.rcode.NOERROR:
            raise _RcodeError(dns.rcode.to_text(answer.rcode()))

    # -- the I/O seam ---------------------------------------------------------------------

    async def _call(self, zone: str, action: str, key: TsigKey, work: Callable[[], _T]) -> _T:
        import dns.exception  # noqa: PLC0415
        import dns.rcode  # noqa: PLC0415
        import dns.tsig  # noqa: PLC0415
        import dns.xfr  # noqa: PLC0415

        where = self.label
        try:
            return await asyncio.to_thread(work)
        except dns.tsig.PeerBadKey:
            if action == _CHANGE:  # the same key could read the zone just before
                raise DnsError(
                    DnsErrorKind.FORBIDDEN,
                    f"The TSIG key {key.name} may read the zone {zone} but not change it.",
                ) from None
            raise DnsError(
                DnsErrorKind.UNAUTHORIZED, f"{_cap(where)} does not accept the TSIG key {key.name}."
            ) from None
        except dns.tsig.PeerError:
            raise DnsError(
                DnsErrorKind.UNAUTHORIZED,
                f"{_cap(where)} rejects the TSIG key {key.name}: wrong secret or clock.",
            ) from None
        except dns.xfr.TransferError as error:
            raise _rcode_error(dns.rcode.to_text(error.rcode), zone, action, where) from None
        except _RcodeError as error:
            raise _rcode_error(error.rcode, zone, action, where) from None
        except dns.exception.Timeout:
            raise DnsError(
                DnsErrorKind.UNAVAILABLE, f"{_cap(where)} did not answer in time."
            ) from None
        except (OSError, EOFError):
            raise DnsError(DnsErrorKind.UNAVAILABLE, f"Cannot reach {where}.") from None
        except dns.exception.DNSException:
            raise DnsError(
                DnsErrorKind.UNAVAILABLE, f"{_cap(where)} gave an answer Steward cannot read."
            ) from None


class _RcodeError(Exception):
    def __init__(self, rcode: str) -> None:
        super().__init__(rcode)
        self.rcode = rcode


def _rcode_error(rcode: str, zone: str, action: str, where: str) -> DnsError:
    """NOTAUTH: the server is not authoritative for the zone (RFC 2136 section 3.1.2);
    REFUSED: its policy forbids this key to transfer or update."""
    if rcode == "NOTAUTH":
        return DnsError(
            DnsErrorKind.ZONE_NOT_FOUND, f"{_cap(where)} does not serve the zone {zone}."
        )
    if rcode == "REFUSED":
        return DnsError(
            DnsErrorKind.FORBIDDEN, f"{_cap(where)} refused to {action} the zone {zone}."
        )
    if rcode == "SERVFAIL":
        return DnsError(
            DnsErrorKind.UNAVAILABLE, f"{_cap(where)} failed (SERVFAIL); try again later."
        )
    return DnsError(DnsErrorKind.REJECTED, f"{_cap(where)} refused the change ({rcode}).")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _dns_key(key: TsigKey) -> dns.tsig.Key:
    import dns.tsig  # noqa: PLC0415

    return dns.tsig.Key(key.name + ".", key.secret, ALGORITHMS[key.algorithm])


def _absolute(name: str) -> str:
    return canonical_name(name) + "."


def _rdata(record: DnsRecord) -> dns.rdata.Rdata:
    import dns.rdata  # noqa: PLC0415

    record = canonical(record)
    text = {
        "MX": f"{record.priority} {record.content}.",
        "CNAME": f"{record.content}.",
        "TXT": zone_txt(record.content),
    }.get(record.type, record.content)
    return dns.rdata.from_text("IN", record.type, text)


def _records_of(contents: dns.zone.Zone) -> list[DnsRecord]:
    import dns.rdatatype  # noqa: PLC0415

    origin = contents.origin
    assert origin is not None  # noqa: S101 - the zone was made with one
    records = []
    for name, ttl, rdata in contents.iterate_rdatas():
        kind = dns.rdatatype.to_text(rdata.rdtype)
        if kind not in RECORD_TYPES:
            continue
        absolute = name.derelativize(origin).to_text(omit_final_dot=True)
        content, priority = _content(rdata, origin)
        record = DnsRecord(absolute, kind, content, ttl, priority)
        records.append(canonical(record))
    return records


def _content(rdata: Any, origin: Any) -> tuple[str, int | None]:
    kind = type(rdata).__name__
    if kind in ("A", "AAAA"):
        return str(rdata.address), None
    if kind == "MX":
        return rdata.exchange.derelativize(origin).to_text(omit_final_dot=True), rdata.preference
    if kind == "CNAME":
        return rdata.target.derelativize(origin).to_text(omit_final_dot=True), None
    if kind == "TXT":
        return txt_content(b"".join(rdata.strings).decode("utf-8", errors="replace")), None
    value = rdata.value.decode("utf-8", errors="replace").replace('"', '\\"')
    return f'{rdata.flags} {rdata.tag.decode()} "{value}"', None
