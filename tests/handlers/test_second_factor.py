"""The second factor and lock-down through the engine: what a stolen chat account cannot do.

Real TOTP (pyotp) with secrets sealed in the test database; codes are made from the engine's
clock. Every abuse case checks that nothing ran and that the audit holds the row.
"""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from bot.storage.models import totp_secrets
from bot.storage.totp_store import SqlTotpStore
from bot.totp import SecretBox, TotpFactor
from handlers.catalog import build_registry
from handlers.core.guard import Guard, TotpMode
from handlers.core.messages import Actor, Press, Reply
from providers.server.memory import demo_server
from tests.conftest import ADMIN, ADMIN2, OPERATOR, Harness
from tests.support.engine_probe import audit_rows

KEY = bytes(range(32))
CONSOLE = Actor("console", "root", "root")
NEED_CODE = "This needs your current 6-digit code."
ALICES_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9NcAVSWVPiChpEzN4D6yCslK/Z5WnR8ZfMZgqlB+oF alice"
)
MALLORYS_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f mallory"
)


def guard(harness: Harness, mode: TotpMode | None = None) -> TotpFactor:
    factor = TotpFactor(SqlTotpStore(harness.db), SecretBox(KEY))
    harness.engine.guard = Guard(harness.engine.deps.notes, factor, mode)
    return factor


