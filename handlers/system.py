"""The NixOS system: /generations, /rebuild, /upgrade, /rollback, /reboot, /settings, /set and
/sshkey. Everything that changes the system goes through ``handlers.rebuild``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import available_timezones

from handlers import rebuild
from handlers.backups import own_snapshot
from handlers.core.context import CommandError, Context, Deps
from handlers.core.messages import ChatRef, Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import Arg, Choice, Integer, Role, Word
from handlers.rebuild import read_desired
from providers.backup.base import BackupError, BackupReason
from providers.host.base import UnitError
from providers.nixos.base import REBUILD_UNIT, UPGRADE_UNIT, DesiredState, Generation, rollback_unit
from providers.nixos.sshkeys import KEY_TYPES, fingerprint
from providers.server.base import ServerError

commands = Registry()
REBOOT_NOTE = "reboot:requested"


@commands.command("generations", "List the NixOS generations, newest first")
async def generations(ctx: Context) -> Reply:
    found = await _generations(ctx)
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


async def _generations(ctx: Context) -> list[Generation]:
    try:
        return await ctx.deps.nixos.generations()
    except UnitError as exc:
        raise CommandError(f"Cannot list the generations: {esc(exc)}") from None


# --- rebuild, upgrade, rollback -----------------------------------------------------------------


@commands.command("rebuild", "Rebuild and switch to the current configuration", role=Role.ADMIN,
                  changes=True, background=True)  # fmt: skip
async def rebuild_now(ctx: Context) -> Reply:
    return await rebuild.switch(ctx, unit=REBUILD_UNIT, title="Rebuild", join=True)


@rebuild_now.preview
async def _rebuild_preview(ctx: Context) -> str:
    return (
        "Runs <code>nixos-rebuild switch</code> with the configuration and the desired state as "
        "they are. Services whose configuration changed restart."
    )


@rebuild_now.resume
async def _rebuild_resume(ctx: Context) -> Reply:
    return await rebuild.resume(ctx)


@commands.command("upgrade", "Update nixpkgs and switch to it", role=Role.ADMIN, changes=True,
                  background=True)  # fmt: skip
async def upgrade(ctx: Context) -> Reply:
    cloud = ctx.deps.cloud
    head = await _own_snapshot_first(ctx)
    if ctx.deps.policy.snapshot_before_upgrade and cloud is not None:
        await ctx.progress.update("📸 Taking a snapshot of the server before the upgrade…")
        try:
            made = await cloud.create_snapshot(
                f"steward before upgrade {ctx.local(ctx.now):%Y-%m-%d}"
            )
        except ServerError as exc:
            raise CommandError(f"No upgrade: the snapshot before it failed: {esc(exc)}") from None
        head += f"📸 Snapshot {made.id} taken first. "
    reply = await rebuild.switch(ctx, unit=UPGRADE_UNIT, title="Upgrade")
    return replace(reply, text=head + reply.text) if head else reply


async def _own_snapshot_first(ctx: Context) -> str:
    """Steward's own snapshot before the upgrade; no upgrade without it."""
    if ctx.deps.self_snapshot is None:
        return ""
    await ctx.progress.update("💾 Taking Steward's own snapshot before the upgrade…")
    try:
        line = await own_snapshot(ctx.deps, BackupReason.PRE_UPGRADE)
    except BackupError as exc:
        raise CommandError(f"No upgrade: Steward's own snapshot failed: {esc(exc)}") from None
    return line.removeprefix("✅ ") + ". "


@upgrade.preview
async def _upgrade_preview(ctx: Context) -> str:
    policy = ctx.deps.policy
    current = next((g for g in await _generations(ctx) if g.current), None)
    what = (
        f"the inputs of the flake <code>{esc(policy.upgrade_flake)}</code>"
        if policy.upgrade_flake
        else "the nixos channel"
    )
    text = (
        f"Updates {what} and switches to the result. Every service whose package changed restarts."
    )
    if current:
        text += f" Now: NixOS {esc(current.nixos_version)}."
    if ctx.deps.self_snapshot is not None:
        text += " Steward's own snapshot is taken first."
    if policy.snapshot_before_upgrade and ctx.deps.cloud is not None:
        text += " A snapshot of the server is taken first."
    if policy.preview_build and policy.upgrade_flake:
        text += "\n" + await _closure_preview(ctx, policy.upgrade_flake)
    return text


