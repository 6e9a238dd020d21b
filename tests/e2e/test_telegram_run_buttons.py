"""An alert's buttons in a group on Telegram, end to end (`steward run` against the loopback
Bot API): each press is the presser's own command, with their role; the toast comes at once;
the alert keeps its keyboard whatever is pressed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    ALICE,
    GROUP,
    MALLORY,
    OLGA,
    VICTOR,
    Steward,
    button_data,
    wait_answer,
    wait_message,
)
from tests.support.fake_telegram import FakeBotAPI

pytestmark = pytest.mark.timeout(90)
LABELS = ["Snooze 1h", "Mute 24h", "Details"]
REPO = Path(__file__).resolve().parents[2]


class ThisCheckout(Steward):
    """Runs the bot from this checkout even where the venv's editable install points to
    another one (a git worktree sharing the venv)."""

    def base_env(self) -> dict[str, str]:
        return {**super().base_env(), "PYTHONPATH": str(REPO)}


@pytest.fixture
def steward(fake: FakeBotAPI, tmp_path: Path) -> Iterator[Steward]:
    runner = ThisCheckout(fake, tmp_path)
    try:
        yield runner
    finally:
        runner.close()


def test_each_presser_gets_what_their_role_allows_and_the_keyboard_stays(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.send_text(ALICE, "/demo disk 93", GROUP, "supergroup")
    alert = wait_message(fake, GROUP, "Warning")
    assert [b["text"] for b in alert.buttons] == LABELS
    datas = [str(b["callback_data"]) for b in alert.buttons]
    assert all(len(d.encode()) <= 64 for d in datas)

    # A viewer may not snooze: the toast says so, the group hears nothing.
    before = len(fake.messages(GROUP))
    query = fake.press(VICTOR, alert.message_id, button_data(alert, "Snooze 1h"), GROUP)
    assert wait_answer(fake, query).text == "/snooze needs the operator role; you are viewer."

    # ... but may see the details, which answer the alert in the group.
    query = fake.press(VICTOR, alert.message_id, button_data(alert, "Details"), GROUP)
    assert wait_answer(fake, query).text == "OK"
    details = wait_message(fake, GROUP, "Level: ⚠️ warning")
    assert details.reply_to == alert.message_id
    assert len(fake.messages(GROUP)) == before + 1  # the refused snooze said nothing

    # A stranger is turned away by the toast alone.
    query = fake.press(MALLORY, alert.message_id, button_data(alert, "Mute 24h"), GROUP)
    assert wait_answer(fake, query).text == "Not allowed."

    # An operator mutes it for a day.
    query = fake.press(OLGA, alert.message_id, button_data(alert, "Mute 24h"), GROUP)
    assert wait_answer(fake, query).text == "OK"
    muted = wait_message(fake, GROUP, "no messages about it until")
    assert muted.reply_to == alert.message_id
    assert len(fake.messages(GROUP)) == before + 2
    fake.send_text(OLGA, "/alerts", GROUP, "supergroup")
    wait_message(fake, GROUP, "quiet until")

    kept = fake.message(GROUP, alert.message_id)
    assert [b["text"] for b in kept.buttons] == LABELS
    assert kept.edits == []  # never edited by a run-press


def test_a_forged_button_with_bad_arguments_is_refused_by_its_toast(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.send_text(ALICE, "/demo disk 93")
    alert = wait_message(fake, ALICE["id"], "Warning")
    count = len(fake.messages(ALICE["id"]))
    for data in ("run:snooze ../x", "run:details", "run:forget 0123abcd"):
        query = fake.press(ALICE, alert.message_id, data, strict=False)
        assert wait_answer(fake, query).text == "This button is not valid (anymore).", data
    fake.send_text(ALICE, "/ping")
    wait_message(fake, ALICE["id"], "pong")  # the presses before it were all handled
    assert len(fake.messages(ALICE["id"])) == count + 1  # only the pong
    fake.send_text(ALICE, "/audit 5")
    audit = wait_message(fake, ALICE["id"], "Audit log").text or ""
    assert "/press run:snooze ../x → This button is not valid (anymore)." in audit
    assert "/press run:forget 0123abcd" in audit
