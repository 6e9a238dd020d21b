"""Several Stewards in one chat: addressing, the order of answers, and the heartbeat watch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handlers.core.fleet import Fleet, Signature, addressee
from handlers.core.messages import ChatRef
from handlers.fleet import HeartbeatWatch

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