async def _closure_preview(ctx: Context, flake: str) -> str:
    try:
        lines = await ctx.deps.nixos.preview_upgrade(flake)
    except UnitError as exc:
        return f"⚠️ The preview build failed: {esc(exc)}"
    if not lines:
        return "The build brings no package changes."
    shown = "\n".join(lines[:30])
    more = f"\n… and {len(lines) - 30} more." if len(lines) > 30 else ""
    return f"What the build changes:\n<pre>{esc(shown)}</pre>{more}"


@upgrade.resume
async def _upgrade_resume(ctx: Context) -> Reply:
    return await rebuild.resume(ctx)


GENERATION = Arg(
    "generation",
    Integer(metavar="generation", minimum=1),
    required=False,
    help="a number from /generations; the one before the current by default",
)


async def _rollback_target(ctx: Context, generation: int | None) -> tuple[Generation, Generation]:
    found = await _generations(ctx)
    current = next((g for g in found if g.current), None)
    if current is None:
        raise CommandError("I cannot tell which generation is current; see /generations.")
    if generation is None:
        older = [g for g in found if g.number < current.number]
        if not older:
            raise CommandError(f"Generation {current.number} is the oldest there is.")
        return current, max(older, key=lambda g: g.number)
    target = next((g for g in found if g.number == generation), None)
    if target is None:
        known = ", ".join(str(g.number) for g in found[:10])
        raise CommandError(f"There is no generation {generation}. Known: {known}.")
    if target.current:
        raise CommandError(f"Generation {generation} is already the current one.")
    return current, target


@commands.command("rollback", "Switch back to an earlier generation", args=(GENERATION,),
                  role=Role.ADMIN, changes=True, background=True, destructive=True)  # fmt: skip
async def rollback(ctx: Context, generation: int | None = None) -> Reply:
    _, target = await _rollback_target(ctx, generation)
    return await rebuild.switch(
        ctx, unit=rollback_unit(target.number), title=f"Rollback to generation {target.number}"
    )


@rollback.preview
async def _rollback_preview(ctx: Context, generation: int | None = None) -> str:
    current, target = await _rollback_target(ctx, generation)
    return (
        f"Switches from generation {current.number} to <b>{target.number}</b> "
        f"({esc(target.date)}, NixOS {esc(target.nixos_version)}, kernel {esc(target.kernel)}). "
        "The desired state is not changed: the next /rebuild builds it again."
    )


@rollback.resume
async def _rollback_resume(ctx: Context) -> Reply:
    return await rebuild.resume(ctx)


# --- Keep, and what happens without it ------------------------------------------------------------

BEFORE = Arg("before", Integer(minimum=1))
AFTER = Arg("after", Integer(minimum=1))


@commands.command(rebuild.KEEP, "Keep a switch", args=(BEFORE, AFTER), role=Role.ADMIN,
                  internal=True, lapse="revert")  # fmt: skip
async def keep(ctx: Context, before: int, after: int) -> Reply:
    await rebuild.forget_change(ctx, after)
    return Reply(
        f"✅ Generation {after} is kept. Generation {before} stays available: "
        f"<code>/rollback {before}</code>."
    )


@commands.command("revert", "Roll a switch back", args=(BEFORE, AFTER), role=Role.ADMIN,
                  internal=True, background=True)  # fmt: skip
async def revert(ctx: Context, before: int, after: int) -> Reply:
    moved = await _moved_on(ctx, after)
    if moved:
        return Reply(moved)
    outcome: list[str] = []

    async def take_back() -> None:
        # Once it is our turn (a rebuild may have run meanwhile), before the switch: a rollback
        # that fails still rejects the change.
        if moved := await _moved_on(ctx, after):
            raise CommandError(moved)
        outcome.append(await rebuild.take_back_change(ctx, after))

    try:
        reply = await rebuild.switch(
            ctx,
            unit=rollback_unit(before),
            title=f"Generation {after} was not kept: back to {before}",
            change=take_back,
            keep=False,
        )
    except CommandError as exc:
        raise CommandError(" ".join((str(exc), *outcome)).strip()) from None
    return replace(reply, text="\n".join((reply.text, *filter(None, outcome))))


