"""Confirmations: previewed, single-use, owned by the requester, expiring, race-free."""

from __future__ import annotations

import asyncio
import base64
import secrets

from bot.storage.database import Database
from handlers.core.access import AccessPolicy
from handlers.core.messages import CANCEL, CONFIRM, Actor, ChatRef, Press
from handlers.core.records import AuditEvent, ConfirmationState
from tests.conftest import ADMIN, ADMIN2, OPERATOR, VIEWER, Harness, make_harness
from tests.support.chat import Sent
from tests.support.engine_probe import (
    audit_events,
    audit_rows,
    confirmation_of,
    nonce_of,
    prompts,
    restarts,
)

# Its own units: nginx is shared, and a restart of Nextcloud leaves it alone.
NEXTCLOUD_UNITS = ("phpfpm-nextcloud.service", "redis-nextcloud.service")
EXPIRED = "This confirmation has expired. Send the command again."
INVALID = "This button is not valid (anymore)."


async def ask(harness: Harness, text: str = "/restart nextcloud", actor: Actor = OPERATOR) -> Sent:
    await harness.say(text, actor)
    return harness.last_prompt()


async def press_action(harness: Harness, action: str, chat: ChatRef | None = None) -> str:
    prompt = harness.last_prompt()
    press = Press(action, OPERATOR, chat or prompt.chat, harness.clock(), prompt.message_id)
    return await harness.engine.handle_press(press)


# -- the whole flow ----------------------------------------------------------------------


async def test_confirming_a_restart_runs_it_once_and_reports_who_confirmed(
    harness: Harness,
) -> None:
    prompt = await ask(harness)

    assert "Restarts Nextcloud" in prompt.reply.text
    for unit in NEXTCLOUD_UNITS:
        assert f"<code>{unit}</code>" in prompt.reply.text
    assert "Waiting for Olga to confirm; expires in 5 min" in prompt.reply.text
    assert [button.label for button in prompt.reply.buttons] == ["Confirm", "Cancel"]
    assert harness.server.services.calls == []  # nothing happens before the confirmation

    assert await harness.press(1, OPERATOR) == "Confirmed."

    assert restarts(harness) == dict.fromkeys(NEXTCLOUD_UNITS, 1)
    assert prompt.current.buttons == ()
    assert "✅ Confirmed by Olga." in prompt.current.text
    assert "Restarts Nextcloud" in prompt.current.text  # the edit keeps what was confirmed
    outcome = harness.outbox.last
    assert outcome is not prompt
    assert outcome.reply_to == prompt.message_id
    assert outcome.current.text == "🟢 Nextcloud restarted and active."
    conf = await confirmation_of(harness, prompt)
    assert conf.state is ConfirmationState.CONFIRMED
    assert conf.approver == OPERATOR


async def test_cancel_runs_nothing_and_closes_the_prompt(harness: Harness) -> None:
    prompt = await ask(harness)

    assert await harness.press(2, OPERATOR) == "Cancelled."

    assert harness.server.services.calls == []
    assert prompt.current.buttons == ()
    assert "✖ Cancelled by Olga; nothing was done." in prompt.current.text
    assert (await confirmation_of(harness, prompt)).state is ConfirmationState.CANCELLED
    # Confirm after cancel does not bring it back.
    assert await harness.press(1, OPERATOR) == "Already cancelled."
    assert harness.server.services.calls == []


async def test_an_admin_may_cancel_an_operators_request(harness: Harness) -> None:
    prompt = await ask(harness)

    assert await harness.press(2, ADMIN) == "Cancelled."

    assert "Cancelled by Alice" in prompt.current.text
    assert harness.server.services.calls == []


async def test_a_viewer_cannot_cancel_an_operators_request(harness: Harness) -> None:
    prompt = await ask(harness)

    assert await harness.press(2, VIEWER) == "Only the requester or an admin can cancel this."

    assert prompt.edits == []
    assert (await confirmation_of(harness, prompt)).state is ConfirmationState.PENDING


# -- expiry ------------------------------------------------------------------------------


async def test_a_press_after_five_minutes_is_told_it_expired_and_runs_nothing(
    harness: Harness,
) -> None:
    prompt = await ask(harness)
    harness.clock.advance(minutes=5, seconds=1)

    assert await harness.press(1, OPERATOR) == EXPIRED

    assert harness.server.services.calls == []
    assert prompt.current.buttons == ()
    assert "⌛ Expired; nothing was done." in prompt.current.text
    assert (await confirmation_of(harness, prompt)).state is ConfirmationState.EXPIRED
    assert AuditEvent.CONFIRMED not in await audit_events(harness)


