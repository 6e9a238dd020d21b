"""A real authoritative name server for the RFC 2136 tests: Debian's Knot DNS (``knotd``,
package ``knot``) on a loopback port, serving test zones from a temporary folder.

Two TSIG keys: ``steward`` may transfer and update the zones, ``reader`` may only transfer
them. Dynamic updates bump the SOA serial and live in the journal (the zone file is never
rewritten). Start to first answer takes about 20 ms.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update
import dns.xfr
import dns.zone
import pytest

from providers.dns.base import RECORD_TYPES, DnsRecord
from providers.dns.records import canonical, quote_txt
from tests.support.ports import free_port

KNOTD_SEARCH = ("/usr/sbin/knotd", "/usr/bin/knotd")
ALGORITHM = "hmac-sha256"


@dataclass(frozen=True)
class KnotKey:
    name: str
    secret: str

    def keyring(self) -> dns.tsig.Key:
        return dns.tsig.Key(self.name + ".", self.secret, ALGORITHM)

    def bind_format(self) -> str:
        return f'key "{self.name}" {{\n\talgorithm {ALGORITHM};\n\tsecret "{self.secret}";\n}};\n'

    def line_format(self) -> str:
        return f"{self.name}:{ALGORITHM}:{self.secret}\n"


@dataclass(frozen=True)
class KnotServer:
    port: int
    zones: tuple[str, ...]
    key: KnotKey
    reader: KnotKey
    root: Path
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def write_key(self, key: KnotKey, folder: Path, style: str = "bind") -> Path:
        path = folder / f"{key.name}.{style}.key"
        path.write_text(key.bind_format() if style == "bind" else key.line_format())
        return path

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "knotd.log").read_text()[-4000:]
        return ""


def find_knotd() -> str:
    found = shutil.which("knotd") or next((p for p in KNOTD_SEARCH if Path(p).exists()), None)
    if found is None:
        raise RuntimeError(
            "knotd is needed for the RFC 2136 tests: apt-get install --no-install-recommends knot"
        )
    return found


def _secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _config(root: Path, port: int, zones: Iterable[str], key: KnotKey, reader: KnotKey) -> str:
    zone_lines = "".join(f"  - domain: {zone}\n    acl: [steward, reader]\n" for zone in zones)
    return f"""\
server:
    rundir: "{root / "run"}"
    listen: 127.0.0.1@{port}
log:
  - target: "{root / "knotd.log"}"
    any: info
database:
    storage: "{root / "db"}"
    journal-db-mode: asynchronous
key:
  - id: {key.name}
    algorithm: {ALGORITHM}
    secret: {key.secret}
  - id: {reader.name}
    algorithm: {ALGORITHM}
    secret: {reader.secret}
acl:
  - id: steward
    key: {key.name}
    action: [transfer, update]
  - id: reader
    key: {reader.name}
    action: transfer
template:
  - id: default
    storage: "{root / "zones"}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: all
