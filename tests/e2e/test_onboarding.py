"""A new install on Telegram: `steward run` with no admin warns at start, and the first person
to write gets their numeric id and the exact line that makes them admin."""

from __future__ import annotations

from tests.e2e.harness import MALLORY, Steward, uid, wait_message
from tests.support.fake_telegram import FakeBotAPI


def test_a_first_message_before_any_admin_exists_gets_the_id(
    fake: FakeBotAPI, steward: Steward
) -> None:
    process = steward.start(admins="", operators="", viewers="")
    assert "no admin is set" in process.stderr

    fake.send_text(MALLORY, "hello")
    answer = wait_message(fake, uid(MALLORY), "Your Telegram id").text or ""
    assert f"Your Telegram id is {uid(MALLORY)}" in answer
    assert f'services.steward.settings.admins = [ "{uid(MALLORY)}" ];' in answer
    assert f"STEWARD_ADMINS={uid(MALLORY)}" in answer


def test_with_an_admin_set_the_start_gives_no_warning(fake: FakeBotAPI, steward: Steward) -> None:
    process = steward.start()
    assert "no admin is set" not in process.stderr
