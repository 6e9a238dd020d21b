"""Several Stewards in one chat: addressing, the order of answers, and the heartbeat watch."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from handlers.core.fleet import Fleet, Signature, addressee
from handlers.core.messages import ChatRef
from handlers.fleet import HeartbeatWatch
from tests.conftest import CHAT, Harness

ROOM = ChatRef("matrix", "!room:example.org")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
COMMANDS = {"restart", "status", "admin"}.__contains__


def test_a_command_names_a_steward_before_it_or_after_its_arguments() -> None:
    assert addressee("vps", ("restart", "nextcloud"), COMMANDS) == (
        "vps",
        "restart",
        ("nextcloud",),
    )
    assert addressee("restart", ("nextcloud", "@vps"), COMMANDS) == (
        "vps",
        "restart",
        ("nextcloud",),
    )
    assert addressee("status", (), COMMANDS) == (None, "status", ())
    # A Matrix id is an argument, and an unknown word followed by no command stays unknown.
    member = ("add", "@alice:example.org")
    assert addressee("admin", member, COMMANDS) == (None, "admin", member)
    assert addressee("frobnicate", ("now",), COMMANDS) == (None, "frobnicate", ("now",))


def test_only_live_stewards_named_before_this_one_are_waited_for() -> None:
    fleet = Fleet(Signature("bravo", "1.0", 60))
    fleet.saw(ROOM, "@a:x", Signature("alpha", "1.0", 60), T0)
    fleet.saw(ROOM, "@c:x", Signature("charlie", "1.0", 60), T0)
    fleet.saw(ROOM, "@d:x", Signature("able", "1.0", 60), T0 - timedelta(minutes=5))

    assert [p.name for p in fleet.before_me(ROOM, T0 + timedelta(seconds=30))] == ["alpha"]
    assert fleet.before_me(ROOM, T0 + timedelta(minutes=2)) == []  # alpha is overdue now
    assert not fleet.saw(ROOM, "@b:x", Signature("bravo", "1.0", 60), T0)  # never itself


def test_the_watch_alerts_once_when_silent_and_once_when_back() -> None:
    fleet = Fleet(Signature("alpha", "1.0", 60))
    watch = HeartbeatWatch(fleet, "charlie", T0)
    fleet.saw(ROOM, "@c:x", Signature("charlie", "1.0", 60), T0)

    assert watch.check(T0 + timedelta(seconds=59)) is None
    silent = watch.check(T0 + timedelta(seconds=61))
    assert silent is not None
    assert "charlie" in silent
    assert "silent" in silent
    assert watch.check(T0 + timedelta(seconds=90)) is None  # once, not at every check
    fleet.saw(ROOM, "@c:x", Signature("charlie", "1.0", 60), T0 + timedelta(seconds=100))
    assert (
        watch.check(T0 + timedelta(seconds=101)) == "✅ The Steward <b>charlie</b> answers again."
    )


def test_a_signature_from_the_chat_is_checked_before_it_is_believed() -> None:
    good = {"name": "vps", "version": "0.1.0", "heartbeat": 300, "alerts": 2}
    assert Signature.from_json(good) == Signature("vps", "0.1.0", 300, 2)
    assert Signature.from_json({**good, "name": "<b>x</b>"}) is None
    assert Signature.from_json({**good, "heartbeat": 0}) is None
    assert Signature.from_json("vps") is None


def test_a_signature_as_a_line_of_text_reads_back_and_nothing_else_does() -> None:
    signature = Signature("vps", "1.4.0", 300, 2)
    line = signature.as_line()

    assert line == "💓 Steward vps 1.4.0 · heartbeat every 300 s · open alerts: 2"
    assert Signature.from_line(line) == signature
    assert Signature.from_line(f"  {line}\n") == signature
    assert Signature.from_line(f"{line} and more") is None
    assert Signature.from_line(line.replace("vps", "VPS<b>")) is None
    assert Signature.from_line(line.replace("300", "0")) is None
    assert Signature("vps", "1.0 beta<x>", 60).as_line().split()[3] == "1.0beta<x>"


def test_a_message_from_a_known_stewards_account_is_a_sign_of_life() -> None:
    fleet = Fleet(Signature("alpha", "1.0", 60))
    fleet.saw(ROOM, "charlie_bot", Signature("charlie", "1.0", 60, 1), T0)

    later = fleet.heard(ROOM, "charlie_bot", T0 + timedelta(seconds=50))

    assert later is not None
    assert later.last_seen == T0 + timedelta(seconds=50)
    assert later.signature.open_alerts == 1
    assert fleet.heard(ROOM, "someone_bot", T0) is None
    assert fleet.heard(ChatRef("matrix", "!other:x"), "charlie_bot", T0) is None
    assert fleet.heard(ROOM, "charlie_bot", T0).last_seen == T0 + timedelta(seconds=50)  # type: ignore[union-attr]


def in_fleet(harness: Harness, fleet: Fleet) -> None:
    harness.engine.deps = replace(harness.engine.deps, fleet=fleet)


async def test_fleet_alone_on_telegram_says_how_to_let_the_bots_see_each_other(
    harness: Harness,
) -> None:
    in_fleet(harness, Fleet(Signature("alpha", "1.0", 60)))

    answer = await harness.say("/fleet")

    first, second = answer.splitlines()
    assert first.startswith("✅ <b>alpha</b> 1.0, this one")
    assert second.startswith("<i>I can see only myself here")
    assert "Bot-to-Bot Communication Mode" in second


async def test_fleet_lists_the_others_in_name_order_and_marks_the_overdue(
    harness: Harness,
) -> None:
    fleet = Fleet(Signature("bravo", "1.0", 60))
    in_fleet(harness, fleet)
    now = harness.clock()
    fleet.saw(CHAT, "charlie_bot", Signature("charlie", "1.1", 60, 2), now - timedelta(seconds=90))
    fleet.saw(CHAT, "alpha_bot", Signature("alpha", "1.0", 60), now - timedelta(seconds=10))

    lines = (await harness.say("/fleet")).splitlines()

    assert len(lines) == 3
    assert lines[1].startswith("✅ <b>alpha</b> 1.0, seen 10 s ago")
    assert (
        lines[2] == "⏰ overdue <b>charlie</b> 1.1, seen 90 s ago (heartbeat 60 s), 2 open alerts"
    )
