"""What the audit log keeps when the bot dies, with `steward run` against the fake Bot API.

The promise (bot/storage/stores.py, SqlAuditLog): a command's row is queued before its reply
leaves and committed before the next message of the same chat is handled; a clean stop writes
every queued row. So a SIGKILL right after a burst may lose, in each chat, only the row of the
last command, whose commit may still be in flight; a SIGTERM loses none.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.harness import Steward
from tests.support.fake_telegram import FakeBotAPI

pytestmark = pytest.mark.timeout(90)

CHATS, EACH = 10, 20
FIRST = 700_000


def burst(fake: FakeBotAPI) -> None:
    """CHATS x EACH /ping, all queued at once, then every reply received."""
    before = len(fake.calls_to("sendMessage"))
    for index in range(CHATS * EACH):
        user = FIRST + index % CHATS
        fake.send_text(fake.user(user, "Reader"), "/ping")

    def answered(api: FakeBotAPI) -> bool:
        calls = api.calls_to("sendMessage")[before:]
        return sum(1 for call in calls if call.status == 200) >= CHATS * EACH

    fake.wait_for(answered, timeout=60, interval=0.005)


def pings_by_chat(steward: Steward) -> Counter[str]:
    rows = steward.query("SELECT actor_id FROM audit_log WHERE command = 'ping'")
    return Counter(str(actor) for (actor,) in rows)


def viewers() -> str:
    return ",".join(str(FIRST + index) for index in range(CHATS))


def test_a_bot_killed_right_after_a_burst_keeps_every_row_but_each_chats_last(
    fake: FakeBotAPI, steward: Steward
) -> None:
    process = steward.start(viewers=viewers())
    burst(fake)
    steward.kill(process)

    kept = pings_by_chat(steward)
    assert set(kept) == {str(FIRST + index) for index in range(CHATS)}
    assert all(EACH - 1 <= count <= EACH for count in kept.values()), kept
    assert sum(kept.values()) >= CHATS * (EACH - 1)


def test_a_clean_stop_right_after_a_burst_keeps_every_row(
    fake: FakeBotAPI, steward: Steward
) -> None:
    process = steward.start(viewers=viewers())
    burst(fake)
    assert steward.stop(process) == 0

    kept = pings_by_chat(steward)
    assert kept == {str(FIRST + index): EACH for index in range(CHATS)}


def test_a_lone_commands_row_commits_while_telegram_answers_its_reply(
    fake: FakeBotAPI, steward: Steward
) -> None:
    # The reply's request is written, and Telegram takes five seconds to answer it: the row
    # is committed in that wait (bot/wire.py), not after the answer, so the chat's next
    # message does not wait for the commit. (Five, not two: a slow CI machine must not see
    # the answer first and fail the test for the wrong reason.)
    steward.start(viewers=viewers())
    fake.delay("sendMessage", 5.0)
    fake.send_text(fake.user(FIRST, "Reader"), "/ping")
    fake.wait_for(lambda _: pings_by_chat(steward)[str(FIRST)] == 1, timeout=4.0)
    assert fake.calls_to("sendMessage") == []  # Telegram has not answered yet
    fake.wait_for(lambda f: f.calls_to("sendMessage"), timeout=10)
    assert pings_by_chat(steward) == {str(FIRST): 1}
