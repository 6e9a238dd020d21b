"""/dns and /dns fix through the engine: on the demo's in-memory zone, and on a real Knot name
server taking RFC 2136 updates, checked afterwards with plain DNS queries."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from providers.dns.base import DnsErrorKind, DnsRecord
from providers.dns.records import canonical
from providers.dns.rfc2136 import Rfc2136Dns
from tests.conftest import OPERATOR, VIEWER, Harness
from tests.support.knot import KnotServer, query, reset_zone, zone_records

DKIM = """selector._domainkey IN TXT ( "v=DKIM1; k=rsa; "
      "p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwhgxDPAH8o0mAWsgpgt3Sl" ) ;"""


async def test_dns_lists_present_missing_and_different_records(harness: Harness) -> None:
    text = await harness.say("/dns", VIEWER)
    assert "✅ <code>example.org A 203.0.113.10</code>" in text
    assert "❌ <code>example.org MX 10 example.org</code> missing" in text
    assert "⚠️ <code>password.example.org A 203.0.113.10</code>" in text
    assert "now: <code>password.example.org A 198.51.100.4</code>" in text
    assert "/dns fix makes" in text


async def test_dns_fix_shows_the_diff_and_applies_exactly_it(harness: Harness) -> None:
    zone = harness.server.dns.zones["example.org"]
    theirs = [r for r in zone if r.type == "CNAME" or "verification" in r.content]
    assert "needs the admin role" in await harness.say("/dns fix", OPERATOR)
    prompt = await harness.say("/dns fix")
    assert "✏️ <code>password.example.org A 198.51.100.4</code> → " in prompt
    assert "🆕 <code>example.org MX 10 example.org</code>" in prompt
    assert "records Steward does not manage are left alone" in prompt
    await harness.press(1)
    assert "change(s) made in example.org" in harness.outbox.last.current.text
    assert "All records are as the server needs them." in await harness.say("/dns")
    after = harness.server.dns.zones["example.org"]
    assert all(record in after for record in theirs)  # the owner's records are untouched
    assert "Nothing to fix" in await harness.say("/dns fix")


async def test_enabling_a_service_adds_its_names_to_what_dns_needs(harness: Harness) -> None:
    assert "social.example.org" not in await harness.say("/dns")
    await harness.say("/enable pleroma")
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    assert "❌ <code>social.example.org A 203.0.113.10</code> missing" in await harness.say("/dns")


async def test_the_dkim_record_comes_from_the_key_file(harness: Harness, tmp_path: Path) -> None:
    key = tmp_path / "example.org.selector.txt"
    key.write_text(DKIM)
    deps = harness.engine.deps
    harness.engine.deps = replace(deps, site=replace(deps.site, dkim_file=key))
    text = await harness.say("/dns")
    assert "selector._domainkey.example.org TXT v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0B" in text
    key.unlink()
    assert "The DKIM key file" in await harness.say("/dns")


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        (DnsErrorKind.UNAUTHORIZED, "token"),
        (DnsErrorKind.UNAVAILABLE, "not answering"),
        (DnsErrorKind.RATE_LIMITED, "limiting requests"),
    ],
)
async def test_provider_errors_are_one_sentence_and_change_nothing(
    harness: Harness, kind: DnsErrorKind, says: str
) -> None:
    before = list(harness.server.dns.zones["example.org"])
    harness.server.dns.failure = kind
    text = await harness.say("/dns fix")
    assert text.startswith("❌ ")
    assert says in text.lower()
    assert "\n" not in text
    assert harness.server.dns.zones["example.org"] == before


async def test_a_zone_that_does_not_exist_is_named(harness: Harness) -> None:
    deps = harness.engine.deps
    harness.engine.deps = replace(deps, site=replace(deps.site, zone="nowhere.test"))
    text = await harness.say("/dns")
    assert text.startswith("❌ ")
    assert "nowhere.test" in text


async def test_without_a_provider_or_a_domain_dns_says_what_to_set(harness: Harness) -> None:
    deps = harness.engine.deps
    harness.engine.deps = replace(deps, site=replace(deps.site, domain=None))
    assert "STEWARD_DOMAIN" in await harness.say("/dns")
    harness.engine.deps = replace(deps, dns=None)
    assert "STEWARD_DNS_PROVIDER=cloudflare" in await harness.say("/dns")


async def test_dns_fix_on_a_real_name_server(
    harness: Harness, knot: KnotServer, tmp_path: Path
) -> None:
    mine = DnsRecord("example.org", "TXT", "owner-verification=42")
    reset_zone(knot, "example.org", [
        DnsRecord("example.org", "A", "203.0.113.10"),
        DnsRecord("cloud.example.org", "A", "198.51.100.9"),
        mine,
    ])  # fmt: skip
    deps = harness.engine.deps
    adapter = Rfc2136Dns(knot.address, knot.write_key(knot.key, tmp_path))
    harness.engine.deps = replace(deps, dns=adapter)

    text = await harness.say("/dns")
    assert "now: <code>cloud.example.org A 198.51.100.9</code>" in text
    await harness.say("/dns fix")
    await harness.press(1)
    assert "change(s) made in example.org" in harness.outbox.last.current.text

    assert query(knot, "cloud.example.org", "A") == ["203.0.113.10"]
    assert query(knot, "git.example.org", "AAAA") == ["2001:db8:1234::1"]
    assert query(knot, "example.org", "MX") == ["10 example.org."]
    spf = query(knot, "example.org", "TXT")
    assert '"owner-verification=42"' in spf
    assert any("v=spf1" in value for value in spf)
    assert canonical(mine) in zone_records(knot, "example.org")
    assert "All records are as the server needs them." in await harness.say("/dns")


async def test_dns_fix_applies_what_was_shown_or_nothing(harness: Harness) -> None:
    dns = harness.server.dns
    prompt = await harness.say("/dns fix")
    assert "password.example.org A 198.51.100.4" in prompt
    # Someone corrects one record by hand before the press: the shown diff is no longer true.
    zone = dns.zones["example.org"]
    zone[:] = [r for r in zone if r.name != "password.example.org"]
    before = list(zone)
    await harness.press(1)
    assert "changed since the preview, so nothing was changed" in harness.outbox.last.current.text
    assert dns.zones["example.org"] == before
