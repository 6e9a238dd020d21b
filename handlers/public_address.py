"""A dynamic public address (a home server behind a router): the scheduled check, and the
report's line.

When the address changes, the DNS records Steward owns must follow. They follow through the
same diff as /dns fix: with ``STEWARD_DNS_AUTO_FOLLOW_IP=1`` it is applied at once and the
admins are told what changed; otherwise the admins get the diff and are asked to send
/dns fix, whose preview and Confirm apply exactly what it shows. (No button: a button may only
run commands that change nothing, tests/handlers/test_run_button_checks.py.)
"""

from __future__ import annotations

import logging
from datetime import datetime

from handlers.core.context import CommandError, Context, Deps
from handlers.core.messages import Actor, ChatRef, Command, Reply, esc
from handlers.core.progress import NoProgress
from handlers.core.spec import Role
from handlers.dns import OBSERVED, compare_zone, describe_changes
from providers.dns.base import DnsError

log = logging.getLogger(__name__)
SYSTEM = Actor("system", "public-ip", "the public address check")


def _family(address: str) -> str:
    return "ipv6" if ":" in address else "ipv4"


async def follow_public_ip(deps: Deps, now: datetime) -> list[Reply]:
    """Check the address once; a message for the admins when it changed."""
    if deps.public_ip is None:
        return []
    try:
        address = await deps.public_ip.address()
    except OSError as exc:
        log.warning("public address check failed: %s", exc)
        return []  # the next check comes soon; an outage of the IP service is not news
    key = OBSERVED + _family(address)
    stored = await deps.notes.get(key)
    configured = deps.site.ipv6 if _family(address) == "ipv6" else deps.site.ipv4
    before = stored or configured
    if stored != address:
        await deps.notes.set(key, address, now)
    if before is None or before == address:
        return []  # the first sighting, or nothing new
    head = (
        f"🌐 The public address changed: <code>{esc(before)}</code> → <code>{esc(address)}</code>."
    )
    return [await _follow(deps, now, head)]


def _system_context(deps: Deps, now: datetime) -> Context:
    command = Command("dns", ("fix",), SYSTEM, ChatRef("system", "public-ip"), now)
    return Context(command, Role.ADMIN, deps, NoProgress(), now)


async def _follow(deps: Deps, now: datetime, head: str) -> Reply:
    if deps.dns is None or not deps.site.domain:
        return Reply(f"{head}\nNo DNS provider is configured, so no record was changed.")
    ctx = _system_context(deps, now)
    try:
        zone, result = await compare_zone(ctx)
    except CommandError as exc:
        return Reply(f"{head}\nThe DNS records could not be compared: {exc}")
    if result.ok:
        return Reply(f"{head}\nThe DNS records already point there.", silent=True)
    changes = "\n".join(describe_changes(result.changes))
    if not deps.site.follow_ip:
        return Reply(
            f"{head}\n/dns fix would make these changes in {esc(zone)}:\n{changes}\n"
            "Send /dns fix to see them again and confirm."
        )
    try:
        assert deps.dns is not None  # noqa: S101 - checked above
        await deps.dns.apply(zone, result.changes)
    except DnsError as exc:
        return Reply(f"{head}\n⚠️ Updating {esc(zone)} failed, nothing was changed: {esc(exc)}. "
                     "/dns fix tries again.")  # fmt: skip
    return Reply(f"{head}\n✅ {result.changes.count} change(s) made in {esc(zone)}:\n{changes}")


async def address_lines(deps: Deps) -> list[str]:
    """For the report: the public address now, and whether the domain's A/AAAA say it."""
    if deps.public_ip is None:
        return []
    try:
        address = await deps.public_ip.address()
    except OSError as exc:
        return [f"❔ public address: {esc(exc)}"]
    line = f"public address <code>{esc(address)}</code>"
    if deps.dns is None or not deps.site.domain:
        return [f"✅ {line}"]
    apex = deps.site.domain.lower().rstrip(".")
    kind = "AAAA" if ":" in address else "A"
    try:
        records = await deps.dns.list_records(deps.site.zone or deps.site.domain)
    except DnsError as exc:
        return [f"❔ {line}; the DNS cannot be read: {esc(exc)}"]
    listed = sorted(r.content for r in records if r.name == apex and r.type == kind)
    if address in listed:
        return [f"✅ {line}, as the DNS says"]
    said = ", ".join(listed) or "nothing"
    return [f"⚠️ {line}, but the DNS says {esc(said)}: /dns fix"]
