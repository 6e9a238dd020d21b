"""/dns and /dns fix: the records the server needs, computed from the desired state, against
what the zone holds. The fix applies exactly the shown diff, and only to Steward's records."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.core.context import CommandError, Context, Deps
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import Role
from handlers.rebuild import read_desired
from providers.dns.base import DnsChanges, DnsError, DnsRecord
from providers.dns.records import DnsDiff, diff, parse_dkim_file, required_records
from providers.server.base import ServerError

if TYPE_CHECKING:
    from providers.dns.base import DnsProvider

commands = Registry()
NO_DNS = (
    "/dns needs a DNS provider: <code>STEWARD_DNS_PROVIDER=cloudflare</code> (with "
    "<code>STEWARD_CLOUDFLARE_TOKEN</code>) or <code>rfc2136</code> (with "
    "<code>STEWARD_RFC2136_SERVER</code> and <code>STEWARD_RFC2136_TSIG_FILE</code>)."
)
_ICON = {"present": "✅", "missing": "❌", "different": "⚠️"}


def _provider(ctx: Context) -> DnsProvider:
    if ctx.deps.dns is None:
        raise CommandError(NO_DNS)
    return ctx.deps.dns


async def required(ctx: Context) -> tuple[str, list[DnsRecord]]:
    """The zone, and what it must hold for the services enabled now."""
    site = ctx.deps.site
    if not site.domain:
        raise CommandError("/dns needs the server's domain: set <code>STEWARD_DOMAIN</code>.")
    ipv4, ipv6 = await _addresses(ctx)
    if ipv4 is None and ipv6 is None:
        raise CommandError(
            "I do not know this server's public address: set <code>STEWARD_PUBLIC_IPV4</code> "
            "(and <code>STEWARD_PUBLIC_IPV6</code>)."
        )
    state = await read_desired(ctx)
    catalogue = ctx.deps.catalogue
    enabled = [sid for sid in catalogue if state.enabled(sid)]
    subdomains = [sub for sid in enabled for sub in catalogue[sid].subdomains]
    mail = site.mail_service in enabled
    dkim, selector = await _dkim(site.dkim_file, site.dkim_selector) if mail else (None, "")
    records = required_records(
        site.domain, ipv4=ipv4, ipv6=ipv6, subdomains=subdomains, mail=mail, dkim=dkim,
        dkim_selector=selector or site.dkim_selector,
    )  # fmt: skip
    return site.zone or site.domain, records


OBSERVED = "publicip:"  # notes: the public address last seen, by family (ipv4, ipv6)


async def observed_addresses(deps: Deps) -> tuple[str | None, str | None]:
    """The public addresses the dynamic-IP check saw last, when it runs."""
    if deps.public_ip is None:
        return None, None
    return await deps.notes.get(OBSERVED + "ipv4"), await deps.notes.get(OBSERVED + "ipv6")


async def _addresses(ctx: Context) -> tuple[str | None, str | None]:
    site = ctx.deps.site
    ipv4, ipv6 = await observed_addresses(ctx.deps)
    if ipv4 is None and ipv6 is None and ctx.deps.public_ip is not None:
        # Not checked yet (a new install): ask now rather than trust a configured address.
        try:
            seen = await ctx.deps.public_ip.address()
        except OSError:
            seen = None
        ipv4, ipv6 = (None, seen) if seen and ":" in seen else (seen, None)
    if ipv4 or ipv6:
        return ipv4 or site.ipv4, ipv6 or site.ipv6
    if site.ipv4 or site.ipv6:
        return site.ipv4, site.ipv6
    if ctx.deps.cloud is not None:
        try:
            info = await ctx.deps.cloud.this_server()
        except ServerError as exc:
            raise CommandError(
                f"I could not ask the cloud for this server's address: {esc(exc)}"
            ) from None
        return info.ipv4, _host_of(info.ipv6)
    return None, None


def _host_of(ipv6: str | None) -> str | None:
    """Hetzner gives the server's /64; the server answers on its first address."""
    if not ipv6:
        return None
    if "/" not in ipv6:
        return ipv6
    return str(ipaddress.ip_network(ipv6, strict=False)[1])


