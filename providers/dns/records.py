"""What the server's zone must hold, how that compares with what it holds, and one spelling
for every record.

Pure functions, no I/O. Steward owns only *slots* of a zone: the whole (name, type) pair for
A, AAAA, MX, CNAME and the DKIM TXT, but at a shared name only the TXT records that start with
``v=spf1`` (or ``v=DMARC1``), and only the CAA record with its own tag and issuer. A user's
verification TXT beside the SPF record, another CA's CAA record or an A record at a name
Steward does not serve are never touched. One more slot: a CNAME at a name where Steward
needs a record must go, since a CNAME cannot share its name with other data.

TTLs are not compared: a record with the right data and another TTL is present.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Literal

from providers.dns.base import DnsChanges, DnsError, DnsErrorKind, DnsRecord
from values import value

TXT_CHUNK_BYTES = 255
_CAA = re.compile(r"\s*(\d{1,3})\s+([A-Za-z0-9]+)\s+(.*?)\s*", re.DOTALL)

# -- canonical form ---------------------------------------------------------------------------


def canonical_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def canonical(record: DnsRecord) -> DnsRecord:
    """The record in its one spelling; ValueError if its content does not parse."""
    name = canonical_name(record.name)
    content, priority = record.content.strip(), record.priority
    if record.type == "A":
        content = str(ipaddress.IPv4Address(content))
    elif record.type == "AAAA":
        content = ipaddress.IPv6Address(content).compressed
    elif record.type == "MX":
        content, priority = _mx(content, priority)
    elif record.type == "CNAME":
        content = canonical_name(content)
    elif record.type == "TXT":
        content = txt_content(parse_txt(record.content))
    elif record.type == "CAA":
        content = canonical_caa(content)
    if record.type != "MX":
        priority = None
    return replace(record, name=name, content=content, priority=priority)


def _mx(content: str, priority: int | None) -> tuple[str, int]:
    parts = content.split()
    if len(parts) == 2 and parts[0].isdigit():
        return canonical_name(parts[1]), int(parts[0])
    if len(parts) != 1 or priority is None:
        raise ValueError(f"MX record without a priority: {content!r}")
    return canonical_name(parts[0]), priority


def parse_txt(content: str) -> str:
    """The text of a TXT record: quoted character strings (``"a" "b"``) are unquoted and
    joined; anything that does not start with a quote is the text itself."""
    if not _reads_quoted(content):
        return content
    return "".join(_quoted_strings(content.strip()))


def txt_content(text: str) -> str:
    """A TXT record's text as canonical content: the text itself, unless it would read as
    quoted strings (it begins with a quote): then its quoted spelling, which reads back as the
    same text. So the canonical form of a canonical record is itself."""
    return quote_txt(text) if _reads_quoted(text) else text


def zone_txt(content: str) -> str:
    """The zone-file spelling of a canonical TXT record's content, as providers write it."""
    return quote_txt(parse_txt(content))


def _reads_quoted(content: str) -> bool:
    return content.lstrip().startswith('"')


def _quoted_strings(text: str) -> list[str]:
    strings: list[str] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        if text[i] != '"':
            raise ValueError(f"text outside quotes in a TXT record: {text!r}")
        value, i = _read_quoted(text, i + 1)
        strings.append(value)
    return strings


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    """Read a character string whose opening quote is just before ``i``; return it and the
    index after its closing quote. ``\\DDD`` is a decimal byte, ``\\X`` is X (RFC 1035)."""
    raw = bytearray()
    while i < len(text):
        char = text[i]
        if char == '"':
            return raw.decode("utf-8", errors="replace"), i + 1
        if char == "\\" and i + 3 < len(text) and text[i + 1 : i + 4].isdigit():
            raw.append(int(text[i + 1 : i + 4]) & 0xFF)
            i += 4
            continue
        if char == "\\" and i + 1 < len(text):
            i += 1
            char = text[i]
        raw += char.encode()
        i += 1
    raise ValueError(f"unterminated quote in a TXT record: {text!r}")


