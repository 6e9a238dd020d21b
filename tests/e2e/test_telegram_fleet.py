"""Several servers in one Telegram group: three `steward run` processes, one bot each.

Each bot talks to its own fake Bot API; a ``FakeGroup`` joins them in one supergroup and
delivers what people and bots post there as Telegram documents it (see fake_group.py): with
Bot-to-Bot Communication Mode on and the bots admins of the group, each Steward receives the
others' messages; without the mode, none. A button press reaches only the bot whose message
carries the button (callback queries go to the message's sender).
"""

from __future__ import annotations

import itertools
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ALICE, GROUP, Steward, button_data, uid, wait_message, wait_prompt
from tests.support.fake_group import FakeGroup
from tests.support.fake_telegram import JSON, FakeBotAPI

NAMES = ("alpha", "bravo", "charlie")
TOKENS = {
    "alpha": "7312045101:AAHx9fE2e-TestOnly_Q3zLmNp7rStUvWxYzA",
    "bravo": "7312045102:AAHx9fE2e-TestOnly_Q3zLmNp7rStUvWxYzB",
    "charlie": "7312045103:AAHx9fE2e-TestOnly_Q3zLmNp7rStUvWxYzC",
}
BEAT = "3"  # seconds: a Steward silent for longer is overdue
WAIT = 20.0


class FleetSteward(Steward):
    def secrets(self) -> dict[str, str]:
        return {"bot token": self.fake.token.partition(":")[2]}


class Fleet:
    """One supergroup with three Stewards in it, each bot with its own view."""

    def __init__(self, root: Path, *, bot_to_bot: bool) -> None:
        self.group = FakeGroup(GROUP)
        self.fakes = {
            name: FakeBotAPI(
                TOKENS[name], username=f"{name}_steward_bot", bot_to_bot=bot_to_bot
            ).start()
            for name in NAMES
        }
        for fake in self.fakes.values():
            self.group.add(fake, admin=True)
        self.bots = {name: FleetSteward(self.fakes[name], root / name) for name in NAMES}

    def start(self, watch: dict[str, str] | None = None) -> None:
        """Started in reverse name order, so that name order is not the order they came in.
        ``watch``: which Steward watches which."""
        for name in reversed(NAMES):
            settings = {"name": name, "fleet_heartbeat_seconds": BEAT}
            if watch and name in watch:
                settings["watch"] = watch[name]
            self.bots[name].start(extra={f"STEWARD_{k.upper()}": v for k, v in settings.items()})

    def meet(self) -> None:
        """A first word in the group: each Steward says hello, and they learn of each other."""
        self.group.say(ALICE, "Good morning, servers")

        def met(_fake: FakeBotAPI) -> bool:
            seen = {(a, b) for a, b, m in self.group.delivered() if m["text"].startswith("💓")}
            bots = [f"{name}_steward_bot" for name in NAMES]
            return all((a, b) in seen for a, b in itertools.permutations(bots, 2))

        self.fakes["alpha"].wait_for(met, timeout=WAIT)

    def answers(self, asked: JSON) -> list[JSON]:
        """The group's replies to a message, in the order they were posted."""
        return [
            m
            for m in self.group.history()
            if m.get("reply_to_message", {}).get("message_id") == asked["message_id"]
        ]

    def sender(self, message: JSON) -> str:
        return str(message["from"]["username"]).removesuffix("_steward_bot")

    def texts(self, name: str) -> list[str]:
        return self.fakes[name].texts(GROUP)

    def close(self) -> None:
        try:
            for steward in self.bots.values():
                steward.close()
        finally:
            for fake in self.fakes.values():
                fake.stop()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    made = Fleet(tmp_path, bot_to_bot=True)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def strangers(tmp_path: Path) -> Iterator[Fleet]:
    """The same three bots with Bot-to-Bot Communication Mode off, as @BotFather sets them."""
    made = Fleet(tmp_path, bot_to_bot=False)
    try:
        yield made
    finally:
        made.close()


def with_replies(fleet: Fleet, asked: JSON, count: int) -> list[JSON]:
    found = fleet.fakes["alpha"].wait_for(
        lambda _f: a if len(a := fleet.answers(asked)) >= count else None, timeout=WAIT
    )
    assert found is not None
    return found


def test_a_bare_status_is_answered_by_each_steward_in_name_order(fleet: Fleet) -> None:
    fleet.start()
    fleet.meet()

    asked = fleet.group.say(ALICE, "/status")
    table = with_replies(fleet, asked, 3)

    assert [fleet.sender(m) for m in table] == list(NAMES)
    for name, line in zip(NAMES, table, strict=True):
        assert "\n" not in line["text"].strip()  # one line each: the group reads as one table
        assert f"{name} up " in line["text"]
        assert "failed units" in line["text"]