async def test_a_press_just_before_expiry_still_runs(harness: Harness) -> None:
    await ask(harness, "/restart forgejo")
    harness.clock.advance(minutes=4, seconds=59)

    assert await harness.press(1, OPERATOR) == "Confirmed."
    assert restarts(harness) == {"forgejo.service": 1}


async def test_expire_confirmations_closes_due_prompts_and_audits_them(harness: Harness) -> None:
    old = await ask(harness, "/restart nextcloud")
    harness.clock.advance(minutes=3)
    young = await ask(harness, "/restart forgejo")
    harness.clock.advance(minutes=3)

    assert await harness.engine.expire_confirmations() == 1

    assert "⌛ Expired; nothing was done." in old.current.text
    assert old.current.buttons == ()
    assert young.edits == []
    assert (await confirmation_of(harness, old)).state is ConfirmationState.EXPIRED
    last = (await audit_rows(harness))[-1]
    assert last.event is AuditEvent.EXPIRED
    assert (last.actor, last.command, last.args) == (OPERATOR, "restart", ("nextcloud",))
    assert await harness.engine.expire_confirmations() == 0  # once only
    assert await harness.press(1, OPERATOR, message=old.message_id) == EXPIRED
    assert await harness.press(1, OPERATOR, message=young.message_id) == "Confirmed."
    assert restarts(harness) == {"forgejo.service": 1}


# -- single use and ownership ------------------------------------------------------------


async def test_pressing_confirm_twice_runs_once(harness: Harness) -> None:
    await ask(harness)

    assert await harness.press(1, OPERATOR) == "Confirmed."
    assert await harness.press(1, OPERATOR) == "Already confirmed."
    assert await harness.press(2, OPERATOR) == "Already confirmed."

    assert restarts(harness) == dict.fromkeys(NEXTCLOUD_UNITS, 1)
    assert (await audit_events(harness)).count(AuditEvent.CONFIRMED) == 1


async def test_another_admin_cannot_confirm_an_operators_restart(harness: Harness) -> None:
    prompt = await ask(harness)

    assert await harness.press(1, ADMIN2) == "Only Olga can confirm this."

    assert harness.server.services.calls == []
    assert prompt.edits == []
    assert (await confirmation_of(harness, prompt)).state is ConfirmationState.PENDING
    refused = (await audit_rows(harness))[-1]
    assert (refused.event, refused.actor) == (AuditEvent.REFUSED, ADMIN2)
    assert await harness.press(1, OPERATOR) == "Confirmed."  # still the requester's to confirm


async def test_a_forged_nonce_does_nothing(harness: Harness) -> None:
    prompt = await ask(harness)
    real = nonce_of(prompt)

    for action in (
        f"{CONFIRM}:{secrets.token_urlsafe(16)}",
        f"{CANCEL}:{secrets.token_urlsafe(16)}",
        f"{CONFIRM}:",
        CONFIRM,
        f"{CONFIRM}:{real[:-1]}",
        f"xx:{real}",
        "",
    ):
        assert await press_action(harness, action) == INVALID, action

    assert harness.server.services.calls == []
    assert prompt.edits == []
    assert (await confirmation_of(harness, prompt)).state is ConfirmationState.PENDING


async def test_a_confirm_button_pressed_in_another_chat_does_nothing(harness: Harness) -> None:
    prompt = await ask(harness)
    action = prompt.reply.buttons[0].action

    for chat in (ChatRef("telegram", "43"), ChatRef("matrix", prompt.chat.chat_id)):
        assert await press_action(harness, action, chat) == INVALID

    assert harness.server.services.calls == []
    assert (await confirmation_of(harness, prompt)).state is ConfirmationState.PENDING


# -- races -------------------------------------------------------------------------------


async def test_a_concurrent_double_press_restarts_once(db: Database) -> None:
    harness = make_harness(db, step_seconds=0.05)
    prompt = await ask(harness)

    toasts = await asyncio.gather(*(harness.press(1, OPERATOR) for _ in range(6)))

    assert sorted(toasts) == ["Already confirmed."] * 5 + ["Confirmed."]
    assert restarts(harness) == dict.fromkeys(NEXTCLOUD_UNITS, 1)
    assert (await audit_events(harness)).count(AuditEvent.OUTCOME) == 1
    assert "✅ Confirmed by Olga." in prompt.current.text


