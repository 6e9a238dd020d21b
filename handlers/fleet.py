"""/fleet: the Stewards this one has seen in this chat."""

from __future__ import annotations

from datetime import datetime, timedelta

from handlers.core.context import Context
from handlers.core.fleet import Fleet, table_line
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from handlers.core.text import duration

commands = Registry()


@commands.command("fleet", "The Stewards seen in this chat: name, version, last sign of life")
async def fleet(ctx: Context) -> Reply:
    known = ctx.deps.fleet
    if known is None:
        return Reply("This Steward runs alone: it has no name for a fleet.")
    lines = [table_line(known.me, "this one", overdue=False)]
    for peer in known.in_chat(ctx.command.chat):
        ago = duration((ctx.now - peer.last_seen).total_seconds())
        overdue = peer.overdue(ctx.now)
        beat = f" (heartbeat {duration(peer.signature.heartbeat_seconds)})" if overdue else ""
        lines.append(table_line(peer.signature, f"seen {ago} ago{beat}", overdue=overdue))
    if len(lines) == 1:
        lines.append(f"<i>{ALONE.get(ctx.command.chat.transport, ALONE['matrix'])}</i>")
    return Reply("\n".join(lines))


# What /fleet says when it has seen no other Steward in the chat.
ALONE = {
    "telegram": (
        "I can see only myself here: in @BotFather, turn on Bot-to-Bot Communication Mode "
        "for each Steward's bot, and make the bots admins of this group."
    ),
    "matrix": "No other Steward seen here yet; they announce themselves when they start.",
}


class HeartbeatWatch:
    """``STEWARD_WATCH``: one alert when the watched Steward falls silent, one when it is back.

    Silent means: not heard for longer than the heartbeat interval it announced, or, when it
    was never heard, for two of this Steward's own intervals since it started."""

    def __init__(self, fleet: Fleet, name: str, started: datetime) -> None:
        self.fleet = fleet
        self.name = name
        self.started = started
        self.silent = False

    def check(self, now: datetime) -> str | None:
        """The alert text when the watched Steward's state changed; None otherwise."""
        peer = self.fleet.latest(self.name)
        if peer is None:
            grace = timedelta(seconds=2 * self.fleet.me.heartbeat_seconds)
            quiet, since = now - self.started > grace, self.started
        else:
            quiet, since = peer.overdue(now), peer.last_seen
        if quiet == self.silent:
            return None
        self.silent = quiet
        who = f"<b>{esc(self.name)}</b>"
        if quiet:
            ago = duration((now - since).total_seconds())
            heard = "not heard since" if peer is not None else "not heard at all since"
            return f"🚨 The Steward {who} is silent: {heard} {ago} ago. Is its server up?"
        return f"✅ The Steward {who} answers again."