async def _dkim(path: Path | None, selector: str) -> tuple[str | None, str]:
    if path is None:
        return None, selector
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        name, value = parse_dkim_file(text)
    except (OSError, ValueError) as exc:
        raise CommandError(f"The DKIM key file {esc(path)} cannot be read: {esc(exc)}") from None
    if name and "._domainkey" in name:
        selector = name.split("._domainkey", 1)[0]
    return value, selector


async def compare_zone(ctx: Context) -> tuple[str, DnsDiff]:
    zone, records = await required(ctx)
    try:
        present = await _provider(ctx).list_records(zone)
    except DnsError as exc:
        raise CommandError(esc(exc)) from None
    return zone, diff(records, present)


def _line(record: DnsRecord) -> str:
    return f"<code>{esc(record.describe())}</code>"


@commands.command("dns", "Check the DNS records the server needs")
async def dns(ctx: Context) -> Reply:
    provider = _provider(ctx)
    zone, result = await compare_zone(ctx)
    lines = [f"<b>DNS of {esc(zone)}</b> at {esc(provider.label)}"]
    for check in result.checks:
        line = f"{_ICON[check.state]} {_line(check.record)}"
        if check.state == "different":
            found = ", ".join(_line(record) for record in check.found)
            line += f"\n    now: {found}"
        elif check.state == "missing":
            line += " missing"
        lines.append(line)
    if result.ok:
        lines.append("All records are as the server needs them.")
    else:
        lines.append(f"/dns fix makes {result.changes.count} change(s); nothing else is touched.")
    return Reply("\n".join(lines))


def describe_changes(changes: DnsChanges) -> list[str]:
    lines = [f"🆕 {_line(record)}" for record in changes.create]
    lines += [f"✏️ {_line(old)} → {_line(new)}" for old, new in changes.update]
    lines += [f"🗑 {_line(record)}" for record in changes.delete]
    return lines


def _shown_key(ctx: Context) -> str:
    return f"dnsfix:{ctx.command.chat.transport}:{ctx.command.chat.chat_id}:{ctx.command.actor.key}"


def _digest(zone: str, changes: DnsChanges) -> str:
    return hashlib.sha256(f"{zone}\n{changes!r}".encode()).hexdigest()


@commands.command("dns fix", "Create or correct the records the server needs", role=Role.ADMIN,
                  changes=True, destructive=True)  # fmt: skip
async def dns_fix(ctx: Context) -> Reply:
    provider = _provider(ctx)
    zone, result = await compare_zone(ctx)
    if result.ok:
        return Reply("Nothing to fix: all records are as the server needs them.")
    shown = await ctx.deps.notes.get(_shown_key(ctx))
    if shown != _digest(zone, result.changes):
        # Exactly what was confirmed, or nothing: the zone or the services changed since.
        raise CommandError(
            "The records changed since the preview, so nothing was changed. Send /dns fix "
            "again to see the changes as they are now."
        )
    await ctx.deps.notes.delete(_shown_key(ctx))
    try:
        await provider.apply(zone, result.changes)
    except DnsError as exc:
        raise CommandError(f"Nothing was changed: {esc(exc)}") from None
    return Reply(f"✅ {result.changes.count} change(s) made in {esc(zone)}:\n"
                 + "\n".join(describe_changes(result.changes)))  # fmt: skip


@dns_fix.preview
async def _dns_fix_preview(ctx: Context) -> str:
    provider = _provider(ctx)
    zone, result = await compare_zone(ctx)
    if result.ok:
        raise CommandError("Nothing to fix: all records are as the server needs them.")
    await ctx.deps.notes.set(_shown_key(ctx), _digest(zone, result.changes), ctx.now)
    return (
        f"Changes in {esc(zone)} at {esc(provider.label)}; records Steward does not manage are "
        "left alone:\n" + "\n".join(describe_changes(result.changes))
    )