def txt_strings(text: str) -> list[str]:
    """Split a TXT text into character strings of at most 255 bytes, never inside a
    character's UTF-8 encoding."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode())
        if size + width > TXT_CHUNK_BYTES:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    chunks.append("".join(current))
    return chunks


def quote_txt(text: str) -> str:
    """The zone-file spelling of a TXT text: quoted strings of at most 255 bytes."""
    return " ".join(f'"{_escape(chunk)}"' for chunk in txt_strings(text))


def _escape(chunk: str) -> str:
    return chunk.replace("\\", "\\\\").replace('"', '\\"')


def canonical_caa(content: str) -> str:
    match = _CAA.fullmatch(content)
    if match is None:
        raise ValueError(f"CAA record is not 'flags tag value': {content!r}")
    flags, tag, value = match.groups()
    if value.startswith('"'):
        value = "".join(_quoted_strings(value))
    return f'{int(flags)} {tag.lower()} "{_escape(value)}"'


def caa_parts(content: str) -> tuple[int, str, str]:
    """Flags, tag and value of a canonical CAA content."""
    flags, tag, quoted = canonical_caa(content).split(" ", 2)
    return int(flags), tag, "".join(_quoted_strings(quoted))


# -- DKIM key files ---------------------------------------------------------------------------


def parse_dkim_file(text: str) -> tuple[str | None, str]:
    """Name and value of the TXT record in an opendkim or rspamd key file::

        mail._domainkey IN TXT ( "v=DKIM1; k=rsa; "
                "p=MIIBIjANBg..." )  ; ----- DKIM key mail for example.org

    The name is None when the file holds only the value (``v=DKIM1; k=rsa; p=...``)."""
    words, strings = _zone_line_tokens(text)
    if not strings:
        value = " ".join(text.split())
        if not value.lower().startswith("v=dkim1"):
            raise ValueError("the DKIM key file holds no TXT record")
        return None, value
    name = words[0] if words and words[0].upper() not in {"IN", "TXT", "("} else None
    return name, "".join(strings)


def _zone_line_tokens(text: str) -> tuple[list[str], list[str]]:
    """Bare words before the first quoted string, and every quoted string; ``;`` starts a
    comment outside quotes."""
    words: list[str] = []
    strings: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == ";":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif char == '"':
            value, i = _read_quoted(text, i + 1)
            strings.append(value)
        elif char.isspace() or char in "()":
            i += 1
        else:
            end = i
            while end < len(text) and not text[end].isspace() and text[end] not in '();"':
                end += 1
            if not strings:
                words.append(text[i:end])
            i = end
    return words, strings


# -- what the zone must hold ------------------------------------------------------------------


def required_records(
    domain: str,
    *,
    ipv4: str | None,
    ipv6: str | None = None,
    subdomains: Iterable[str] = (),
    mail: bool = False,
    dkim: str | None = None,
    dkim_selector: str = "selector",
    dmarc: str = "v=DMARC1; p=none",
    caa_issuer: str | None = "letsencrypt.org",
    ttl: int = 3600,
) -> list[DnsRecord]:
    """The records the server needs. ``subdomains`` are labels ("cloud") or names under the
    domain; ``dkim`` is the content of the DKIM key file. The mail host is the domain."""
    domain = canonical_name(domain)
    names = [domain, *(_under(domain, sub) for sub in subdomains)]
    records: list[DnsRecord] = []
    for name in dict.fromkeys(names):
        if ipv4:
            records.append(DnsRecord(name, "A", ipv4, ttl))
        if ipv6:
            records.append(DnsRecord(name, "AAAA", ipv6, ttl))
    if mail:
        records += _mail_records(
            domain,
            ipv4=ipv4,
            ipv6=ipv6,
            dkim=dkim,
            selector=dkim_selector,
            dmarc=dmarc,
            ttl=ttl,
        )
    if caa_issuer:
        records.append(DnsRecord(domain, "CAA", f'0 issue "{caa_issuer}"', ttl))
    return [canonical(record) for record in records]


def _under(domain: str, sub: str) -> str:
    name = canonical_name(sub)
    if name == domain or name.endswith("." + domain):
        return name
    return f"{name}.{domain}"


def _mail_records(
    domain: str,
    *,
    ipv4: str | None,
    ipv6: str | None,
    dkim: str | None,
    selector: str,
    dmarc: str,
    ttl: int,
) -> list[DnsRecord]:
    spf = ["v=spf1", "a", "mx"]
    if ipv4:
        spf.append(f"ip4:{ipaddress.IPv4Address(ipv4.strip())}")
    if ipv6:
        spf.append(f"ip6:{ipaddress.IPv6Address(ipv6.strip()).compressed}")
    spf.append("-all")
    records = [
        DnsRecord(domain, "MX", domain, ttl, priority=10),
        DnsRecord(domain, "TXT", " ".join(spf), ttl),
        DnsRecord(f"_dmarc.{domain}", "TXT", dmarc, ttl),
    ]
    if dkim is not None:
        name, value = parse_dkim_file(dkim)
        dkim_name = _dkim_name(domain, name or f"{selector}._domainkey")
        records.append(DnsRecord(dkim_name, "TXT", value, ttl))
    return records


def _dkim_name(domain: str, name: str) -> str:
    if name.endswith("."):
        return canonical_name(name)
    return _under(domain, name)


# -- slots: the parts of a zone Steward owns --------------------------------------------------


@value
class Slot:
    """Which records at (name, type) belong to one required record's place in the zone.

    ``owns`` is "all" (the whole pair), "prefix:<text>" (TXT records starting with the text,
    case-insensitive), "caa:<tag> <value>" (the CAA record with that tag and value) or
    "same:<content>" (that exact content)."""

    name: str
    type: str
    owns: str

    def holds(self, record: DnsRecord) -> bool:
        if (record.name, record.type) != (self.name, self.type):
            return False
        kind, _, arg = self.owns.partition(":")
        if kind == "prefix":
            return record.content.lower().startswith(arg)
        if kind == "caa":
            try:
                _, tag, value = caa_parts(record.content)
            except ValueError:
                return False
            return f"{tag} {value.lower()}" == arg
        if kind == "same":
            return record.content == arg
        return True


def slot_of(record: DnsRecord) -> Slot:
    if record.type == "TXT":
        text = record.content.lower()
        for prefix in ("v=spf1", "v=dmarc1"):
            if text.startswith(prefix):
                return Slot(record.name, "TXT", f"prefix:{prefix}")
        if text.startswith("v=dkim1"):
            return Slot(record.name, "TXT", "all")
        return Slot(record.name, "TXT", f"same:{record.content}")
    if record.type == "CAA":
        _, tag, value = caa_parts(record.content)
        return Slot(record.name, "CAA", f"caa:{tag} {value.lower()}")
    return Slot(record.name, record.type, "all")


def managed_slots(required: Iterable[DnsRecord]) -> list[Slot]:
    """The slots of ``required``, and a CNAME slot (which must stay empty) at every name
    that needs other data."""
    slots = dict.fromkeys(slot_of(record) for record in required)
    for slot in list(slots):
        if slot.type != "CNAME":
            slots.setdefault(Slot(slot.name, "CNAME", "all"))
    return list(slots)


def is_managed(record: DnsRecord, slots: Sequence[Slot]) -> bool:
    return any(slot.holds(record) for slot in slots)


# -- diff -------------------------------------------------------------------------------------

CheckState = Literal["present", "missing", "different"]


@value
class RecordCheck:
    """One required record: there as required, missing from its slot, or its slot holds
    ``found`` instead."""

    record: DnsRecord
    state: CheckState
    found: tuple[DnsRecord, ...] = ()


@value
class DnsDiff:
    checks: tuple[RecordCheck, ...]
    changes: DnsChanges

    @property
    def ok(self) -> bool:
        return not self.changes


def diff(required: Iterable[DnsRecord], present: Iterable[DnsRecord]) -> DnsDiff:
    """Compare ``required`` with the zone's ``present`` records. The changes touch only
    Steward's slots: applying them makes each slot hold exactly its required records."""
    wanted = _unique(canonical(record) for record in required)
    have = _unique(_tolerant(record) for record in present)
    checks: list[RecordCheck] = []
    create: list[DnsRecord] = []
    update: list[tuple[DnsRecord, DnsRecord]] = []
    delete: list[DnsRecord] = []
    for slot in managed_slots(wanted):
        needed = [record for record in wanted if slot_of(record) == slot]
        found = [record for record in have if slot.holds(record)]
        slot_checks, slot_changes = _diff_slot(needed, found)
        checks += slot_checks
        create += slot_changes.create
        update += slot_changes.update
        delete += slot_changes.delete
    order = {record.data: i for i, record in enumerate(wanted)}
    checks.sort(key=lambda check: order[check.record.data])
    return DnsDiff(tuple(checks), DnsChanges(tuple(create), tuple(update), tuple(delete)))


