"""Rebuilds through the engine, on the demo server: enable and disable, Keep and the automatic
rollback, failures that restore the desired state, one rebuild at a time, settings, ssh keys
and the reboot."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Literal

import pytest

from handlers.core.records import JobState
from handlers.system import REBOOT_NOTE, welcome_back
from providers.host.base import HostMetrics
from providers.nixos.base import REBUILD_UNIT
from providers.nixos.sshkeys import fingerprint
from tests.conftest import ADMIN2, CHAT, OPERATOR, VIEWER, Harness

# Made by ssh-keygen -t ed25519 -C alice; `ssh-keygen -lf` printed the fingerprint below.
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9NcAVSWVPiChpEzN4D6yCslK/Z5WnR8ZfMZgqlB+oF alice"
KEY_FINGERPRINT = "SHA256:4V6Me0geGbV4rC8dmpfNWrD3aX5MKtBJlNQ+Je/AZUc"


async def current(harness: Harness) -> int:
    return next(g.number for g in await harness.server.nixos.generations() if g.current)


async def confirmed(harness: Harness, text: str) -> str:
    """Send a command, press Confirm, wait for its job: the text of the job's message."""
    await harness.say(text)
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    return harness.outbox.last.current.text


async def test_enable_writes_the_desired_state_rebuilds_and_offers_keep(harness: Harness) -> None:
    harness.server.rebuilds.step_seconds = 0.05
    before = await current(harness)
    prompt = await harness.say("/enable pleroma")
    assert "services.pleroma.enable</code>: false → <b>true</b>" in prompt
    assert "pleroma.service" in prompt
    assert not harness.server.desired.state.enabled("pleroma")  # nothing before Confirm

    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    job_message = harness.outbox.last
    # One message for the job: sent once, then edited in place with the phases.
    progress = [job_message.reply.text, *(edit.text for edit in job_message.edits)]
    assert any("Building the system configuration" in text for text in progress)
    final = job_message.current
    assert f"Generation {before} → <b>{before + 1}</b>" in final.text
    assert "Press <b>Keep</b> within 10 min" in final.text
    assert [b.label for b in final.buttons] == ["Keep", "Roll back now"]
    assert harness.server.desired.state.enabled("pleroma")
    assert harness.server.rebuilds.started == [REBUILD_UNIT]
    assert "pleroma.service" in harness.server.services.units

    toast = await harness.press(1)
    assert toast == "Done."
    kept = harness.outbox.last.current
    assert "Generation 45 is kept" in kept.text
    assert "Enabling Pleroma" in kept.text  # what was kept stays in the message
    assert kept.buttons == ()
    assert await current(harness) == before + 1
    # Nothing is left to expire: the offer is decided.
    harness.clock.advance(minutes=11)
    assert await harness.engine.expire_confirmations() == 0
    assert await current(harness) == before + 1


async def test_without_keep_the_previous_generation_comes_back(harness: Harness) -> None:
    before = await current(harness)
    await confirmed(harness, "/enable pleroma")
    offer = harness.outbox.last
    assert await current(harness) == before + 1

    harness.clock.advance(minutes=9)
    assert await harness.engine.expire_confirmations() == 0
    harness.clock.advance(minutes=2)
    assert await harness.engine.expire_confirmations() == 1
    assert await harness.engine.wait_for_jobs(10)

    assert await current(harness) == before
    assert harness.server.rebuilds.started[-1] == f"steward-rollback@{before}.service"
    assert offer.current.buttons == ()
    assert f"back to {before}" in offer.current.text
    assert f"Generation {before + 1} → <b>{before}</b>" in offer.current.text
    # The rollback offers no Keep of its own.
    assert "Keep" not in offer.current.text.split("back to")[-1]


