"""/service, /start, /stop and /logs on the demo server, through the real engine."""

from __future__ import annotations

from tests.conftest import ADMIN, OPERATOR, STRANGER, VIEWER, Harness
from tests.support.engine_probe import audit_rows


async def test_service_shows_units_state_since_memory_and_folder_sizes(harness: Harness) -> None:
    text = await harness.say("/service jitsi", VIEWER)
    assert "<b>Jitsi Meet</b> (jitsi) failed" in text
    assert "<code>jicofo.service</code> failed, since " in text
    assert "<code>prosody.service</code> active (running), since " in text
    assert "150.0 MiB memory" in text
    assert "<code>/var/lib/jitsi-meet</code> " in text
    assert "GiB" in text
    # One status call for all its units, none for other services.
    shows = [call for call in harness.server.services.calls if call[0] == "show"]
    assert shows == [("show", "jitsi-videobridge2.service", "jicofo.service", "prosody.service")]


async def test_service_says_when_a_folder_could_not_be_measured(harness: Harness) -> None:
    harness.server.host.sizes.clear()
    text = await harness.say("/service nextcloud", VIEWER)
    assert "<code>/var/lib/nextcloud</code> size unknown" in text


async def test_an_unknown_service_is_named_and_the_known_ones_listed(harness: Harness) -> None:
    text = await harness.say("/service gitlab", VIEWER)
    assert "Unknown service gitlab" in text
    assert "nextcloud" in text


async def test_stop_then_start_go_through_confirmation_in_unit_order(harness: Harness) -> None:
    stop = await harness.say("/stop nextcloud", OPERATOR)
    assert "Stops Nextcloud" in stop
    assert "cut off" in stop
    assert harness.server.services.calls == []
    assert await harness.press(1, OPERATOR) == "Confirmed."
    stopped = [call[1] for call in harness.server.services.calls if call[0] == "stop"]
    # Its own units, the last first; nginx serves other sites and is not Nextcloud's to stop.
    assert stopped == ["redis-nextcloud.service", "phpfpm-nextcloud.service"]
    assert "Nextcloud stopped" in harness.outbox.messages[-1].current.text

    await harness.say("/start nextcloud", OPERATOR)
    assert await harness.press(1, OPERATOR) == "Confirmed."
    started = [call[1] for call in harness.server.services.calls if call[0] == "start"]
    assert started == ["phpfpm-nextcloud.service", "redis-nextcloud.service"]
    assert "Nextcloud started and active" in harness.outbox.messages[-1].current.text


async def test_a_failing_start_says_which_unit_and_why(harness: Harness) -> None:
    harness.server.services.fail_restart.add("redis-nextcloud.service")
    await harness.say("/start nextcloud", OPERATOR)
    await harness.press(1, OPERATOR)
    last = harness.outbox.messages[-1].current.text
    assert "Starting <code>redis-nextcloud.service</code> failed" in last
    assert "Job for redis-nextcloud.service failed" in last


async def test_a_viewer_may_look_but_not_stop(harness: Harness) -> None:
    text = await harness.say("/stop nextcloud", VIEWER)
    assert "/stop needs the operator role; you are viewer." in text
    assert harness.server.services.calls == []


async def test_a_bare_start_says_hello_to_anyone_with_a_role(harness: Harness) -> None:
    text = await harness.say("/start", VIEWER)
    assert text.startswith("Hello ")
    assert "you are <b>viewer</b>" in text
    assert "/stop" not in text  # help shows only what a viewer may run
    assert await harness.say("/start", STRANGER) == "Sorry, this is a private bot."


async def test_logs_are_escaped_limited_and_for_admins_only(harness: Harness) -> None:
    text = await harness.say("/logs jitsi 2", ADMIN)
    assert "the last 2 journal lines" in text
    assert "&lt;prosody&gt; &amp; gave up" in text  # what a service writes is never markup
    assert "<pre>" in text
    assert text.count("\n") == 2  # the head line and two journal lines
    journal_calls = [c for c in harness.server.services.calls if c[0] == "journalctl"]
    assert journal_calls == [
        ("journalctl", "jitsi-videobridge2.service", "jicofo.service", "prosody.service")
    ]

    assert "needs the admin role" in await harness.say("/logs jitsi", OPERATOR)
    assert "N must be at most 2000" in await harness.say("/logs jitsi 5000", ADMIN)
    assert "N must be at least 1" in await harness.say("/logs jitsi 0", ADMIN)


async def test_logs_are_marked_sensitive(harness: Harness) -> None:
    await harness.say("/logs nextcloud", ADMIN)
    assert harness.outbox.messages[-1].reply.sensitive
    rows = await audit_rows(harness)
    assert rows[-1].command == "logs"
    assert rows[-1].result == "ok"


async def test_generations_list_newest_first_and_status_says_when_to_reboot(
    harness: Harness,
) -> None:
    text = await harness.say("/generations", VIEWER)
    lines = text.splitlines()
    assert lines[1].startswith("▶ <b>44</b> <b>current</b>")
    assert "kernel 6.12.44" in lines[1]
    assert lines[2].startswith("· <b>43</b>")
    assert "reboot" not in text
    assert "reboot" not in await harness.say("/status", VIEWER)

    harness.server.nixos.booted_older = True
    assert "🔁 reboot needed" in await harness.say("/status", VIEWER)
    assert "A reboot is needed" in await harness.say("/generations", VIEWER)


async def test_stop_nextcloud_leaves_the_shared_nginx_running(harness: Harness) -> None:
    prompt = await harness.say("/stop nextcloud", OPERATOR)
    assert "left as they are: <code>nginx.service</code>" in prompt
    await harness.press(1, OPERATOR)
    assert "Nextcloud stopped" in harness.outbox.messages[-1].current.text
    units = harness.server.services.units
    assert units["nginx.service"].active_state == "active"
    assert units["phpfpm-nextcloud.service"].active_state == "inactive"
    await harness.say("/restart nextcloud", OPERATOR)
    await harness.press(1, OPERATOR)
    touched = {call[1] for call in harness.server.services.calls}
    assert "nginx.service" not in touched


async def test_a_services_detail_still_shows_its_shared_units(harness: Harness) -> None:
    detail = await harness.say("/service nextcloud", OPERATOR)
    assert "<code>nginx.service</code> active (running)" in detail
    assert detail.index("redis-nextcloud") < detail.index("nginx.service")
    assert "nginx.service</code> active (running), since" in detail
    assert detail.rstrip().count(", shared") == 1