def test_a_command_for_one_bot_is_answered_by_that_bot_alone(fleet: Fleet) -> None:
    fleet.start()
    fleet.meet()

    fleet.group.say(ALICE, "/status@bravo_steward_bot")
    restart = fleet.group.say(ALICE, "/restart nextcloud @charlie")
    ping = fleet.group.say(ALICE, "/ping")  # all three answer it: the others had their turn

    assert [fleet.sender(m) for m in with_replies(fleet, ping, 3)] == list(NAMES)
    assert any("up " in text for text in fleet.texts("bravo"))
    assert [fleet.sender(m) for m in fleet.answers(restart)] == ["charlie"]
    assert wait_prompt(fleet.fakes["charlie"], GROUP).buttons
    assert not any("up " in text for text in fleet.texts("alpha") + fleet.texts("charlie"))
    assert not any("Confirm" in text for text in fleet.texts("alpha") + fleet.texts("bravo"))
    assert fleet.bots["alpha"].count("confirmations") == 0
    assert fleet.bots["bravo"].count("confirmations") == 0


def test_a_bots_command_is_only_observed_never_run(fleet: Fleet) -> None:
    """Another bot in the group (Bot-to-Bot mode on) sends a Steward a command: nothing runs,
    nothing answers; Stewards never obey bots, so two of them can never loop."""
    intruder = FakeBotAPI("7312045199:AAHx9fE2e-TestOnly_Q3zLmNp7rStUvWxYzZ", username="other_bot",
                          bot_to_bot=True).start()  # fmt: skip
    try:
        fleet.group.add(intruder, admin=True)
        fleet.start()
        fleet.meet()

        post(intruder, "/restart nextcloud@alpha_steward_bot")
        post(intruder, "/status@alpha_steward_bot")
        asked = fleet.group.say(ALICE, "/ping@alpha_steward_bot")  # after the bot's two
        (pong,) = with_replies(fleet, asked, 1)

        assert fleet.sender(pong) == "alpha"
        delivered = [m["text"] for a, b, m in fleet.group.delivered() if a == "other_bot"]
        assert delivered.count("/status@alpha_steward_bot") == 3  # all three saw it
        assert not any("up " in t or "Confirm" in t for t in fleet.texts("alpha"))
        alpha = fleet.bots["alpha"]
        assert alpha.count("audit_log", "actor_id = ?", (str(intruder.bot_id),)) == 0
        assert alpha.count("confirmations") == 0
    finally:
        intruder.stop()


def test_a_confirmation_on_another_bots_prompt_runs_nothing_here(fleet: Fleet) -> None:
    fleet.start()
    fleet.meet()
    fleet.group.say(ALICE, "/restart nextcloud @bravo")
    fleet.group.say(ALICE, "/restart nextcloud @charlie")
    bravo_prompt = wait_prompt(fleet.fakes["bravo"], GROUP)
    charlie_prompt = wait_prompt(fleet.fakes["charlie"], GROUP)

    # Bravo's Confirm reaches charlie (on charlie's own prompt), and a code in reply to bravo's
    # prompt reaches all three: only bravo holds that prompt.
    fleet.fakes["charlie"].press(
        ALICE, charlie_prompt.message_id, button_data(bravo_prompt, "Confirm"), GROUP, strict=False
    )
    fleet.group.say(ALICE, "123 456", reply_to=bravo_prompt.message_id)
    fleet.fakes["bravo"].press(
        ALICE, bravo_prompt.message_id, button_data(bravo_prompt, "Confirm"), GROUP
    )
    wait_message(fleet.fakes["bravo"], GROUP, "restarted", timeout=WAIT)
    charlie = fleet.bots["charlie"]
    charlie.fake.wait_for(lambda f: f.callback_answers, timeout=WAIT)

    assert charlie.count("audit_log", "event = 'confirmed'") == 0
    assert charlie.count("confirmations", "state = 'pending'") == 1
    assert not any("restarted" in t for t in fleet.texts("charlie") + fleet.texts("alpha"))
    assert fleet.bots["alpha"].count("audit_log", "command IN ('restart', 'confirm')") == 0
    assert fleet.bots["bravo"].count("audit_log", "event = 'confirmed'") == 1


