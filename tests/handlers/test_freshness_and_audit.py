"""Stale commands, the audit log, and clear short answers when something goes wrong."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from handlers.core.context import Context
from handlers.core.messages import Actor, Reply
from handlers.core.records import AuditEvent
from handlers.core.registry import Registry
from handlers.core.spec import Role
from tests.conftest import ADMIN, ADMIN2, CHAT, OPERATOR, STRANGER, VIEWER, Harness
from tests.support.engine_probe import (
    audit_events,
    audit_rows,
    confirmation_count,
    engine_with,
    prompts,
    restarts,
)

INCIDENT = re.compile(
    r"^Something went wrong \(incident <code>([0-9a-f]{8})</code>\)\. It is logged\.$"
)
SECRET = "password=hunter2"


def assert_short_and_clean(answer: str) -> None:
    assert answer
    assert len(answer) < 300
    assert "\n" not in answer
    for noise in ("Traceback", 'File "', "Error(", "Exception"):
        assert noise not in answer


# -- freshness ---------------------------------------------------------------------------


async def test_a_stale_restart_is_refused_with_the_reason(harness: Harness) -> None:
    answer = await harness.say("/restart nextcloud", OPERATOR, age=timedelta(minutes=6))

    assert "/restart was sent 6 min ago" in answer
    assert "expire after 5 min" in answer
    assert "send it again" in answer
    assert confirmation_count(harness) == 0
    assert prompts(harness) == []
    assert harness.server.services.calls == []
    (row,) = await audit_rows(harness)
    assert row.event is AuditEvent.REFUSED
    assert "6 min ago" in row.result


async def test_a_restart_within_its_window_is_still_asked(harness: Harness) -> None:
    answer = await harness.say("/restart nextcloud", OPERATOR, age=timedelta(minutes=4))

    assert "Confirm" in answer
    assert confirmation_count(harness) == 1


async def test_a_stale_read_only_command_is_still_answered(harness: Harness) -> None:
    answer = await harness.say("/status", VIEWER, age=timedelta(minutes=6))

    assert answer.startswith("<b>demo</b> up 12 d 3 h")
    assert [row.event for row in await audit_rows(harness)] == [AuditEvent.OUTCOME]


# -- /audit ------------------------------------------------------------------------------


async def test_audit_is_for_admins_only(harness: Harness) -> None:
    assert await harness.say("/audit", VIEWER) == "/audit needs the admin role; you are viewer."
    assert await harness.say("/audit", OPERATOR) == (
        "/audit needs the admin role; you are operator."
    )
    assert await harness.say("/audit", STRANGER) == "Sorry, this is a private bot."
    assert "Audit log" in await harness.say("/audit", ADMIN)


async def test_audit_3_shows_the_three_newest_rows(harness: Harness) -> None:
    for text in ("/status", "/services", "/whoami", "/ping"):
        await harness.say(text, VIEWER)

    answer = await harness.say("/audit 3", ADMIN)

    head, *lines = answer.split("\n")
    assert head == "<b>Audit log</b> (newest last, 3 rows)"
    assert len(lines) == 3
    assert ["/services" in lines[0], "/whoami" in lines[1], "/ping" in lines[2]] == [True] * 3
    assert "/status" not in answer


async def test_audit_with_a_bad_count_gets_the_usage(harness: Harness) -> None:
    for bad in ("0", "abc", "101", "-3"):
        answer = await harness.say(f"/audit {bad}", ADMIN)
        assert answer.endswith("\nUsage: <code>/audit [N]</code>"), bad
        assert answer.count("Usage") == 1, bad
        assert "Audit log" not in answer
    assert "at least 1" in await harness.say("/audit 0", ADMIN)
    assert "Not a whole number" in await harness.say("/audit abc", ADMIN)


async def test_the_empty_audit_log_says_so(harness: Harness) -> None:
    assert await harness.say("/audit", ADMIN) == "The audit log is empty."


async def test_audit_lines_escape_what_users_typed(harness: Harness) -> None:
    await harness.say("/status", Actor("telegram", "6667", "<b>Eve</b>"))

    answer = await harness.say("/audit 1", ADMIN)

    assert "&lt;b&gt;Eve&lt;/b&gt;" in answer
    assert "<b>Eve</b>" not in answer


async def test_every_step_of_a_command_leaves_an_audit_row(harness: Harness) -> None:
    await harness.say("/status", VIEWER)  # a read-only command and its outcome
    await harness.say("/restart forgejo", VIEWER)  # a refusal
    await harness.say("/restart forgejo", OPERATOR)  # confirm_requested
    await harness.press(1, OPERATOR)  # confirmed, then the outcome
    await harness.say("/restart nextcloud", OPERATOR)  # confirm_requested
    await harness.press(2, ADMIN2)  # cancelled by an admin

    rows = await audit_rows(harness)
    assert [row.event for row in rows] == [
        AuditEvent.OUTCOME,
        AuditEvent.REFUSED,
        AuditEvent.CONFIRM_REQUESTED,
        AuditEvent.CONFIRMED,
        AuditEvent.OUTCOME,
        AuditEvent.CONFIRM_REQUESTED,
        AuditEvent.CANCELLED,
    ]
    status, refused, asked, confirmed, outcome, _, cancelled = rows
    assert (status.actor, status.command, status.result) == (VIEWER, "status", "ok")
    assert status.duration_ms is not None
    assert status.chat == CHAT
    assert (refused.actor, refused.args) == (VIEWER, ("forgejo",))
    assert "needs the operator role" in refused.result
    assert (asked.actor, asked.command, asked.args) == (OPERATOR, "restart", ("forgejo",))
    assert (confirmed.actor, confirmed.approver) == (OPERATOR, OPERATOR)
    assert (outcome.command, outcome.args, outcome.result) == ("restart", ("forgejo",), "succeeded")
    assert outcome.duration_ms is not None
    assert outcome.duration_ms >= 0
    assert (cancelled.actor, cancelled.approver, cancelled.args) == (
        OPERATOR,
        ADMIN2,
        ("nextcloud",),
    )

    shown = await harness.say("/audit 20", ADMIN)
    assert "confirmed telegram:Olga /restart forgejo by Olga" in shown
    assert "cancelled telegram:Olga /restart nextcloud by Bob" in shown
    assert "→ succeeded (" in shown


# -- clear answers -----------------------------------------------------------------------


async def test_an_unknown_command_points_to_help(harness: Harness) -> None:
    answer = await harness.say("/frobnicate now", ADMIN)

    assert answer == "Unknown command /frobnicate, see /help."
    (row,) = await audit_rows(harness)
    assert (row.event, row.command) == (AuditEvent.REFUSED, "frobnicate")


async def test_wrong_arguments_get_the_usage(harness: Harness) -> None:
    usage = "Usage: <code>/restart &lt;service&gt;</code>"

    missing = await harness.say("/restart", OPERATOR)
    too_many = await harness.say("/restart nextcloud forgejo", OPERATOR)
    malformed = await harness.say("/restart ../etc", OPERATOR)

    for answer in (missing, too_many, malformed):
        assert answer.endswith("\n" + usage)
        assert answer.lower().count("usage") == 1
    assert "Missing &lt;service&gt;" in missing
    assert "Too many arguments" in too_many
    assert "Not a valid service" in malformed
    assert confirmation_count(harness) == 0
    assert harness.server.services.calls == []


async def test_an_unknown_service_gets_the_list_of_known_services(harness: Harness) -> None:
    answer = await harness.say("/restart nosuch", OPERATOR)

    assert answer.startswith("❌ Unknown service nosuch. Known services: ")
    for sid in harness.server.catalogue:
        assert sid in answer
    assert confirmation_count(harness) == 0
    assert harness.server.services.calls == []
    assert await audit_events(harness) == [AuditEvent.REFUSED]


async def test_systemd_down_gives_a_short_answer_to_services(harness: Harness) -> None:
    harness.server.services.down = True

    answer = await harness.say("/services", VIEWER)

    assert (
        answer == "❌ systemd did not answer: Failed to connect to bus: No such file or directory"
    )
    (row,) = await audit_rows(harness)
    assert (row.event, row.result) == (AuditEvent.OUTCOME, f"failed: {answer[2:]}")


async def test_systemd_down_during_a_confirmed_restart_gives_a_short_answer(
    harness: Harness,
) -> None:
    await harness.say("/restart forgejo", OPERATOR)
    harness.server.services.down = True

    assert await harness.press(1, OPERATOR) == "Confirmed."

    answer = harness.outbox.last.current.text
    assert answer.startswith("❌ Restarting <code>forgejo.service</code> failed: ")
    assert "Failed to connect to bus" in answer
    assert_short_and_clean(answer)
    outcome = (await audit_rows(harness))[-1]
    assert outcome.event is AuditEvent.OUTCOME
    assert outcome.result.startswith("failed: ")


async def test_a_failing_unit_restart_says_which_unit(harness: Harness) -> None:
    harness.server.services.fail_restart.add("phpfpm-nextcloud.service")
    await harness.say("/restart nextcloud", OPERATOR)

    await harness.press(1, OPERATOR)

    answer = harness.outbox.last.current.text
    assert answer.startswith("❌ Restarting <code>phpfpm-nextcloud.service</code> failed: ")
    assert "redis-nextcloud.service" not in restarts(harness)  # it stops at the failure


async def test_the_host_down_gives_a_short_answer_to_status(harness: Harness) -> None:
    harness.server.host.down = True

    answer = await harness.say("/status", VIEWER)

    assert answer == "❌ Cannot read the host metrics: host metrics are unavailable"


async def test_status_still_answers_when_only_systemd_is_down(harness: Harness) -> None:
    harness.server.services.down = True

    answer = await harness.say("/status", VIEWER)

    assert "<b>demo</b> up" in answer
    assert "failed units: unknown (systemd did not answer)" in answer


async def test_everything_down_gives_short_answers_not_incidents(harness: Harness) -> None:
    harness.server.services.down = True
    harness.server.host.down = True

    for text in ("/status", "/services", "/ping"):
        answer = await harness.say(text, VIEWER)
        assert_short_and_clean(answer)
        assert "incident" not in answer, text
    assert AuditEvent.ERROR not in await audit_events(harness)


# -- bugs become incidents ---------------------------------------------------------------


def broken_commands() -> Registry:
    registry = Registry()

    @registry.command("boom", "Always fails")
    async def boom(ctx: Context) -> Reply:
        raise RuntimeError(f"internal detail {SECRET}")

    @registry.command("explode", "Fails after confirming", role=Role.OPERATOR, changes=True)
    async def explode(ctx: Context) -> Reply:
        raise KeyError(SECRET)

    @explode.preview
    async def _explode_preview(ctx: Context) -> str:
        return "Nothing, really."

    return registry


async def test_a_handler_bug_becomes_an_incident_with_an_id(harness: Harness) -> None:
    incidents: list[tuple[str, str]] = []

    async def report(incident: str, summary: str) -> None:
        incidents.append((incident, summary))

    harness.engine = engine_with(harness, broken_commands(), on_incident=report)

    answer = await harness.say("/boom", VIEWER)

    match = INCIDENT.match(answer)
    assert match is not None, answer
    assert SECRET not in answer
    assert "RuntimeError" not in answer
    assert incidents == [(match.group(1), "/boom failed: RuntimeError")]
    (row,) = await audit_rows(harness)
    assert (row.event, row.command, row.result) == (AuditEvent.ERROR, "boom", "RuntimeError")


async def test_a_bug_in_a_confirmed_action_becomes_an_incident(harness: Harness) -> None:
    harness.engine = engine_with(harness, broken_commands())
    await harness.say("/explode", OPERATOR)

    assert await harness.press(1, OPERATOR) == "Confirmed."

    answer = harness.outbox.last.current.text
    assert INCIDENT.match(answer) is not None, answer
    assert SECRET not in answer
    last = (await audit_rows(harness))[-1]
    assert (last.event, last.command) == (AuditEvent.ERROR, "explode")
    assert last.duration_ms is not None


async def test_ping_says_when_the_host_probe_fails(harness: Harness) -> None:
    harness.server.host.down = True

    answer = await harness.say("/ping", VIEWER)

    assert answer == (
        "pong — message lag 0.0 s, but the host probe failed: host metrics are unavailable"
    )


async def test_a_reply_that_cannot_be_delivered_is_still_audited(harness: Harness) -> None:
    harness.outbox.fail_sends = 1

    with pytest.raises(ConnectionError):
        await harness.engine.handle_command(harness.command("/whoami", ADMIN))

    # The command ran (its row), then its answer was lost (a second row).
    ran, lost = await audit_rows(harness)
    assert (ran.command, ran.event, ran.result) == ("whoami", AuditEvent.OUTCOME, "ok")
    assert (lost.command, lost.event) == ("whoami", AuditEvent.ERROR)
    assert lost.result == "reply not delivered: ConnectionError"