zone:
{zone_lines}"""


def _zone_file(zone: str) -> str:
    return (
        f"$ORIGIN {zone}.\n$TTL 300\n"
        "@ SOA ns1 hostmaster 1 3600 600 86400 300\n"
        "@ NS ns1\nns1 A 127.0.0.1\n"
    )


@contextlib.contextmanager
def knot_server(zones: Iterable[str] = ("example.test",)) -> Iterator[KnotServer]:
    """Start knotd, wait until it answers, yield it; stop it and delete its folder after."""
    knotd = find_knotd()
    zones = tuple(zones)
    root = Path(tempfile.mkdtemp(prefix="steward-knot-"))
    for folder in ("run", "db", "zones"):
        (root / folder).mkdir()
    for zone in zones:
        (root / "zones" / f"{zone}.zone").write_text(_zone_file(zone))
    key, reader = KnotKey("steward", _secret()), KnotKey("reader", _secret())
    port = free_port()
    (root / "knot.conf").write_text(_config(root, port, zones, key, reader))
    server = KnotServer(port, zones, key, reader, root)
    process = subprocess.Popen(
        [knotd, "-c", str(root / "knot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until_serving(server, process)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_serving(server: KnotServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"knotd exited with {process.returncode}:\n{err}{server.log()}")
        with contextlib.suppress(OSError, dns.exception.DNSException):
            query = dns.message.make_query(server.zones[0], "SOA")
            answer = dns.query.tcp(query, server.host, port=server.port, timeout=0.5)
            if answer.answer:
                return
        time.sleep(0.01)
    raise RuntimeError(f"knotd did not answer on port {server.port}:\n{server.log()}")


@pytest.fixture(scope="session", name="knot")
def knot_fixture() -> Iterator[KnotServer]:
    """One Knot server for the session, serving example.org; tests reset the zone with
    ``reset_zone``. It fails, never skips, when knotd is missing."""
    with knot_server(["example.org"]) as server:
        yield server


# -- independent access, for assertions -------------------------------------------------------


def transfer(server: KnotServer, zone: str) -> dns.zone.Zone:
    contents = dns.zone.Zone(zone + ".")
    query, _ = dns.xfr.make_query(contents, serial=None, keyring=server.key.keyring())
    dns.query.inbound_xfr(server.host, contents, query, port=server.port, timeout=5, lifetime=5)
    return contents


def zone_records(server: KnotServer, zone: str) -> list[DnsRecord]:
    """The zone's A, AAAA, MX, TXT, CAA and CNAME records from an AXFR, spelled from the
    zone-file text of each record (not through the adapter's conversion)."""
    origin = dns.name.from_text(zone + ".")
    records = []
    for name, ttl, rdata in transfer(server, zone).iterate_rdatas():
        kind = dns.rdatatype.to_text(rdata.rdtype)
        if kind in RECORD_TYPES:
            text = rdata.to_text(origin=origin, relativize=False)
            absolute = name.derelativize(origin).to_text()
            records.append(canonical(DnsRecord(absolute, kind, text, ttl)))
    return records


def serial(server: KnotServer, zone: str) -> int:
    answer = query(server, zone, "SOA")
    return int(answer[0].split()[2])


def query(server: KnotServer, name: str, rdtype: str) -> list[str]:
    """What the server answers to an ordinary query (no TSIG), as rdata texts."""
    message = dns.message.make_query(name + ".", rdtype)
    answer = dns.query.udp(message, server.host, port=server.port, timeout=5)
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(
        rdata.to_text() for rrset in answer.answer if rrset.rdtype == wanted for rdata in rrset
    )


def reset_zone(server: KnotServer, zone: str, records: Iterable[DnsRecord]) -> None:
    """Make the zone hold only its SOA, NS and ns1 glue plus ``records``, in one update."""
    origin = dns.name.from_text(zone + ".")
    update = dns.update.UpdateMessage(origin, keyring=server.key.keyring())
    keep = {dns.rdatatype.SOA, dns.rdatatype.NS}
    for name, rdataset in transfer(server, zone).iterate_rdatasets():
        absolute = name.derelativize(origin)
        if absolute == origin and rdataset.rdtype in keep:
            continue
        if absolute.to_text() == f"ns1.{zone}." and rdataset.rdtype == dns.rdatatype.A:
            continue
        update.delete(absolute, rdataset.rdtype)
    for record in map(canonical, records):
        update.add(record.name + ".", record.ttl, _rdata(record))
    answer = dns.query.tcp(update, server.host, port=server.port, timeout=5)
    if answer.rcode() != 0:
        raise RuntimeError(f"resetting {zone} failed: rcode {answer.rcode()}\n{server.log()}")


def _rdata(record: DnsRecord) -> dns.rdata.Rdata:
    text = {
        "MX": f"{record.priority} {record.content}.",
        "CNAME": f"{record.content}.",
        "TXT": quote_txt(record.content),
    }.get(record.type, record.content)
    return dns.rdata.from_text(dns.rdataclass.IN, record.type, text)
