"""What a ``run:`` button may carry, beyond the alert buttons' own tests
(tests/handlers/test_alert_buttons.py): its data comes from the client and may be forged, so
only a button command with arguments it takes runs, always as the presser's own command."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handlers.alerts import alert_id, alert_states, check_alerts
from handlers.catalog import build_registry
from handlers.core.context import Context
from handlers.core.messages import Actor, ChatRef, Press, Reply
from handlers.core.registry import Registry
from handlers.core.spec import CommandSpec, Role
from tests.conftest import ADMIN, CHAT, OPERATOR, VIEWER, Harness

pytestmark = pytest.mark.timeout(60)
INVALID = "This button is not valid (anymore)."


async def press(
    harness: Harness, action: str, actor: Actor = OPERATOR, chat: ChatRef = CHAT
) -> tuple[str, list[str]]:
    """(the toast, what the chat got)"""
    before = len(harness.outbox.messages)
    toasts: list[str] = []

    async def answer(toast: str) -> None:
        toasts.append(toast)

    returned = await harness.engine.handle_press(
        Press(action, actor, chat, harness.clock(), "m9"), answer
    )
    assert toasts == [returned]  # answered once, with what it returns
    return returned, [s.current.text for s in harness.outbox.messages[before:]]


async def newest_audit(harness: Harness) -> tuple[str, str, tuple[str, ...], str]:
    row = (await harness.engine.deps.audit.recent(1))[0]
    return row.event.value, row.command, row.args, row.result


async def open_disk_alert(harness: Harness) -> str:
    harness.server.host.fill_disk(93)
    await check_alerts(harness.engine.deps, harness.clock())
    return alert_id("disk:/")


def test_only_snooze_mute_details_and_backup_init_may_run_from_a_button_with_their_roles() -> None:
    marked = {e.spec.name: e.spec for e in build_registry() if e.spec.button}
    assert sorted(marked) == ["backup init", "details", "mute", "snooze"]
    assert {n: s.role for n, s in marked.items()} == {
        "backup init": Role.ADMIN,
        "details": Role.VIEWER,
        "mute": Role.OPERATOR,
        "snooze": Role.OPERATOR,
    }
    assert not any(s.internal for s in marked.values())
    # The one that changes the server gets there only through its own confirmation (#19: the
    # scheduled backup's "Create the repository"): the press is the admin typing it.
    assert [n for n, s in marked.items() if s.changes] == ["backup init"]


def test_an_internal_command_cannot_be_a_button() -> None:
    with pytest.raises(ValueError, match="internal command cannot be run from a button"):
        CommandSpec("keep", "Keep it", internal=True, button=True)
    assert CommandSpec("details", "More", button=True).button


@pytest.mark.parametrize(
    "command_line",
    [
        "snooze",  # missing the id
        "snooze ZZZZZZ",  # not an id
        "snooze abcdef extra",  # too many
        "details ../../etc",
        "mute 1234567",
    ],
)
async def test_a_button_command_with_arguments_it_does_not_take_is_refused_quietly(
    harness: Harness, command_line: str
) -> None:
    toast, said = await press(harness, f"run:{command_line}", ADMIN)
    assert toast == INVALID
    assert said == []  # no usage text in the chat: nobody typed this
    assert await newest_audit(harness) == ("refused", "press", (f"run:{command_line}",), INVALID)


async def test_the_audit_row_names_what_a_forged_button_carried(harness: Harness) -> None:
    toast, said = await press(harness, "run:restart nextcloud", ADMIN)
    assert (toast, said) == (INVALID, [])
    rows = await harness.engine.deps.audit.recent(10)
    assert [(r.event.value, r.command, r.args, r.result) for r in rows] == [
        ("refused", "press", ("run:restart nextcloud",), INVALID)
    ]  # the only row: no confirmation was asked for


async def test_a_long_forged_action_is_cut_in_the_audit(harness: Harness) -> None:
    action = "run:" + "x" * 5000  # not from Telegram (64 bytes), but the engine takes any
    toast, _ = await press(harness, action, ADMIN)
    assert toast == INVALID
    assert (await newest_audit(harness))[2] == (action[:64],)


async def test_a_stranger_press_is_audited_as_a_stranger_with_what_was_pressed(
    harness: Harness,
) -> None:
    short = await open_disk_alert(harness)
    mallory = Actor("telegram", "666", "Mallory")
    toast, said = await press(harness, f"run:snooze {short}", mallory)
    assert (toast, said) == ("Sorry, this is a private bot.", [])
    assert await newest_audit(harness) == ("refused", "press", (f"run:snooze {short}",),
                                           "stranger")  # fmt: skip


async def test_a_refused_role_names_the_press_and_says_nothing_in_the_chat(
    harness: Harness,
) -> None:
    short = await open_disk_alert(harness)
    toast, said = await press(harness, f"run:mute {short}", VIEWER)
    assert toast == "/mute needs the operator role; you are viewer."
    assert said == []
    assert await newest_audit(harness) == ("refused", "press", (f"run:mute {short}",), toast)
    (state,) = [s for s in await alert_states(harness.engine.deps) if s.key == "disk:/"]
    assert state.snoozed_until is None


async def test_mute_from_a_button_quiets_for_a_day_and_answers_the_pressed_message(
    harness: Harness,
) -> None:
    short = await open_disk_alert(harness)
    before = len(harness.outbox.messages)
    toast, said = await press(harness, f"run:mute {short}")
    assert toast == "OK"
    assert len(said) == 1
    assert said[0].startswith("🔕 disk / is 93% full: no messages about it until")
    assert harness.outbox.messages[before].reply_to == "m9"  # a reply to the alert
    (state,) = [s for s in await alert_states(harness.engine.deps) if s.key == "disk:/"]
    assert state.snoozed_until is not None
    assert (state.snoozed_until - harness.clock()).total_seconds() == 24 * 3600
    row = (await harness.engine.deps.audit.recent(1))[0]
    assert (row.event.value, row.command, row.args, row.actor) == (
        "outcome", "mute", (short,), OPERATOR,
    )  # fmt: skip


async def test_a_pressed_alert_that_is_gone_answers_like_the_command(harness: Harness) -> None:
    toast, said = await press(harness, "run:details abcdef", VIEWER)
    assert toast == "OK"
    assert said == ["❌ There is no alert abcdef; /alerts lists them with their ids."]


async def test_a_changing_button_command_still_asks_for_a_confirmation(harness: Harness) -> None:
    """No command marked ``button`` changes the server today; if one ever does, the press
    is the presser asking, and the confirmation comes as for the typed command."""
    ran: list[str] = []
    extra = Registry()

    @extra.command("poke", "Poke it", role=Role.OPERATOR, changes=True, button=True)
    async def poke(ctx: Context) -> Reply:
        ran.append(ctx.command.actor.user_id)
        raise AssertionError("runs only after a confirmation")

    @poke.preview
    async def _preview(ctx: Context) -> str:
        return "It would be poked."

    registry = build_registry()
    registry.include(extra)
    harness.engine.deps = replace(harness.engine.deps, registry=registry)
    toast, said = await press(harness, "run:poke")
    assert toast == "OK"
    assert len(said) == 1
    assert said[0].startswith("<b>Confirm <code>/poke</code></b>\nIt would be poked.")
    assert [b.label for b in harness.outbox.last.reply.buttons] == ["Confirm", "Cancel"]
    assert ran == []
    assert (await newest_audit(harness))[:2] == ("confirm_requested", "poke")
