"""The dynamic public address: a loopback server plays the "what is my IP" service, and the
records live on the real Knot server the suite starts (RFC 2136 updates)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from handlers.core.context import Site
from handlers.public_address import follow_public_ip
from providers.demo import DEMO_DOMAIN
from providers.dns.base import DnsRecord
from providers.dns.rfc2136 import Rfc2136Dns
from providers.host.public_ip import HttpPublicAddress
from tests.conftest import Harness
from tests.support.home_fakes import AddressServer
from tests.support.knot import KnotServer, query, reset_zone

OLD, NEW = "203.0.113.10", "198.51.100.20"


def _at_home(harness: Harness, knot: KnotServer, server: AddressServer, tmp_path: Path,
             *, follow: bool) -> None:  # fmt: skip
    reset_zone(knot, "example.org", [
        DnsRecord("example.org", "A", OLD),
        DnsRecord("cloud.example.org", "A", OLD),
        DnsRecord("blog.example.org", "A", "192.0.2.99"),  # the owner's, not Steward's
    ])  # fmt: skip
    harness.engine.deps = replace(
        harness.engine.deps,
        cloud=None,  # one's own hardware
        dns=Rfc2136Dns(knot.address, knot.write_key(knot.key, tmp_path)),
        public_ip=HttpPublicAddress(server.url, timeout=5),
        site=Site(domain=DEMO_DOMAIN, ipv4=OLD, follow_ip=follow),
    )


async def test_a_changed_address_is_followed_at_once_when_asked_to(
    harness: Harness, knot: KnotServer, address_server: AddressServer, tmp_path: Path
) -> None:
    _at_home(harness, knot, address_server, tmp_path, follow=True)
    assert await follow_public_ip(harness.engine.deps, harness.clock()) == []  # unchanged

    address_server.answer = NEW
    (told,) = await follow_public_ip(harness.engine.deps, harness.clock())
    again = await follow_public_ip(harness.engine.deps, harness.clock())

    assert f"<code>{OLD}</code> → <code>{NEW}</code>" in told.text
    assert "change(s) made in example.org" in told.text
    assert query(knot, "example.org", "A") == [NEW]
    assert query(knot, "cloud.example.org", "A") == [NEW]
    assert query(knot, "blog.example.org", "A") == ["192.0.2.99"]
    assert again == []  # told once


async def test_without_auto_follow_the_admins_are_asked_to_confirm_dns_fix(
    harness: Harness, knot: KnotServer, address_server: AddressServer, tmp_path: Path
) -> None:
    _at_home(harness, knot, address_server, tmp_path, follow=False)
    await follow_public_ip(harness.engine.deps, harness.clock())
    address_server.answer = NEW
    (told,) = await follow_public_ip(harness.engine.deps, harness.clock())
    assert query(knot, "example.org", "A") == [OLD]  # nothing changed before the Confirm
    assert f"✏️ <code>example.org A {OLD}</code> → <code>example.org A {NEW}</code>" in told.text
    assert "Send /dns fix" in told.text

    preview = await harness.say("/dns fix")
    assert f"<code>example.org A {NEW}</code>" in preview
    await harness.press(1)  # Confirm

    assert query(knot, "example.org", "A") == [NEW]
    assert query(knot, "blog.example.org", "A") == ["192.0.2.99"]
    assert "All records are as the server needs them." in await harness.say("/dns")


async def test_an_unreachable_address_service_changes_nothing_and_says_nothing(
    harness: Harness, knot: KnotServer, address_server: AddressServer, tmp_path: Path
) -> None:
    _at_home(harness, knot, address_server, tmp_path, follow=True)
    address_server.status = 503
    assert await follow_public_ip(harness.engine.deps, harness.clock()) == []
    assert query(knot, "example.org", "A") == [OLD]
    assert await harness.engine.deps.notes.get("publicip:ipv4") is None
