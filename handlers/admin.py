"""Getting started: /hello (also a bare /start), /help, /whoami, /ping."""

from __future__ import annotations

import time

from handlers.core.context import Context
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import Arg, Word

commands = Registry()


@commands.command("hello", "Say hello and show what you can do")
async def hello(ctx: Context) -> Reply:
    intro = (
        f"Hello {esc(ctx.command.actor.label)}. I run this server for you; "
        f"you are <b>{ctx.role.label}</b> here.\n\n"
    )
    return Reply(intro + _help_text(ctx))


@commands.command(
    "help",
    "List the commands you may run",
    args=(Arg("command", Word("command", r"[/!]?[A-Za-z][A-Za-z0-9_-]{0,31}"), False),),
)
async def help_(ctx: Context, command: str | None) -> Reply:
    if command is None:
        return Reply(_help_text(ctx))
    name = command.lstrip("/!").lower()
    visible = {spec.name: spec for spec in ctx.deps.registry.visible_to(ctx.role)}
    spec = visible.get(name)
    if spec is None:
        return Reply(f"Unknown command /{esc(name)}, see /help.")
    lines = [f"<code>{esc(spec.usage)}</code>", esc(spec.summary)]
    lines += [f"  <i>{esc(arg.name)}</i>: {esc(arg.help)}" for arg in spec.args if arg.help]
    lines.append(f"Role: {spec.role.label}" + (", asks for confirmation" if spec.changes else ""))
    return Reply("\n".join(lines))


def _help_text(ctx: Context) -> str:
    lines = ["<b>Commands</b>"]
    for spec in ctx.deps.registry.visible_to(ctx.role):
        lines.append(f"<code>{esc(spec.usage)}</code> — {esc(spec.summary)}")
    lines.append("\nCommands that change the server ask for a confirmation first.")
    return "\n".join(lines)


@commands.command("whoami", "Show your id and role")
async def whoami(ctx: Context) -> Reply:
    actor = ctx.command.actor
    return Reply(
        f"You are <code>{esc(actor.user_id)}</code> on {esc(actor.transport)}, "
        f"role <b>{ctx.role.label}</b>."
    )


@commands.command("ping", "Check that the bot answers")
async def ping(ctx: Context) -> Reply:
    lag = (ctx.now - ctx.command.received_at).total_seconds()
    started = time.perf_counter()
    try:
        await ctx.deps.host.metrics()
    except OSError as exc:
        return Reply(
            f"pong — message lag {max(lag, 0):.1f} s, but the host probe failed: {esc(exc)}"
        )
    probe_ms = (time.perf_counter() - started) * 1000
    return Reply(f"pong — message lag {max(lag, 0):.1f} s, host probe {probe_ms:.0f} ms")