def test_a_killed_steward_is_reported_by_its_watcher_and_shown_overdue(fleet: Fleet) -> None:
    fleet.start(watch={"alpha": "charlie"})
    fleet.meet()
    first = fleet.group.say(ALICE, "/fleet@bravo_steward_bot")
    (listing,) = with_replies(fleet, first, 1)

    charlie = fleet.bots["charlie"]
    charlie.kill(charlie.processes[-1])
    alert = wait_message(fleet.fakes["alpha"], uid(ALICE), "silent", timeout=WAIT)
    second = fleet.group.say(ALICE, "/fleet@bravo_steward_bot")
    (later,) = with_replies(fleet, second, 1)

    lines = listing["text"].splitlines()
    assert fleet.sender(listing) == "bravo"
    assert lines[0].startswith("✅ bravo ")
    assert "this one" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["alpha", "charlie"]
    assert all("seen" in line and "overdue" not in line for line in lines[1:])
    assert "charlie" in (alert.text or "")
    assert "alpha" in (alert.text or "")  # alerts name the server they come from
    after = later["text"].splitlines()
    assert after[1].startswith("✅ alpha ")
    assert after[2].startswith("⏰ overdue charlie ")
    assert f"(heartbeat {BEAT} s)" in after[2]
    assert not [t for t in fleet.fakes["bravo"].texts(uid(ALICE)) if "silent" in t]


def test_without_bot_to_bot_mode_each_steward_sees_only_itself(strangers: Fleet) -> None:
    strangers.start()
    strangers.group.say(ALICE, "Good morning, servers")

    fleet = strangers.group.say(ALICE, "/fleet")
    status = strangers.group.say(ALICE, "/status")
    alone = with_replies(strangers, fleet, 3)
    full = with_replies(strangers, status, 3)

    def hellos_gone(_fake: FakeBotAPI) -> bool:
        # Each said hello once; alone, each deletes it at its next beat.
        return all(
            not any(t.startswith("💓") for t in strangers.texts(name)) for name in NAMES
        ) and all(strangers.fakes[name].calls_to("deleteMessage") for name in NAMES)

    strangers.fakes["alpha"].wait_for(hellos_gone, timeout=WAIT)
    assert strangers.group.delivered() == []
    assert sorted(strangers.sender(m) for m in alone) == list(NAMES)
    for answer in alone:
        assert "I can see only myself here" in answer["text"]
        assert "Bot-to-Bot Communication Mode" in answer["text"]
    for answer in full:
        assert len(answer["text"].splitlines()) > 2  # the full status: no table without peers


def post(bot: FakeBotAPI, text: str) -> None:
    """A bot posts in the group through its own Bot API, as any client would."""
    form = urllib.parse.urlencode({"chat_id": GROUP, "text": text}).encode()
    request = urllib.request.Request(f"{bot.api_url}/sendMessage", data=form)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        assert json.load(response)["ok"]


def test_a_restarted_steward_greets_the_group_it_met_and_clears_its_old_beat(fleet: Fleet) -> None:
    fleet.start()
    fleet.meet()
    bravo = fleet.bots["bravo"]
    bravo.stop(bravo.processes[-1])
    standing = [m for m in fleet.fakes["bravo"].messages(GROUP) if not m.deleted]
    old = standing[-1]  # more than one only when it stopped between a beat and a deletion

    bravo.start(extra={"STEWARD_NAME": "bravo", "STEWARD_FLEET_HEARTBEAT_SECONDS": BEAT})

    # Nobody wrote in the group since: the group was remembered, with bravo's beats there.
    def fresh_beat(fake: FakeBotAPI) -> list[int]:
        now = [m.message_id for m in fake.messages(GROUP) if not m.deleted]
        gone = all(fake.message(GROUP, m.message_id).deleted for m in standing)
        return now if gone and len(now) == 1 and now[0] > old.message_id else []

    (newest,) = fleet.fakes["bravo"].wait_for(fresh_beat, timeout=WAIT)
    assert (old.text or "").startswith("💓 Steward bravo ")
    assert (fleet.fakes["bravo"].message(GROUP, newest).text or "").startswith("💓 Steward bravo ")


def test_an_old_beat_that_could_not_be_deleted_goes_at_a_later_beat(fleet: Fleet) -> None:
    fleet.start()
    fleet.meet()
    bravo = fleet.fakes["bravo"]
    before = [m.message_id for m in bravo.messages(GROUP) if not m.deleted]
    # Flood wait on every try the outbox makes: the deletion fails for a reason that passes.
    bravo.fail("deleteMessage", status=429, retry_after=1, times=6)

    def tidy(fake: FakeBotAPI) -> list[int]:
        now = [m.message_id for m in fake.messages(GROUP) if not m.deleted]
        gone = all(fake.message(GROUP, m).deleted for m in before)
        return now if gone and len(now) == 1 else []

    (newest,) = bravo.wait_for(tidy, timeout=WAIT + 10)
    assert newest > max(before)
    assert (bravo.message(GROUP, newest).text or "").startswith("💓 Steward bravo ")