def _diff_slot(
    needed: list[DnsRecord], found: list[DnsRecord]
) -> tuple[list[RecordCheck], DnsChanges]:
    found_data = {record.data for record in found}
    needed_data = {record.data for record in needed}
    absent = [record for record in needed if record.data not in found_data]
    surplus = sorted(
        (record for record in found if record.data not in needed_data), key=DnsRecord.describe
    )
    checks = [
        RecordCheck(record, "present")
        if record.data in found_data
        else RecordCheck(record, "different" if found else "missing", tuple(surplus))
        for record in needed
    ]
    pairs = list(zip(surplus, absent, strict=False))
    changes = DnsChanges(
        create=tuple(absent[len(pairs) :]),
        update=tuple(pairs),
        delete=tuple(surplus[len(pairs) :]),
    )
    return checks, changes


def _tolerant(record: DnsRecord) -> DnsRecord:
    """A present record in canonical form, or as it is when its content does not parse
    (such a record never equals a required one)."""
    try:
        return canonical(record)
    except ValueError:
        return record


def _unique(records: Iterable[DnsRecord]) -> list[DnsRecord]:
    seen: dict[tuple[str, str, str, int | None], DnsRecord] = {}
    for record in records:
        seen.setdefault(record.data, record)
    return list(seen.values())


