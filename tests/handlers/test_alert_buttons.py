"""Snooze 1h, Mute 24h and Details on an alert: a press is the presser sending the command,
for commands marked ``button`` only; anything else a button might carry does nothing."""

from __future__ import annotations

import pytest

from handlers.alerts import alert_id, alert_states, check_alerts
from handlers.core.messages import Actor, Button, Press
from tests.conftest import ADMIN, CHAT, OPERATOR, VIEWER, Harness


async def alert(harness: Harness) -> list[Button]:
    harness.server.host.fill_disk(93)
    found = await check_alerts(harness.engine.deps, harness.clock())
    disk = next(reply for reply in found if "disk /" in reply.text)
    return list(disk.buttons)


async def press(harness: Harness, action: str, actor: object = OPERATOR) -> tuple[str, str]:
    """(the toast, what the chat got)"""
    before = len(harness.outbox.messages)
    toasts: list[str] = []

    async def answer(toast: str) -> None:
        toasts.append(toast)

    await harness.engine.handle_press(
        Press(action, actor, CHAT, harness.clock(), "m9"),  # type: ignore[arg-type]
        answer,
    )
    assert len(toasts) == 1  # every press is answered once
    said = "\n".join(s.current.text for s in harness.outbox.messages[before:])
    return toasts[0], said


async def audit_results(harness: Harness) -> list[tuple[str, str, str]]:
    rows = await harness.engine.deps.audit.recent(20)
    return [(row.event.value, row.command, row.result) for row in rows]


async def test_a_warning_carries_snooze_mute_and_details_buttons(harness: Harness) -> None:
    buttons = await alert(harness)
    short = alert_id("disk:/")
    assert [(b.label, b.action) for b in buttons] == [
        ("Snooze 1h", f"run:snooze {short}"),
        ("Mute 24h", f"run:mute {short}"),
        ("Details", f"run:details {short}"),
    ]
    harness.server.host.fill_disk(20)
    harness.clock.advance(minutes=5)
    (recovered,) = [
        r for r in await check_alerts(harness.engine.deps, harness.clock()) if "disk /" in r.text
    ]
    assert recovered.buttons == ()


async def test_snooze_from_its_button_quiets_the_alert_and_is_audited(harness: Harness) -> None:
    snooze = (await alert(harness))[0]
    toast, said = await press(harness, snooze.action)
    assert toast == "OK"
    assert "🔕 disk / is 93% full: no messages about it until" in said
    (state,) = [s for s in await alert_states(harness.engine.deps) if s.key == "disk:/"]
    assert state.quiet(harness.clock())
    assert ("outcome", "snooze", "ok") in await audit_results(harness)


async def test_a_viewer_may_see_details_but_not_snooze(harness: Harness) -> None:
    snooze, _, details = await alert(harness)
    toast, said = await press(harness, snooze.action, VIEWER)
    assert toast == "/snooze needs the operator role; you are viewer."
    assert said == ""
    (state,) = [s for s in await alert_states(harness.engine.deps) if s.key == "disk:/"]
    assert not state.quiet(harness.clock())
    toast, said = await press(harness, details.action, VIEWER)
    assert toast == "OK"
    assert "<b>disk / is 93% full</b>" in said
    assert "Level: ⚠️ warning" in said
    assert "Biggest service folders:" in said


@pytest.mark.parametrize(
    "action",
    [
        "run:restart nextcloud",  # a real command, but not one for a button
        "run:forget 0123abcd",
        "run:rollback",
        "run:",
        "run:   ",
        "run:nosuchcommand x",
        "run:keep 1 2",  # internal
    ],
)
async def test_forged_run_buttons_do_nothing(harness: Harness, action: str) -> None:
    toast, said = await press(harness, action, ADMIN)
    assert toast == "This button is not valid (anymore)."
    assert said == ""
    assert (
        harness.server.services.calls == [] if hasattr(harness.server.services, "calls") else True
    )
    event, command, result = (await audit_results(harness))[0]
    assert (event, command) == ("refused", "press")
    assert result == toast


async def test_a_stranger_pressing_snooze_gets_the_neutral_refusal(harness: Harness) -> None:
    snooze = (await alert(harness))[0]
    toast, said = await press(harness, snooze.action, Actor("telegram", "666", "Mallory"))
    assert toast == "Sorry, this is a private bot."
    assert said == ""


def test_a_button_never_carries_more_than_telegram_takes() -> None:
    Button.run("ok", "x" * 60)
    with pytest.raises(ValueError, match="over 64 bytes"):
        Button.run("too long", "x" * 61)


@pytest.mark.parametrize("quiet", ["Snooze 1h", "Mute 24h"])
async def test_a_snoozed_disk_warning_still_lets_the_critical_through(
    harness: Harness, quiet: str
) -> None:
    button = next(b for b in await alert(harness) if b.label == quiet)
    await press(harness, button.action)
    harness.clock.advance(minutes=5)
    harness.server.host.fill_disk(94)  # still a warning: held back
    assert not [r for r in await check_alerts(harness.engine.deps, harness.clock())
                if "disk /" in r.text]  # fmt: skip
    harness.clock.advance(minutes=5)
    harness.server.host.fill_disk(97)
    critical = [
        r for r in await check_alerts(harness.engine.deps, harness.clock()) if "disk /" in r.text
    ]
    assert len(critical) == 1
    assert "97%" in critical[0].text
    (state,) = [s for s in await alert_states(harness.engine.deps) if s.key == "disk:/"]
    assert not state.quiet(harness.clock())  # the snooze ended where it broke through