async def test_a_switch_not_kept_takes_its_change_to_the_desired_state_with_it(
    harness: Harness,
) -> None:
    before = await current(harness)
    await confirmed(harness, "/enable pleroma")
    offer = harness.outbox.last
    harness.clock.advance(minutes=11)
    assert await harness.engine.expire_confirmations() == 1
    assert await harness.engine.wait_for_jobs(10)
    assert await current(harness) == before
    assert not harness.server.desired.state.enabled("pleroma")
    assert "The desired state was put back as it was" in offer.current.text

    await confirmed(harness, "/rebuild")
    assert not harness.server.desired.state.enabled("pleroma")
    assert "pleroma.service" not in harness.server.services.units


async def test_roll_back_now_puts_the_desired_state_back_too(harness: Harness) -> None:
    await confirmed(harness, "/enable pleroma")
    await harness.press(2)
    assert await harness.engine.wait_for_jobs(10)
    assert not harness.server.desired.state.enabled("pleroma")
    await confirmed(harness, "/rebuild")
    assert "pleroma.service" not in harness.server.services.units


async def test_a_desired_state_changed_since_is_left_alone_and_said_so(harness: Harness) -> None:
    before = await current(harness)
    await confirmed(harness, "/enable pleroma")
    offer = harness.outbox.last
    # Someone else changes the desired state (by hand, or a rebuild that is still to come).
    await harness.server.desired.update(lambda s: s.with_system(timezone="Europe/Berlin"))
    await harness.press(2)
    assert await harness.engine.wait_for_jobs(10)
    assert await current(harness) == before
    state = harness.server.desired.state
    assert state.enabled("pleroma")
    assert state.system.timezone == "Europe/Berlin"
    assert "changed again since, so it was left as it is" in offer.current.text


async def test_keep_keeps_the_change_for_good(harness: Harness) -> None:
    await confirmed(harness, "/enable pleroma")
    await harness.press(1)  # Keep
    after = await current(harness)
    assert await harness.engine.deps.notes.get(f"rebuild:offer:{after}") is None
    assert harness.server.desired.state.enabled("pleroma")


async def test_roll_back_now_rolls_back_at_once(harness: Harness) -> None:
    before = await current(harness)
    await confirmed(harness, "/rebuild")
    await harness.press(2)
    assert await harness.engine.wait_for_jobs(10)
    assert await current(harness) == before


async def test_only_an_admin_may_keep_or_roll_back(harness: Harness) -> None:
    await confirmed(harness, "/enable pleroma")
    assert await harness.press(1, VIEWER) == "Only Alice can confirm this."
    assert await harness.press(2, OPERATOR) == "Only the requester or an admin can cancel this."
    assert harness.outbox.last.current.buttons  # still open


async def test_a_failed_rebuild_restores_the_desired_state_and_shows_the_log(
    harness: Harness,
) -> None:
    before = await current(harness)
    harness.server.rebuilds.fail_next = "error: attribute 'pleromaa' missing"
    text = await confirmed(harness, "/enable pleroma")

    assert "Enabling Pleroma failed" in text
    assert "The desired state was put back as it was." in text
    assert "attribute &#x27;pleromaa&#x27; missing" in text
    assert not harness.server.desired.state.enabled("pleroma")
    assert await current(harness) == before
    jobs = await harness.engine.jobs.store.unfinished()
    assert jobs == []
    assert harness.outbox.last.current.buttons == ()


async def test_root_refusing_the_desired_state_is_said_first(harness: Harness) -> None:
    harness.server.rebuilds.fail_next = (
        "steward: desired state refused: services: pleroma is not in the catalogue"
    )
    text = await confirmed(harness, "/enable pleroma")
    assert (
        "Enabling Pleroma failed.</b> /generations shows what runs now.\n🛑 Root refused the "
        "desired state: <b>services: pleroma is not in the catalogue</b>"
    ) in text
    assert not harness.server.desired.state.enabled("pleroma")


