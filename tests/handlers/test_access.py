"""Who may do what: strangers, roles, help per role, and ids bound to their transport."""

from __future__ import annotations

from handlers.core.access import AccessPolicy, StrangerLimiter
from handlers.core.engine import STRANGER_REPLY
from handlers.core.messages import Actor, ChatRef, Command
from handlers.core.records import AuditEvent, ConfirmationState
from handlers.core.spec import Role
from tests.conftest import ADMIN, ADMIN2, OPERATOR, STRANGER, VIEWER, Harness
from tests.support.engine_probe import (
    audit_rows,
    confirmation_count,
    confirmation_of,
    prompts,
    restarts,
)

MATRIX_ROOM = ChatRef("matrix", "!ops:example.org")
CONSOLE = ChatRef("console", "local")


class Ticks:
    """A monotonic clock in seconds that the test moves by hand."""

    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


def listed(help_text: str, name: str) -> bool:
    return f"<code>/{name}</code>" in help_text or f"<code>/{name} " in help_text


# -- strangers ---------------------------------------------------------------------------


async def test_a_stranger_gets_one_neutral_refusal_a_minute(harness: Harness) -> None:
    ticks = Ticks()
    harness.engine.limiter = StrangerLimiter(clock=ticks)

    assert await harness.say("/status", STRANGER) == STRANGER_REPLY
    ticks.now += 30
    assert await harness.say("/restart nextcloud", STRANGER) == ""
    ticks.now += 29.9
    assert await harness.say("/help", STRANGER) == ""
    ticks.now += 0.2  # a minute after the first answer
    assert await harness.say("/status", STRANGER) == STRANGER_REPLY

    assert harness.outbox.texts() == [STRANGER_REPLY, STRANGER_REPLY]
    rows = await audit_rows(harness)
    assert [row.event for row in rows] == [AuditEvent.REFUSED] * 4
    assert {row.actor for row in rows} == {STRANGER}
    assert [row.result for row in rows] == [
        "stranger",
        "stranger (not answered: rate limit)",
        "stranger (not answered: rate limit)",
        "stranger",
    ]
    assert [row.command for row in rows] == ["status", "restart", "help", "status"]


async def test_the_stranger_refusal_names_no_command_role_or_admin(harness: Harness) -> None:
    answer = await harness.say("/restart nextcloud", STRANGER)

    assert answer == STRANGER_REPLY
    for leak in ("/", "role", "admin", "operator", "nextcloud", "Alice"):
        assert leak not in answer


async def test_the_rate_limit_of_one_stranger_does_not_silence_another(harness: Harness) -> None:
    ticks = Ticks()
    harness.engine.limiter = StrangerLimiter(clock=ticks)
    other = Actor("telegram", "6667", "Trudy")

    assert await harness.say("/status", STRANGER) == STRANGER_REPLY
    ticks.now += 1
    assert await harness.say("/status", other) == STRANGER_REPLY
    assert await harness.say("/status", STRANGER) == ""


async def test_a_stranger_runs_no_handler(harness: Harness) -> None:
    await harness.say("/restart nextcloud", STRANGER)
    await harness.say("/services", STRANGER)
    await harness.say("/status", STRANGER)

    assert harness.server.services.calls == []
    assert confirmation_count(harness) == 0
    assert prompts(harness) == []
    assert [row.event for row in await audit_rows(harness)] == [AuditEvent.REFUSED] * 3


async def test_an_unknown_command_from_a_stranger_gets_only_the_neutral_refusal(
    harness: Harness,
) -> None:
    assert await harness.say("/frobnicate", STRANGER) == STRANGER_REPLY


async def test_a_stranger_cannot_confirm_or_cancel_an_admins_restart(harness: Harness) -> None:
    await harness.say("/restart nextcloud", ADMIN)
    prompt = harness.last_prompt()

    assert await harness.press(1, STRANGER) == STRANGER_REPLY
    assert await harness.press(2, STRANGER) == STRANGER_REPLY

    assert harness.server.services.calls == []
    assert prompt.edits == []
    assert (await confirmation_of(harness, prompt)).state is ConfirmationState.PENDING
    refused = [row for row in await audit_rows(harness) if row.event is AuditEvent.REFUSED]
    assert [(row.actor, row.result) for row in refused] == [(STRANGER, "stranger")] * 2
    # The request is untouched: its owner can still confirm it.
    assert await harness.press(1, ADMIN) == "Confirmed."
    assert sum(restarts(harness).values()) == 2  # its own two units; nginx is shared


# -- roles -------------------------------------------------------------------------------


async def test_a_viewer_cannot_restart_and_is_told_the_role_it_needs(harness: Harness) -> None:
    answer = await harness.say("/restart nextcloud", VIEWER)

    assert answer == "/restart needs the operator role; you are viewer."
    assert harness.server.services.calls == []
    assert confirmation_count(harness) == 0
    assert prompts(harness) == []
    (row,) = await audit_rows(harness)
    assert row.event is AuditEvent.REFUSED
    assert row.actor == VIEWER
    assert row.args == ("nextcloud",)
    assert "needs the operator role" in row.result


async def test_a_viewers_help_lists_only_what_a_viewer_may_run(harness: Harness) -> None:
    text = await harness.say("/help", VIEWER)

    registry = harness.engine.deps.registry
    for entry in registry:
        assert listed(text, entry.spec.name) == (entry.spec.role is Role.VIEWER), entry.spec.name
    assert listed(text, "status")
    assert not listed(text, "restart")
    assert not listed(text, "audit")