async def _moved_on(ctx: Context, after: int) -> str:
    current = await rebuild.current_generation(ctx)
    if current == after:
        return ""
    await rebuild.forget_change(ctx, after)
    return (
        f"Generation {after} was not kept, but the system has moved on to generation "
        f"{current} since, so nothing was rolled back."
    )


@revert.resume
async def _revert_resume(ctx: Context, before: int, after: int) -> Reply:
    return await rebuild.resume(ctx)


# --- reboot ---------------------------------------------------------------------------------------


@commands.command("reboot", "Reboot the server", role=Role.ADMIN, changes=True)
async def reboot(ctx: Context) -> Reply:
    note = {
        "at": ctx.now.isoformat(),
        "transport": ctx.command.chat.transport,
        "chat": ctx.command.chat.chat_id,
        "by": ctx.command.actor.label,
    }
    await ctx.deps.notes.set(REBOOT_NOTE, json.dumps(note), ctx.now)
    try:
        await ctx.deps.services.reboot()
    except UnitError as exc:
        await ctx.deps.notes.delete(REBOOT_NOTE)
        raise CommandError(f"The reboot was refused: {esc(exc)}") from None
    return Reply("🔁 Rebooting now. I will say here when I am back.")


@reboot.preview
async def _reboot_preview(ctx: Context) -> str:
    text = (
        "Reboots the server now. Every service stops, and comes back after the boot "
        "(usually one to three minutes)."
    )
    if await ctx.deps.nixos.reboot_needed():
        text += " A reboot is due: the current generation's kernel does not run yet."
    return text


async def welcome_back(deps: Deps, now: datetime) -> tuple[ChatRef, Reply] | None:
    """Called when the bot starts: if a /reboot was asked for, say how it went."""
    raw = await deps.notes.get(REBOOT_NOTE)
    if raw is None:
        return None
    await deps.notes.delete(REBOOT_NOTE)
    try:
        note = json.loads(raw)
        asked = datetime.fromisoformat(note["at"])
        chat = ChatRef(str(note["transport"]), str(note["chat"]))
    except (ValueError, KeyError, TypeError):
        return None
    try:
        booted = now - timedelta(seconds=(await deps.host.metrics()).uptime_seconds)
    except OSError:
        booted = None
    seconds = max(0, round((now - asked).total_seconds()))
    if booted is not None and booted < asked:
        text = (
            f"⚠️ I restarted, but the server did not reboot: it has been up since "
            f"{booted.astimezone(deps.timezone):%Y-%m-%d %H:%M}."
        )
    else:
        text = f"✅ Back after {seconds} s: the reboot asked by {esc(note.get('by', '?'))} is done."
    return chat, Reply(text)


# --- settings -------------------------------------------------------------------------------------


@commands.command("settings", "Show the system settings: time zone, upgrades, ssh")
async def settings(ctx: Context) -> Reply:
    state = await read_desired(ctx)
    system = state.system
    unset = "<i>as the NixOS configuration says</i>"

    def onoff(value: bool | None) -> str:
        return unset if value is None else ("on" if value else "off")

    upgrade = onoff(system.auto_upgrade)
    if system.auto_upgrade:
        upgrade += ", with reboots" if system.allow_reboot else ", without reboots"
    lines = [
        "<b>Settings</b>",
        f"🕒 time zone: {esc(system.timezone) if system.timezone else unset}",
        f"⬆️ automatic upgrades: {upgrade}",
        f"🔑 ssh password login: {onoff(system.ssh_password_auth)}",
        f"🗝 root ssh keys set here: {len(system.root_keys)} (/sshkey)",
        "",
        "Change one with <code>/set timezone Europe/Berlin</code>, <code>/set autoupgrade "
        "on|off|reboot</code> or <code>/set sshpassword on|off</code>.",
    ]
    return Reply("\n".join(lines))


SETTING = Arg("setting", Choice(("timezone", "autoupgrade", "sshpassword")))
VALUE = Arg("value", Word(metavar="value", pattern=r"[A-Za-z0-9_+\-/]{1,64}"))