async def test_two_rebuild_requests_lead_to_one_rebuild(harness: Harness) -> None:
    harness.server.rebuilds.step_seconds = 0.2
    await harness.say("/rebuild")
    await harness.press(1)
    await harness.say("/rebuild", ADMIN2)
    await harness.press(1, ADMIN2)
    assert await harness.engine.wait_for_jobs(10)
    assert harness.server.rebuilds.started == [REBUILD_UNIT]
    outcomes = [
        sent.current.text for sent in harness.outbox.messages if "done in" in sent.current.text
    ]
    assert len(outcomes) == 2
    assert sum("already running; I followed it" in text for text in outcomes) == 1


async def test_a_change_waits_for_the_running_rebuild_then_rebuilds_again(
    harness: Harness,
) -> None:
    harness.server.rebuilds.step_seconds = 0.2
    await harness.say("/rebuild")
    await harness.press(1)
    await harness.say("/enable pleroma", ADMIN2)
    await harness.press(1, ADMIN2)
    assert await harness.engine.wait_for_jobs(10)
    assert harness.server.rebuilds.started == [REBUILD_UNIT, REBUILD_UNIT]
    assert harness.server.desired.state.enabled("pleroma")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/enable nextcloud", "Nextcloud is already enabled."),
        ("/disable pleroma", "Pleroma is already disabled."),
        ("/enable nextclud", "Unknown service nextclud."),
        ("/rollback 44", "Generation 44 is already the current one."),
        ("/rollback 7", "There is no generation 7."),
        ("/set timezone Mars/Olympus", "Mars/Olympus is not a time zone."),
        ("/set autoupgrade maybe", "autoupgrade takes on, off or reboot"),
        ("/sshkey remove 3", "There is no key 3"),
        ("/sshkey add ssh-ed25519 AAAA", "Not a valid key"),
    ],
)
async def test_bad_requests_get_one_sentence_and_change_nothing(
    harness: Harness, text: str, answer: str
) -> None:
    before = harness.server.desired.state
    reply = await harness.say(text)
    assert answer in reply
    assert harness.server.desired.state == before
    assert harness.server.rebuilds.started == []
    assert all(not sent.reply.buttons for sent in harness.outbox.messages)


async def test_a_corrupt_desired_state_is_reported_and_left_alone(harness: Harness) -> None:
    harness.server.desired.corrupt = True
    reply = await harness.say("/enable pleroma")
    assert "not valid JSON" in reply
    assert "will not overwrite it" in reply
    assert harness.server.desired.writes == 0
    assert harness.server.rebuilds.started == []


async def test_rollback_goes_to_the_generation_before_or_the_one_named(harness: Harness) -> None:
    prompt = await harness.say("/rollback")
    assert "Switches from generation 44 to <b>43</b>" in prompt
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    assert await current(harness) == 43
    assert harness.server.rebuilds.started == ["steward-rollback@43.service"]
    await harness.press(1)  # Keep
    await confirmed(harness, "/rollback 41")
    assert await current(harness) == 41


async def test_settings_show_and_set(harness: Harness) -> None:
    shown = await harness.say("/settings")
    assert "time zone: <i>as the NixOS configuration says</i>" in shown
    prompt = await harness.say("/set timezone europe/berlin")
    assert "system.timezone</code>: unset → <b>&quot;Europe/Berlin&quot;</b>" in prompt
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    assert harness.server.desired.state.system.timezone == "Europe/Berlin"
    await confirmed(harness, "/set autoupgrade reboot")
    system = harness.server.desired.state.system
    assert (system.auto_upgrade, system.allow_reboot) == (True, True)
    shown = await harness.say("/settings")
    assert "automatic upgrades: on, with reboots" in shown
    assert "time zone: Europe/Berlin" in shown


