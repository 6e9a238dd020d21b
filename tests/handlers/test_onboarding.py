"""Before any admin is configured, whoever writes learns their id and the line to add; once
one is, strangers get the neutral refusal again. Rate-limited like every stranger's answer."""

from __future__ import annotations

from handlers.core.access import AccessPolicy, StrangerLimiter
from handlers.core.engine import STRANGER_REPLY
from handlers.core.messages import Actor
from handlers.core.spec import Role
from tests.conftest import Harness

OWNER = Actor("telegram", "987654321", "Olivia")
MATRIX_OWNER = Actor("matrix", "@olivia:example.org", "Olivia")


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def without_admins(harness: Harness) -> None:
    harness.engine.access = AccessPolicy.from_lists(operators=["555"], viewers=["556"])


async def test_the_first_message_before_any_admin_gets_the_id_and_the_line_to_add(
    harness: Harness,
) -> None:
    without_admins(harness)
    answer = await harness.say("/start", OWNER)
    assert "Your Telegram id is <code>987654321</code>" in answer
    assert '<code>services.steward.settings.admins = [ "987654321" ];</code>' in answer
    assert "<code>STEWARD_ADMINS=987654321</code>" in answer
    # It runs nothing: the audit says who wrote and why they were answered so.
    rows = await harness.engine.deps.audit.recent(5)
    assert rows[0].result == "stranger, told their id: no admin is configured"


async def test_a_matrix_user_gets_their_matrix_id(harness: Harness) -> None:
    without_admins(harness)
    answer = await harness.say("/help", MATRIX_OWNER)
    assert "Your Matrix id is <code>@olivia:example.org</code>" in answer
    assert '[ "@olivia:example.org" ]' in answer


async def test_the_id_is_told_at_most_once_a_minute(harness: Harness) -> None:
    without_admins(harness)
    ticks = Ticks()
    harness.engine.limiter = StrangerLimiter(clock=ticks)
    assert "987654321" in await harness.say("/start", OWNER)
    ticks.now += 59
    assert await harness.say("/start", OWNER) == ""
    ticks.now += 2
    assert "987654321" in await harness.say("/start", OWNER)


async def test_once_an_admin_is_configured_a_stranger_learns_nothing(harness: Harness) -> None:
    assert harness.engine.access.has_admin
    answer = await harness.say("/start", OWNER)
    assert answer == STRANGER_REPLY
    assert "987654321" not in answer


def test_the_consoles_role_does_not_count_as_an_admin() -> None:
    assert not AccessPolicy.from_lists(console_role=Role.ADMIN).has_admin
    assert AccessPolicy.from_lists(admins=["1"]).has_admin