def _apply_setting(state: DesiredState, setting: str, value: str) -> DesiredState:
    if setting == "timezone":
        zone = next((z for z in available_timezones() if z.lower() == value.lower()), None)
        if zone is None:
            raise CommandError(f"{esc(value)} is not a time zone. Example: Europe/Berlin.")
        return state.with_system(timezone=zone)
    choice = value.lower()
    if setting == "autoupgrade":
        if choice not in {"on", "off", "reboot"}:
            raise CommandError("autoupgrade takes on, off or reboot (on, with reboots).")
        return state.with_system(auto_upgrade=choice != "off", allow_reboot=choice == "reboot")
    if choice not in {"on", "off"}:
        raise CommandError("sshpassword takes on or off.")
    return state.with_system(ssh_password_auth=choice == "on")


def _opens_ssh(values: Mapping[str, object]) -> bool:
    return values.get("setting") == "sshpassword"


@commands.command("set", "Change a system setting and rebuild", args=(SETTING, VALUE),
                  role=Role.ADMIN, changes=True, background=True,
                  destructive=_opens_ssh)  # fmt: skip
async def set_setting(ctx: Context, setting: str, value: str) -> Reply:
    _apply_setting(await read_desired(ctx), setting, value)  # refuse before waiting for a turn
    return await rebuild.change_and_switch(
        ctx, f"Setting {setting}", lambda state: _apply_setting(state, setting, value)
    )


@set_setting.preview
async def _set_preview(ctx: Context, setting: str, value: str) -> str:
    state = await read_desired(ctx)
    return rebuild.describe_change(state, _apply_setting(state, setting, value))


@set_setting.resume
async def _set_resume(ctx: Context, setting: str, value: str) -> Reply:
    return await rebuild.resume(ctx)


# --- root ssh keys ------------------------------------------------------------------------------

KEY_TYPE = Arg("type", Choice(KEY_TYPES))
KEY_DATA = Arg("key", Word(metavar="key", pattern=r"[A-Za-z0-9+/]{16,16000}={0,3}"))
KEY_COMMENT = Arg("comment", Word(metavar="comment", pattern=r"[A-Za-z0-9@._+\-]{1,100}"),
                  required=False)  # fmt: skip
KEY_CODE = Arg("code", Word(metavar="code", pattern=r"[0-9]{6}"), required=False,
               help="with root keys checked by root: the code of Steward root keys")  # fmt: skip
KEY_PICK = Arg("key", Word(metavar="N|comment|fingerprint", pattern=r"[A-Za-z0-9@._+\-:/]{1,100}"))
_ROOT_CODE = re.compile(r"[0-9]{6}")
Proof = tuple[str, int] | None  # a root-key code and when it was given


def _key_line(index: int, key: str) -> str:
    parts = key.split()
    comment = parts[2] if len(parts) > 2 else "no comment"
    return f"{index}. <code>{esc(parts[0])}</code> {esc(comment)} <code>{fingerprint(key)}</code>"


LIST = Arg("list", Choice(("list",)), required=False)


@commands.command("sshkey", "List the root ssh keys set from chat", args=(LIST,), role=Role.ADMIN)
async def sshkey_list(ctx: Context, list: str | None = None) -> Reply:
    keys = (await read_desired(ctx)).system.root_keys
    if not keys:
        return Reply(
            "No root ssh keys are set from chat. Keys in the NixOS configuration still work. "
            "Add one with <code>/sshkey add ssh-ed25519 AAAA… name</code>."
        )
    lines = ["<b>Root ssh keys</b> set from chat"]
    lines.extend(_key_line(index, key) for index, key in enumerate(keys, 1))
    return Reply("\n".join(lines))


def _with_key(state: DesiredState, key: str, proof: Proof = None) -> DesiredState:
    if any(k.split()[:2] == key.split()[:2] for k in state.system.root_keys):
        raise CommandError("That key is already there.")
    if fingerprint(key) == "SHA256:?":
        raise CommandError("That is not a valid public key: its base64 part does not decode.")
    codes = state.system.root_key_codes
    if proof is not None:
        codes = (*(c for c in codes if c[0] != fingerprint(key)), (fingerprint(key), *proof))
    return state.with_system(root_keys=(*state.system.root_keys, key), root_key_codes=codes)


