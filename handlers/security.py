"""/lockdown: any admin may stop every change to the server at once, from chat; lifting it
needs a one-time code or the server's shell (``steward lockdown off``)."""

from __future__ import annotations

from handlers.core.context import Context
from handlers.core.guard import Guard
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import Arg, Choice, Role

commands = Registry()
ON = Arg("on", Choice(("on",)), required=False)


@commands.command("lockdown", "Refuse every change to the server until it is lifted", args=(ON,),
                  role=Role.ADMIN)  # fmt: skip
async def lockdown(ctx: Context, on: str | None = None) -> Reply:
    # Turning it on is never confirmed and never refused: it is what to do in a hurry.
    guard = Guard(ctx.deps.notes)
    current = await guard.lockdown()
    if current is not None:
        return Reply(f"🔒 Lock-down is on already (by {esc(current.by)}).")
    await guard.set_lockdown(ctx.command.actor.label, ctx.now)
    return Reply(
        "🔒 Lock-down is on: every command that changes the server is refused. Lift it on the "
        "server with <code>steward lockdown off</code>, or here with <code>/lockdown off</code> "
        "and a one-time code."
    )


@commands.command("lockdown off", "Lift lock-down (needs a one-time code)", role=Role.ADMIN,
                  changes=True, code_required=True, in_lockdown=True)  # fmt: skip
async def lockdown_off(ctx: Context) -> Reply:
    guard = Guard(ctx.deps.notes)
    if await guard.lockdown() is None:
        return Reply("Lock-down is off already.")
    await guard.lift_lockdown()
    return Reply("🔓 Lock-down is lifted: commands that change the server run again.")


@lockdown_off.preview
async def _lockdown_off_preview(ctx: Context) -> str:
    return "Lifts lock-down: commands that change the server run again."