# -- applying changes -------------------------------------------------------------------------


def check_applicable(zone: str, current: Iterable[DnsRecord], changes: DnsChanges) -> None:
    """DnsError unless every change fits the zone as it is now: records to update or delete
    are there, records to create are not, and every name is inside the zone."""
    zone = canonical_name(zone)
    have = {_tolerant(record).data for record in current}
    olds = [old for old, _ in changes.update] + list(changes.delete)
    news = [new for _, new in changes.update] + list(changes.create)
    for record in olds + news:
        name = canonical_name(record.name)
        if name != zone and not name.endswith("." + zone):
            raise DnsError(DnsErrorKind.REJECTED, f"{name} is not in the zone {zone}.")
    for record in olds:
        if canonical(record).data not in have:
            raise DnsError(DnsErrorKind.CONFLICT, _changed(zone, record, "is no longer there"))
    gone = {canonical(record).data for record in olds}
    for record in news:
        data = canonical(record).data
        if data in have and data not in gone:
            raise DnsError(DnsErrorKind.CONFLICT, _changed(zone, record, "is already there"))


def _changed(zone: str, record: DnsRecord, what: str) -> str:
    return f"The zone {zone} changed meanwhile: {canonical(record).describe()} {what}."


def apply_changes(records: Iterable[DnsRecord], changes: DnsChanges) -> list[DnsRecord]:
    """The zone after ``changes``: deletes, then updates, then creates. Records are matched
    by their data; call ``check_applicable`` first."""
    result = [_tolerant(record) for record in records]
    removed = {canonical(record).data for record in changes.delete}
    removed |= {canonical(old).data for old, _ in changes.update}
    result = [record for record in result if record.data not in removed]
    result += [canonical(new) for _, new in changes.update]
    result += [canonical(record) for record in changes.create]
    return _unique(result)