def _key_request(
    ctx: Context, type: str, key: str, comment: str | None, code: str | None
) -> tuple[str, Proof]:
    """The key line and, where root checks keys, the code it carries. Root decides; this only
    says at once what root would refuse."""
    mode = ctx.deps.policy.root_keys
    if mode == "off":
        raise CommandError(
            "Root keys cannot be added from chat on this server: root refuses them. Add the key "
            "in the NixOS configuration, or set <code>services.steward.allowRootKeysFromChat"
            "</code>."
        )
    if code is None and comment is not None and _ROOT_CODE.fullmatch(comment):
        comment, code = None, comment  # /sshkey add TYPE KEY CODE
    line = " ".join(part for part in (type, key, comment) if part)
    if mode == "open":
        return line, None
    if code is None:
        raise CommandError(
            "Root checks each key added from chat: end the command with the 6-digit code of "
            "<i>Steward root keys</i> from your authenticator."
        )
    return line, (code, int(ctx.command.received_at.timestamp()))


@commands.command("sshkey add", "Add a root ssh key and rebuild",
                  args=(KEY_TYPE, KEY_DATA, KEY_COMMENT, KEY_CODE), role=Role.ADMIN,
                  changes=True, background=True, destructive=True)  # fmt: skip
async def sshkey_add(
    ctx: Context, type: str, key: str, comment: str | None = None, code: str | None = None
) -> Reply:
    line, proof = _key_request(ctx, type, key, comment, code)
    _with_key(await read_desired(ctx), line, proof)
    return await rebuild.change_and_switch(
        ctx, "Adding an ssh key", lambda s: _with_key(s, line, proof)
    )


@sshkey_add.preview
async def _sshkey_add_preview(
    ctx: Context,
    type: str,
    key: str,
    comment: str | None = None,
    code: str | None = None,
) -> str:
    line, proof = _key_request(ctx, type, key, comment, code)
    _with_key(await read_desired(ctx), line, proof)
    return (
        f"Lets this key log in as root over ssh:\n{_key_line(1, line)}\n"
        "Compare the fingerprint with <code>ssh-keygen -lf key.pub</code> before you confirm."
    )


@sshkey_add.resume
async def _sshkey_add_resume(ctx: Context, **_: object) -> Reply:
    return await rebuild.resume(ctx)


def _pick(keys: tuple[str, ...], choice: str) -> str:
    if re.fullmatch(r"[0-9]{1,3}", choice):
        index = int(choice)
        if not 1 <= index <= len(keys):
            raise CommandError(f"There is no key {index}; /sshkey lists them.")
        return keys[index - 1]
    wanted = choice.removeprefix("SHA256:")
    found = [
        k for k in keys
        if (len(k.split()) > 2 and k.split()[2] == choice)
        or (len(wanted) >= 8 and fingerprint(k).removeprefix("SHA256:").startswith(wanted))
    ]  # fmt: skip
    if len(found) != 1:
        what = "No key matches" if not found else "More than one key matches"
        raise CommandError(f"{what} {esc(choice)}; /sshkey lists them with their numbers.")
    return found[0]


def _without_key(state: DesiredState, key: str) -> DesiredState:
    codes = tuple(c for c in state.system.root_key_codes if c[0] != fingerprint(key))
    return state.with_system(
        root_keys=tuple(k for k in state.system.root_keys if k != key), root_key_codes=codes
    )


@commands.command("sshkey remove", "Remove a root ssh key and rebuild", args=(KEY_PICK,),
                  role=Role.ADMIN, changes=True, background=True, destructive=True)  # fmt: skip
async def sshkey_remove(ctx: Context, key: str) -> Reply:
    line = _pick((await read_desired(ctx)).system.root_keys, key)
    return await rebuild.change_and_switch(
        ctx, "Removing an ssh key", lambda s: _without_key(s, line)
    )


@sshkey_remove.preview
async def _sshkey_remove_preview(ctx: Context, key: str) -> str:
    keys = (await read_desired(ctx)).system.root_keys
    line = _pick(keys, key)
    text = f"This key can no longer log in as root:\n{_key_line(keys.index(line) + 1, line)}"
    if len(keys) == 1:
        text += "\nIt is the last key set from chat: make sure another way in still works."
    return text


@sshkey_remove.resume
async def _sshkey_remove_resume(ctx: Context, key: str) -> Reply:
    return await rebuild.resume(ctx)