async def test_a_viewer_asking_help_for_restart_is_told_it_is_unknown(harness: Harness) -> None:
    answer = await harness.say("/help restart", VIEWER)

    assert answer == "Unknown command /restart, see /help."


async def test_an_admins_help_lists_audit_and_restart(harness: Harness) -> None:
    text = await harness.say("/help", ADMIN)

    assert listed(text, "audit")
    assert listed(text, "restart")
    for entry in harness.engine.deps.registry:
        # Internal commands (the Keep offer) are never in help: nobody can send them.
        assert listed(text, entry.spec.name) != entry.spec.internal, entry.spec.name


async def test_an_operators_help_lists_restart_but_not_audit(harness: Harness) -> None:
    text = await harness.say("/help", OPERATOR)

    assert listed(text, "restart")
    assert not listed(text, "audit")


async def test_an_operator_can_restart_but_cannot_read_the_audit_log(harness: Harness) -> None:
    prompt = await harness.say("/restart forgejo", OPERATOR)
    assert "Confirm" in prompt
    assert await harness.press(1, OPERATOR) == "Confirmed."
    assert restarts(harness) == {"forgejo.service": 1}

    answer = await harness.say("/audit", OPERATOR)

    assert answer == "/audit needs the admin role; you are operator."
    assert "Audit log" not in harness.outbox.texts()[-1]


async def test_an_operator_cannot_confirm_an_admins_request(harness: Harness) -> None:
    await harness.say("/restart forgejo", ADMIN2)

    assert await harness.press(1, OPERATOR) == "Only Bob can confirm this."
    assert harness.server.services.calls == []


# -- ids bind to their transport ---------------------------------------------------------


async def test_a_matrix_user_with_an_admins_telegram_id_gets_no_role(harness: Harness) -> None:
    twin = Actor("matrix", ADMIN.user_id, ADMIN.display_name)
    cmd = Command("restart", ("nextcloud",), twin, MATRIX_ROOM, harness.clock(), "$event")

    await harness.engine.handle_command(cmd)

    assert harness.engine.access.role_of(twin) is None
    assert harness.outbox.texts() == [STRANGER_REPLY]
    assert confirmation_count(harness) == 0
    assert harness.server.services.calls == []


def test_telegram_and_matrix_ids_each_bind_to_their_own_transport() -> None:
    policy = AccessPolicy.from_lists(admins=["1001", "@alice:example.org"], viewers=["3001"])

    assert policy.role_of(Actor("telegram", "1001")) is Role.ADMIN
    assert policy.role_of(Actor("matrix", "@alice:example.org")) is Role.ADMIN
    assert policy.role_of(Actor("matrix", "1001")) is None
    assert policy.role_of(Actor("telegram", "@alice:example.org")) is None
    assert policy.role_of(Actor("matrix", "3001")) is None


def test_a_display_name_never_gives_a_role() -> None:
    policy = AccessPolicy.from_lists(admins=["1001"])

    assert policy.role_of(Actor("telegram", "7777", "1001")) is None
    assert policy.role_of(Actor("telegram", "7777", "Alice")) is None


def test_someone_listed_twice_keeps_the_higher_role() -> None:
    policy = AccessPolicy.from_lists(admins=["1001"], operators=["1001"], viewers=["1001"])

    assert policy.role_of(Actor("telegram", "1001")) is Role.ADMIN


# -- the console -------------------------------------------------------------------------


async def test_the_console_has_the_configured_console_role(harness: Harness) -> None:
    local = Actor("console", "local", "root")
    await harness.engine.handle_command(
        Command("whoami", (), local, CONSOLE, harness.clock(), None)
    )

    assert "role <b>admin</b>" in harness.outbox.last.current.text


async def test_a_viewer_console_cannot_restart(harness: Harness) -> None:
    harness.engine.access = AccessPolicy.from_lists(
        admins=[ADMIN.user_id], console_role=Role.VIEWER
    )
    local = Actor("console", "local", "root")

    await harness.engine.handle_command(
        Command("restart", ("nextcloud",), local, CONSOLE, harness.clock(), None)
    )

    assert harness.outbox.texts() == ["/restart needs the operator role; you are viewer."]
    assert confirmation_count(harness) == 0


async def test_without_a_console_role_the_console_is_a_stranger(harness: Harness) -> None:
    harness.engine.access = AccessPolicy.from_lists(admins=[ADMIN.user_id])
    local = Actor("console", "local", "root")

    await harness.engine.handle_command(
        Command("services", (), local, CONSOLE, harness.clock(), None)
    )

    assert harness.outbox.texts() == [STRANGER_REPLY]
    assert harness.server.services.calls == []


def test_a_telegram_actor_never_gets_the_console_role() -> None:
    policy = AccessPolicy.from_lists(console_role=Role.ADMIN)

    assert policy.role_of(Actor("telegram", "local")) is None
    assert policy.role_of(Actor("console", "local")) is Role.ADMIN


def test_members_lists_one_transports_ids_with_their_roles() -> None:
    policy = AccessPolicy.from_lists(
        admins=["1001", "@alice:example.org"], operators=["2001"], viewers=["1001"]
    )

    assert policy.members("telegram") == [("1001", Role.ADMIN), ("2001", Role.OPERATOR)]
    assert policy.members("matrix") == [("@alice:example.org", Role.ADMIN)]
    assert policy.members("console") == []