async def test_ssh_keys_are_listed_added_and_removed(harness: Harness) -> None:
    assert "No root ssh keys are set from chat" in await harness.say("/sshkey")
    kind, data, comment = KEY.split()
    prompt = await harness.say(f"/sshkey add {kind} {data} {comment}")
    assert fingerprint(KEY) in prompt
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    assert harness.server.desired.state.system.root_keys == (KEY,)
    listing = await harness.say("/sshkey list")
    assert "1. <code>ssh-ed25519</code> alice" in listing
    assert "already there" in await harness.say(f"/sshkey add {kind} {data}")
    prompt = await harness.say("/sshkey remove alice")
    assert "It is the last key set from chat" in prompt
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    assert not harness.server.desired.state.system.root_keys


def test_fingerprints_match_openssh() -> None:
    assert fingerprint(KEY) == KEY_FINGERPRINT
    assert fingerprint("ssh-ed25519 not-base64!") == "SHA256:?"


async def test_reboot_then_back_after_n_seconds(harness: Harness) -> None:
    text = await harness.say("/reboot")
    assert "Reboots the server now" in text
    await harness.press(1)
    assert harness.server.services.reboots == 1
    assert "Rebooting now" in harness.outbox.last.current.text
    assert await harness.engine.deps.notes.get(REBOOT_NOTE) is not None

    harness.clock.advance(seconds=95)
    harness.server.host.metrics_value = _uptime(harness, 60)  # booted 35 s after the request
    back = await welcome_back(harness.engine.deps, harness.clock())
    assert back is not None
    chat, reply = back
    assert chat == CHAT
    assert reply.text.startswith("✅ Back after 95 s")
    assert await harness.engine.deps.notes.get(REBOOT_NOTE) is None
    assert await welcome_back(harness.engine.deps, harness.clock()) is None


async def test_a_restart_without_a_reboot_is_called_out(harness: Harness) -> None:
    await harness.say("/reboot")
    await harness.press(1)
    harness.clock.advance(seconds=30)
    harness.server.host.metrics_value = _uptime(harness, 3 * 86400)
    back = await welcome_back(harness.engine.deps, harness.clock())
    assert back is not None
    assert "did not reboot" in back[1].text


async def test_a_refused_reboot_says_why_and_leaves_no_note(harness: Harness) -> None:
    harness.server.services.down = True
    await harness.say("/reboot")
    await harness.press(1)
    assert "The reboot was refused" in harness.outbox.last.current.text
    assert await harness.engine.deps.notes.get(REBOOT_NOTE) is None


async def test_a_rebuild_job_resumes_from_its_note_after_a_restart(harness: Harness) -> None:
    """The job's note holds what it follows: a new runner finds the run and reports it."""
    harness.server.rebuilds.step_seconds = 0.3
    await harness.say("/enable pleroma")
    await harness.press(1)
    (job,) = await harness.engine.jobs.store.unfinished()
    while job.message_id is None or "Building" not in harness.outbox.last.current.text:
        await asyncio.sleep(0.02)
        job = await harness.engine.jobs.store.get(job.id) or job
    # The bot dies: its tasks are gone, the job row and the note stay.
    for task in list(harness.engine.jobs._tasks):
        task.cancel()
    note = json.loads(await harness.engine.deps.notes.get(f"rebuild:job:{job.id}") or "{}")
    assert note["run"]["unit"] == REBUILD_UNIT
    assert await harness.engine.jobs.reattach() == 1
    assert await harness.engine.wait_for_jobs(10)
    message = harness.outbox.by_id(job.message_id or "")
    assert "Enabling Pleroma</b>: done" in message.current.text
    assert [b.label for b in message.current.buttons] == ["Keep", "Roll back now"]
    finished = await harness.engine.jobs.store.get(job.id)
    assert finished is not None
    assert finished.state is JobState.SUCCEEDED


def _uptime(harness: Harness, seconds: float) -> HostMetrics:
    return replace(harness.server.host.metrics_value, uptime_seconds=seconds)


def test_the_demo_has_one_service_to_enable(harness: Harness) -> None:
    desired = harness.server.desired.state
    assert [sid for sid in harness.server.catalogue if not desired.enabled(sid)] == ["pleroma"]
    assert "pleroma.service" not in harness.server.services.units


