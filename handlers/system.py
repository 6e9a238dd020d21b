"""The NixOS system: /generations."""

from __future__ import annotations

from handlers.core.context import CommandError, Context
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from providers.systemd import UnitError

commands = Registry()


@commands.command("generations", "List the NixOS generations, newest first")
async def generations(ctx: Context) -> Reply:
    try:
        found = await ctx.deps.nixos.generations()
    except UnitError as exc:
        raise CommandError(f"Cannot list the generations: {esc(exc)}") from None
    if not found:
        return Reply("No NixOS generations were found.")
    lines = ["<b>Generations</b> (newest first)"]
    for generation in found[:20]:
        mark = "▶" if generation.current else "·"
        current = " <b>current</b>" if generation.current else ""
        lines.append(
            f"{mark} <b>{generation.number}</b>{current} {esc(generation.date)} — NixOS "
            f"{esc(generation.nixos_version)}, kernel {esc(generation.kernel)}"
        )
    if len(found) > 20:
        lines.append(f"… and {len(found) - 20} older ones.")
    if await ctx.deps.nixos.reboot_needed():
        lines.append("🔁 A reboot is needed to run the current generation's kernel.")
    return Reply("\n".join(lines))