def code(harness: Harness, secret: str, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(harness.clock() + timedelta(seconds=30 * steps))


async def give(harness: Harness, given: str | None, actor: Actor = ADMIN) -> str:
    """Confirm the newest prompt with a code, as a Telegram reply or ``!confirm CODE 123456``."""
    prompt = harness.last_prompt()
    action = prompt.reply.buttons[0].action
    press = Press(action, actor, prompt.chat, harness.clock(), prompt.message_id, code=given)
    return await harness.engine.handle_press(press)


async def snapshot(harness: Harness) -> str:
    await harness.say("/backup vaultwarden", OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    (snap,) = await harness.server.backups.snapshots("vaultwarden")
    return snap.short_id


async def refusals(harness: Harness) -> list[tuple[str, str]]:
    return [(r.command, r.result) for r in await audit_rows(harness) if r.event == "refused"]


# -- the commands that need a code ---------------------------------------------------------------


def test_the_destructive_commands_are_marked_in_their_specs() -> None:
    marked = {e.spec.name for e in build_registry() if e.spec.is_destructive({})}
    assert marked == {
        "restore", "forget", "rollback", "power", "resize", "sshkey add", "sshkey remove",
        "disable", "dns fix", "snapshots delete", "lockdown off",
    }  # fmt: skip
    setting = next(e.spec for e in build_registry() if e.spec.name == "set")
    assert setting.is_destructive({"setting": "sshpassword", "value": "on"})
    assert not setting.is_destructive({"setting": "timezone", "value": "UTC"})


async def test_forget_runs_only_with_a_valid_fresh_code(harness: Harness) -> None:
    snap = await snapshot(harness)
    secret = await guard(harness).enroll(ADMIN.key, harness.clock())

    prompt = await harness.say(f"/forget {snap}")
    assert "6-digit code" in prompt
    assert harness.last_prompt().reply.code_prompt
    assert await give(harness, None) == NEED_CODE  # the Confirm button alone
    assert await give(harness, "000000" if code(harness, secret) != "000000" else "111111") == (
        "That code is wrong or used already; 4 tries left."
    )
    assert await give(harness, "12ab") == "That code is wrong or used already; 3 tries left."
    assert len(await harness.server.backups.snapshots("vaultwarden")) == 1

    assert await give(harness, code(harness, secret)) == "Confirmed."
    assert await harness.server.backups.snapshots("vaultwarden") == []
    assert await refusals(harness) == [
        ("forget", "no code"), ("forget", "wrong code"), ("forget", "wrong code"),
    ]  # fmt: skip


async def test_a_code_is_accepted_once(harness: Harness) -> None:
    secret = await guard(harness).enroll(ADMIN.key, harness.clock())
    used = code(harness, secret)
    await harness.say(f"/sshkey add {ALICES_KEY}")
    assert await give(harness, used) == "Confirmed."
    assert await harness.engine.wait_for_jobs(10)
    assert await harness.press(1) == "Done."  # Keep the switch
    keys = harness.server.desired.state.system.root_keys
    assert len(keys) == 1

    assert "6-digit code" in await harness.say(f"/sshkey add {MALLORYS_KEY}")
    assert await give(harness, used) == "That code is wrong or used already; 4 tries left."
    # The previous step's code is older than the one used: refused as well.
    assert await give(harness, code(harness, secret, -1)) == (
        "That code is wrong or used already; 3 tries left."
    )
    assert harness.server.desired.state.system.root_keys == keys
    assert ("sshkey add", "code used before") in await refusals(harness)


async def test_one_step_either_side_is_accepted_two_are_not(harness: Harness) -> None:
    secret = await guard(harness).enroll(ADMIN.key, harness.clock())
    await harness.say("/rollback 43")
    assert await give(harness, code(harness, secret, -2)) == (
        "That code is wrong or used already; 4 tries left."
    )
    assert await give(harness, code(harness, secret, -1)) == "Confirmed."


async def test_a_code_of_another_admin_or_from_another_admin_runs_nothing(
    harness: Harness,
) -> None:
    factor = guard(harness)
    await factor.enroll(ADMIN.key, harness.clock())
    bobs = await factor.enroll(ADMIN2.key, harness.clock())
    snap = await snapshot(harness)
    await harness.say(f"/forget {snap}")

    assert await give(harness, code(harness, bobs)) == (
        "That code is wrong or used already; 4 tries left."
    )
    assert await give(harness, code(harness, bobs), ADMIN2) == "Only Alice can confirm this."
    assert len(await harness.server.backups.snapshots("vaultwarden")) == 1
    assert ("forget", "Only Alice can confirm this.") in await refusals(harness)


async def test_a_code_after_the_confirmation_expired_runs_nothing(harness: Harness) -> None:
    secret = await guard(harness).enroll(ADMIN.key, harness.clock())
    snap = await snapshot(harness)
    await harness.say(f"/forget {snap}")
    harness.clock.advance(minutes=5, seconds=1)

    assert await give(harness, code(harness, secret)) == (
        "This confirmation has expired. Send the command again."
    )
    assert len(await harness.server.backups.snapshots("vaultwarden")) == 1
    assert ("forget", "expired") in await refusals(harness)


async def test_an_admin_without_a_second_factor_is_refused_once_another_enrolled(
    harness: Harness,
) -> None:
    await guard(harness).enroll(ADMIN.key, harness.clock())
    said = await harness.say("/restore nextcloud latest", ADMIN2)
    assert "needs a one-time code, and you have none" in said
    assert harness.outbox.last.reply.buttons == ()
    assert await harness.say("/restart nextcloud", ADMIN2)  # not destructive: asked as always


async def test_power_is_approved_by_a_second_admin_with_their_own_code(harness: Harness) -> None:
    factor = guard(harness)
    await factor.enroll(ADMIN.key, harness.clock())
    bobs = await factor.enroll(ADMIN2.key, harness.clock())
    cloud = harness.server.cloud
    cloud.servers["4712"] = demo_server("4712", "backup-box")

    await harness.say("/power backup-box poweroff")
    assert await give(harness, None, ADMIN2) == NEED_CODE
    assert not [c for c in cloud.calls if c[0] == "power"]
    assert await give(harness, code(harness, bobs), ADMIN2) == "Confirmed."
    assert await harness.engine.wait_for_jobs(10)
    assert ("power", "4712", "poweroff") in [c[:3] for c in cloud.calls]


# -- the settings ---------------------------------------------------------------------------------


async def test_by_default_codes_are_asked_once_anyone_enrolled(harness: Harness) -> None:
    factor = guard(harness)
    snap = await snapshot(harness)
    assert "6-digit code" not in await harness.say(f"/forget {snap}")
    await factor.enroll(ADMIN.key, harness.clock())
    assert "6-digit code" in await harness.say(f"/forget {snap}")


async def test_off_asks_for_no_code_and_all_asks_for_every_change(harness: Harness) -> None:
    factor = guard(harness, TotpMode.OFF)
    secret = await factor.enroll(ADMIN.key, harness.clock())
    assert "6-digit code" not in await harness.say("/rollback 43")
    guard(harness, TotpMode.ALL)
    assert "6-digit code" in await harness.say("/restart nextcloud")
    assert await give(harness, None) == NEED_CODE
    assert await give(harness, code(harness, secret)) == "Confirmed."


async def test_the_console_user_needs_no_code(harness: Harness) -> None:
    snap = await snapshot(harness)
    await guard(harness, TotpMode.ALL).enroll(ADMIN.key, harness.clock())
    await harness.say(f"/forget {snap}", CONSOLE)
    assert await harness.press(1, CONSOLE) == "Confirmed."
    assert await harness.server.backups.snapshots("vaultwarden") == []


# -- lock-out ------------------------------------------------------------------------------------


async def test_five_wrong_codes_lock_the_user_out_for_an_hour_and_alert_the_admins(
    harness: Harness,
) -> None:
    secret = await guard(harness).enroll(ADMIN.key, harness.clock())
    alerts: list[Reply] = []

    async def alert(reply: Reply) -> None:
        alerts.append(reply)

    harness.engine.on_alert = alert
    snap = await snapshot(harness)
    await harness.say(f"/forget {snap}")
    wrong = "000000" if code(harness, secret) != "000000" else "111111"
    for _ in range(4):
        await give(harness, wrong)
    assert await give(harness, wrong) == (
        "Too many wrong codes: destructive commands are locked until 13:00 UTC."
    )
    assert await give(harness, code(harness, secret)) == (
        "You are locked out of /forget after wrong codes, until 13:00 UTC."
    )
    assert "locked out of /forget" in await harness.say(f"/forget {snap}")
    assert len(await harness.server.backups.snapshots("vaultwarden")) == 1
    (told,) = alerts
    assert "Alice (telegram) gave 5 wrong codes" in told.text
    lockout = [r for r in await audit_rows(harness) if r.event == "security"]
    assert [(r.command, r.result) for r in lockout] == [
        ("lockout", "5 wrong codes; locked until 13:00 UTC")
    ]
    assert "Waiting for" in await harness.say("/restart nextcloud")  # not destructive

    harness.clock.advance(hours=1, seconds=1)
    await harness.say(f"/forget {snap}")
    assert await give(harness, code(harness, secret)) == "Confirmed."


async def test_failures_older_than_fifteen_minutes_do_not_count(harness: Harness) -> None:
    secret = await guard(harness).enroll(ADMIN.key, harness.clock())
    wrong = "000000" if code(harness, secret) != "000000" else "111111"
    for _ in range(4):
        await harness.say("/rollback 43")
        await give(harness, wrong)
    harness.clock.advance(minutes=16)
    await harness.say("/rollback 43")
    assert await give(harness, wrong) == "That code is wrong or used already; 4 tries left."


# -- lock-down -----------------------------------------------------------------------------------


async def test_lockdown_refuses_every_change_with_one_line_until_lifted_with_a_code(
    harness: Harness,
) -> None:
    secret = await guard(harness).enroll(ADMIN.key, harness.clock())
    pending = await harness.say("/restart nextcloud", OPERATOR)
    assert "Waiting for Olga" in pending
    assert "Lock-down is on" in await harness.say("/lockdown", ADMIN2)

    refused = await harness.say("/restart forgejo", OPERATOR)
    assert refused == "🔒 Lock-down is on (by Bob): nothing that changes the server runs."
    assert "load 0.42" in await harness.say("/status")  # reading goes on
    prompt = next(s for s in harness.outbox.messages if "Waiting for Olga" in s.reply.text)
    press = Press(prompt.reply.buttons[0].action, OPERATOR, prompt.chat, harness.clock(), "1")
    assert await harness.engine.handle_press(press) == (
        "Lock-down is on: nothing that changes the server runs."
    )
    assert [call for call in harness.server.services.calls if call[0] == "restart"] == []

    assert "6-digit code" in await harness.say("/lockdown off")
    assert await give(harness, code(harness, secret)) == "Confirmed."
    assert "Waiting for Olga" in await harness.say("/restart forgejo", OPERATOR)
    assert ("restart", "lockdown") in await refusals(harness)


async def test_without_a_second_factor_only_the_shell_lifts_lockdown(harness: Harness) -> None:
    await harness.say("/lockdown")
    said = await harness.say("/lockdown off")
    assert "needs a one-time code, and none is set up" in said
    assert "Lock-down is on" in await harness.say("/restart nextcloud", OPERATOR)
    await harness.say("/lockdown off", CONSOLE)  # the shell user
    assert await harness.press(1, CONSOLE) == "Confirmed."
    assert "Waiting for Olga" in await harness.say("/restart nextcloud", OPERATOR)


# -- at rest ---------------------------------------------------------------------------------------


async def test_secrets_are_sealed_and_bound_to_their_user(harness: Harness) -> None:
    factor = guard(harness)
    secret = await factor.enroll(ADMIN.key, harness.clock())
    with harness.db.transaction() as conn:
        sealed = conn.scalar(select(totp_secrets.c.secret))
    assert isinstance(sealed, str)
    assert secret not in sealed
    assert SecretBox(KEY).open(sealed, ADMIN.key) == secret
    for box, user in ((SecretBox(bytes(32)), ADMIN.key), (SecretBox(KEY), ADMIN2.key)):
        with pytest.raises(ValueError, match="MAC check failed"):
            box.open(sealed, user)
