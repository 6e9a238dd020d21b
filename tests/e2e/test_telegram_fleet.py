"""Several servers in one Telegram group: three `steward run` processes, one bot each.

Each bot sees Telegram through its own fake Bot API (its own token, updates and messages),
which is what the real Telegram gives it: a person's message in the group reaches every bot
that has privacy mode off or is an admin, while "bots will not be able to see messages from
other bots regardless of mode" (Bot FAQ). A test that sends a person's group message to all
three fakes is the group; nothing one bot sends ever reaches another. A button press reaches
only the bot whose message carries the button (callback queries go to the message's sender).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ALICE, GROUP, Steward, uid, wait_message, wait_prompt
from tests.support.fake_telegram import JSON, FakeBotAPI

NAMES = ("alpha", "bravo", "charlie")
TOKENS = {
    "alpha": "7312045101:AAHx9fE2e-TestOnly_Q3zLmNp7rStUvWxYzA",
    "bravo": "7312045102:AAHx9fE2e-TestOnly_Q3zLmNp7rStUvWxYzB",
    "charlie": "7312045103:AAHx9fE2e-TestOnly_Q3zLmNp7rStUvWxYzC",
}


class Group:
    """One supergroup with three Stewards in it, each bot with its own view."""

    def __init__(self, root: Path) -> None:
        self.fakes = {
            name: FakeBotAPI(TOKENS[name], username=f"{name}_steward_bot").start() for name in NAMES
        }
        self.bots = {name: Steward(self.fakes[name], root / name) for name in NAMES}

    def start(self) -> None:
        for name, steward in self.bots.items():
            steward.start(name=name)

    def say(self, user: JSON, text: str) -> None:
        """A person writes in the group: every bot there gets the message."""
        for fake in self.fakes.values():
            fake.send_text(user, text, GROUP, "supergroup", title="Servers")

    def answered(self, name: str) -> list[str]:
        return self.fakes[name].texts(GROUP)

    def close(self) -> None:
        try:
            for steward in self.bots.values():
                steward.close()
        finally:
            for fake in self.fakes.values():
                fake.stop()


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    made = Group(tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_a_bare_status_in_the_group_is_answered_by_each_steward(group: Group) -> None:
    group.start()

    group.say(ALICE, "/status")

    for name in NAMES:
        answer = wait_message(group.fakes[name], GROUP, "up ")
        assert "load" in (answer.text or "")


def test_a_command_for_one_bot_is_answered_by_that_bot_alone(group: Group) -> None:
    group.start()

    group.say(ALICE, "/status@bravo_steward_bot")
    group.say(ALICE, "/restart nextcloud @charlie")
    group.say(ALICE, "/ping")  # all three answer it: the others had their turn to speak

    for name in NAMES:
        wait_message(group.fakes[name], GROUP, "ong")
    assert any("up " in text for text in group.answered("bravo"))
    assert wait_prompt(group.fakes["charlie"], GROUP).buttons
    assert len(group.answered("alpha")) == 1  # only its /ping answer
    assert not any("up " in text for text in group.answered("charlie"))
    assert not any("Confirm" in text for text in group.answered("bravo"))
    assert group.bots["alpha"].count("confirmations") == 0
    assert group.bots["bravo"].count("confirmations") == 0


def test_each_bots_command_menu_names_its_server(group: Group) -> None:
    group.start()
    scope = {"type": "chat", "chat_id": uid(ALICE)}

    for name, fake in group.fakes.items():
        fake.wait_for(lambda f: f.commands(scope))
        descriptions = [entry["description"] for entry in fake.commands(scope)]
        assert descriptions
        assert all(d.startswith(f"{name} · ") for d in descriptions)