async def test_upgrade_previews_the_closure_diff_when_asked(harness: Harness) -> None:
    plain = await harness.say("/upgrade")
    assert "the nixos channel" in plain
    assert "What the build changes" not in plain
    await harness.press(2)
    deps = harness.engine.deps
    policy = replace(deps.policy, preview_build=True, upgrade_flake="/etc/nixos")
    harness.engine.deps = replace(deps, policy=policy)
    text = await harness.say("/upgrade")
    assert "the inputs of the flake <code>/etc/nixos</code>" in text
    assert "What the build changes" in text
    assert "linux: 6.12.44 → 6.12.47" in text


async def test_keep_can_be_turned_off(harness: Harness) -> None:
    deps = harness.engine.deps
    harness.engine.deps = replace(deps, policy=replace(deps.policy, keep_minutes=None))
    before = await current(harness)
    text = await confirmed(harness, "/enable pleroma")
    assert f"Generation {before} → <b>{before + 1}</b>" in text
    assert "Keep" not in text
    assert harness.outbox.last.current.buttons == ()
    harness.clock.advance(hours=1)
    assert await harness.engine.expire_confirmations() == 0
    assert await current(harness) == before + 1


async def test_a_snapshot_can_come_before_the_upgrade(harness: Harness) -> None:
    deps = harness.engine.deps
    harness.engine.deps = replace(deps, policy=replace(deps.policy, snapshot_before_upgrade=True))
    cloud = harness.server.cloud
    before = len(await cloud.snapshots())
    assert "A snapshot of the server is taken first." in await harness.say("/upgrade")
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    assert len(await cloud.snapshots()) == before + 1
    assert harness.outbox.last.current.text.startswith("📸 Snapshot")
    cloud.down = True
    text = await confirmed(harness, "/upgrade")
    assert "No upgrade: the snapshot before it failed" in text
    assert harness.server.rebuilds.started == ["steward-upgrade.service"]


async def test_a_rebuild_unit_that_cannot_start_puts_the_desired_state_back(
    harness: Harness,
) -> None:
    harness.server.rebuilds.refuse_start = "Access denied"
    text = await confirmed(harness, "/enable pleroma")
    assert "Enabling Pleroma could not start: Access denied" in text
    assert "The desired state was put back as it was." in text
    assert not harness.server.desired.state.enabled("pleroma")


def root_keys(harness: Harness, mode: Literal["off", "code", "open"]) -> None:
    deps = harness.engine.deps
    harness.engine.deps = replace(deps, policy=replace(deps.policy, root_keys=mode))


async def test_root_keys_from_chat_are_refused_at_once_where_root_would_refuse_them(
    harness: Harness,
) -> None:
    root_keys(harness, "off")
    kind, data, comment = KEY.split()
    said = await harness.say(f"/sshkey add {kind} {data} {comment}")
    assert "Root keys cannot be added from chat on this server" in said
    assert harness.server.desired.state.system.root_keys == ()
    assert "Waiting for" not in said  # refused before any confirmation


async def test_with_root_checking_keys_each_key_carries_its_code_to_root(
    harness: Harness,
) -> None:
    root_keys(harness, "code")
    kind, data, comment = KEY.split()
    assert "6-digit code" in await harness.say(f"/sshkey add {kind} {data} {comment}")
    prompt = await harness.say(f"/sshkey add {kind} {data} {comment} 123456")
    assert KEY_FINGERPRINT in prompt
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    system = harness.server.desired.state.system
    assert system.root_keys == (KEY,)
    at = int(harness.clock().timestamp())
    assert system.root_key_codes == ((KEY_FINGERPRINT, "123456", at),)
    # Removing a key drops its code.
    await confirmed(harness, "/sshkey remove alice")
    assert harness.server.desired.state.system.root_key_codes == ()