async def test_racing_confirm_and_cancel_decide_exactly_once(db: Database) -> None:
    harness = make_harness(db, step_seconds=0.05)
    prompt = await ask(harness)

    toasts = await asyncio.gather(
        harness.press(1, OPERATOR), harness.press(2, OPERATOR), harness.press(1, OPERATOR)
    )

    conf = await confirmation_of(harness, prompt)
    winners = [toast for toast in toasts if toast in ("Confirmed.", "Cancelled.")]
    assert len(winners) == 1
    if conf.state is ConfirmationState.CONFIRMED:
        assert winners == ["Confirmed."]
        assert restarts(harness) == dict.fromkeys(NEXTCLOUD_UNITS, 1)
    else:
        assert conf.state is ConfirmationState.CANCELLED
        assert winners == ["Cancelled."]
        assert harness.server.services.calls == []


# -- two-person actions ------------------------------------------------------------------


async def test_a_two_person_restart_needs_a_second_admin(sqlite_db: Database) -> None:
    harness = make_harness(sqlite_db, two_person=frozenset({"restart"}))
    prompt = await ask(harness, actor=ADMIN)
    assert "Waiting for a second admin to confirm" in prompt.reply.text

    assert await harness.press(1, ADMIN) == "This needs a second admin to confirm."
    assert await harness.press(1, OPERATOR) == "Only an admin can approve this."
    assert harness.server.services.calls == []
    assert prompt.edits == []

    assert await harness.press(1, ADMIN2) == "Confirmed."

    assert restarts(harness) == dict.fromkeys(NEXTCLOUD_UNITS, 1)
    assert "✅ Confirmed by Bob." in prompt.current.text
    assert (await confirmation_of(harness, prompt)).approver == ADMIN2
    confirmed = [row for row in await audit_rows(harness) if row.event is AuditEvent.CONFIRMED]
    assert [(row.actor, row.approver) for row in confirmed] == [(ADMIN, ADMIN2)]


async def test_one_person_with_two_admin_accounts_is_not_a_second_admin(
    sqlite_db: Database,
) -> None:
    harness = make_harness(sqlite_db, two_person=frozenset({"restart"}))
    alice_on_matrix = Actor("matrix", "@alice:example.org", "Alice")
    harness.engine.access = AccessPolicy.from_lists(
        admins=[ADMIN.user_id, ADMIN2.user_id, alice_on_matrix.user_id],
        people=[("telegram:1001", "alice"), ("matrix:@alice:example.org", "alice")],
    )
    prompt = await ask(harness, actor=ADMIN)
    assert await harness.press(1, alice_on_matrix) == "This needs a second admin to confirm."
    assert harness.server.services.calls == []
    assert await harness.press(1, ADMIN2) == "Confirmed."
    assert (await confirmation_of(harness, prompt)).approver == ADMIN2


async def test_an_operators_two_person_restart_is_approved_by_an_admin(
    sqlite_db: Database,
) -> None:
    harness = make_harness(sqlite_db, two_person=frozenset({"restart"}))
    await ask(harness, "/restart forgejo", OPERATOR)

    assert await harness.press(1, OPERATOR) == "This needs a second admin to confirm."
    assert await harness.press(1, ADMIN) == "Confirmed."
    assert restarts(harness) == {"forgejo.service": 1}


async def test_two_person_applies_only_to_the_listed_commands(sqlite_db: Database) -> None:
    harness = make_harness(sqlite_db, two_person=frozenset({"rebuild"}))
    await ask(harness, "/restart forgejo", ADMIN)

    assert await harness.press(1, ADMIN) == "Confirmed."


# -- the nonce ---------------------------------------------------------------------------


async def test_the_nonce_has_at_least_96_bits_and_fits_a_telegram_button(
    harness: Harness,
) -> None:
    first = await ask(harness)
    second = await ask(harness)

    for prompt in (first, second):
        confirm, cancel = prompt.reply.buttons
        for button in (confirm, cancel):
            assert len(button.action.encode()) <= 64
        token = nonce_of(prompt)
        assert cancel.action == f"{CANCEL}:{token}"
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) >= 12
    assert nonce_of(first) != nonce_of(second)
    assert len(prompts(harness)) == 2
