"""/audit: who did what, when, and how it ended."""

from __future__ import annotations

from handlers.core.context import Context
from handlers.core.messages import Reply, esc
from handlers.core.records import AuditEntry
from handlers.core.registry import Registry
from handlers.core.spec import Arg, Integer, Role

commands = Registry()


@commands.command(
    "audit",
    "Show the newest audit log rows",
    args=(Arg("count", Integer("N", 1, 100), required=False, help="rows to show, 1-100"),),
    role=Role.ADMIN,
)
async def audit(ctx: Context, count: int | None) -> Reply:
    entries = await ctx.deps.audit.recent(count or 10)
    if not entries:
        return Reply("The audit log is empty.")
    lines = [f"<b>Audit log</b> (newest last, {len(entries)} rows)"]
    lines += [_line(ctx, entry) for entry in reversed(entries)]
    return Reply("\n".join(lines), sensitive=True)


def _line(ctx: Context, entry: AuditEntry) -> str:
    when = ctx.local(entry.at).strftime("%m-%d %H:%M:%S")
    what = " ".join([f"/{entry.command}", *entry.args]) if entry.command else ""
    parts = [when, entry.event.value, f"{entry.actor.transport}:{entry.actor.label}", what]
    if entry.approver is not None:
        parts.append(f"by {entry.approver.label}")
    if entry.result:
        parts.append(f"→ {entry.result}")
    if entry.duration_ms is not None:
        parts.append(f"({entry.duration_ms} ms)")
    return f"<code>{esc(' '.join(part for part in parts if part))}</code>"
