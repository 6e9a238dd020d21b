"""A repository that is ready: the first /backup, /backup init and the scheduled run on a server
whose repository does not exist yet, on the demo's in-memory engine (restic's side is in
tests/providers/test_restic.py)."""

from __future__ import annotations

from handlers.backups import scheduled_backup
from handlers.core.context import Context
from handlers.core.messages import Command, Press
from handlers.core.progress import NoProgress
from handlers.core.spec import Role
from providers.backup.base import RetentionPolicy
from tests.conftest import ADMIN, CHAT, OPERATOR, Harness


def empty(harness: Harness) -> None:
    harness.server.backups.initialized = False


async def test_the_first_backup_asks_once_then_creates_the_repository_and_backs_up(
    harness: Harness,
) -> None:
    empty(harness)
    prompt = await harness.say("/backup vaultwarden", OPERATOR)
    assert "There is no backup repository yet, so first: Creates a new, empty" in prompt
    assert "<code>memory:demo</code>" in prompt
    assert not harness.server.backups.initialized  # nothing before Confirm
    await harness.press(1, OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    text = harness.outbox.last.current.text
    assert "The backup repository at <code>memory:demo</code> is ready." in text
    assert "✅ Vaultwarden: snapshot" in text
    assert harness.server.backups.initialized
    assert len(await harness.server.backups.snapshots("vaultwarden")) == 1


async def test_a_cancelled_first_backup_creates_nothing(harness: Harness) -> None:
    empty(harness)
    await harness.say("/backup", OPERATOR)
    await harness.press(2, OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    assert not harness.server.backups.initialized
    assert "init" not in harness.server.backups.calls


async def test_backup_init_needs_an_admin_and_says_when_there_is_nothing_to_do(
    harness: Harness,
) -> None:
    assert "needs the admin role" in await harness.say("/backup init", OPERATOR)
    assert "is ready; there is nothing to create" in await harness.say("/backup init")
    empty(harness)
    prompt = await harness.say("/backup init")
    assert "Creates a new, empty backup repository at <code>memory:demo</code>" in prompt
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    assert harness.server.backups.initialized
    assert "is ready" in harness.outbox.last.current.text


async def test_the_schedule_offers_the_repository_and_one_confirmation_makes_it(
    harness: Harness,
) -> None:
    empty(harness)
    deps, now = harness.engine.deps, harness.clock()
    ctx = Context(Command("backup", (), ADMIN, CHAT, now), Role.ADMIN, deps, NoProgress(), now)
    reply = await scheduled_backup(deps, ctx, RetentionPolicy(keep_last=1))
    assert "The scheduled backup did not run: there is no backup repository at" in reply.text
    assert not reply.silent
    assert not harness.server.backups.initialized
    (button,) = reply.buttons
    toasts: list[str] = []

    async def answer(toast: str) -> None:
        toasts.append(toast)

    await harness.engine.handle_press(Press(button.action, ADMIN, CHAT, now, "m1"), answer)
    assert toasts == ["OK"]
    assert "Creates a new, empty backup repository" in harness.outbox.last.current.text
    assert not harness.server.backups.initialized  # the press asked; Confirm makes it
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    assert harness.server.backups.initialized
    reply = await scheduled_backup(deps, ctx, RetentionPolicy(keep_last=1))
    assert "✅ Nextcloud" in reply.text
