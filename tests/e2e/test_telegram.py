"""End to end on Telegram: `steward run` in its own process, talking to the loopback Bot API.

Access, commands in groups, confirmations, formatting and the backlog after downtime. Faults
of the Bot API and the error handler are in test_telegram_faults.py.
"""

from __future__ import annotations

import json
import re
import secrets
import urllib.request
from datetime import UTC, datetime, timedelta

from tests.e2e.harness import (
    ADMINS,
    ALICE,
    BOB,
    EVE,
    GROUP,
    MALLORY,
    NONCE,
    OLGA,
    TOKEN_SECRET,
    VICTOR,
    Steward,
    button_data,
    texts_with,
    uid,
    wait_answer,
    wait_message,
    wait_prompt,
)
from tests.support.fake_telegram import FakeBotAPI

STRANGER_REPLY = "Sorry, this is a private bot."


def chat_scope(user: dict[str, object]) -> dict[str, object]:
    return {"type": "chat", "chat_id": user["id"]}


def menu(fake: FakeBotAPI, user: dict[str, object]) -> set[str]:
    return {entry["command"] for entry in fake.commands(chat_scope(user))}


def help_commands(text: str) -> set[str]:
    return set(re.findall(r"^/([a-z]+)", text, re.MULTILINE))


# -- access -------------------------------------------------------------------------------------


def test_help_lists_only_what_each_role_may_run(fake: FakeBotAPI, steward: Steward) -> None:
    steward.start()
    fake.send_text(ALICE, "/help")
    fake.send_text(VICTOR, "/help")
    admin_help = wait_message(fake, uid(ALICE), "Commands").text or ""
    viewer_help = wait_message(fake, uid(VICTOR), "Commands").text or ""

    assert {"audit", "restart", "help", "ping", "status"} <= help_commands(admin_help)
    assert "/audit" not in viewer_help
    assert "/restart" not in viewer_help
    assert {"help", "ping", "status", "services"} <= help_commands(viewer_help)


def test_each_person_gets_a_command_menu_for_their_role_and_strangers_none(
    fake: FakeBotAPI, steward: Steward
) -> None:
    # A menu left in the default scope by an older version: everyone would see it.
    stale = {"commands": [{"command": "reboot", "description": "Reboot the server"}]}
    request = urllib.request.Request(  # noqa: S310 - the loopback fake
        fake.api_url + "/setMyCommands",
        data=json.dumps(stale).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
        assert json.load(answer)["ok"]
    assert fake.commands() != []

    steward.start()
    people = [*ADMINS, OLGA, VICTOR]
    fake.wait_for(lambda f: all(f.commands(chat_scope(user)) for user in people))

    for admin in ADMINS:
        assert {"audit", "restart", "status", "help"} <= menu(fake, admin)
    assert "restart" in menu(fake, OLGA)
    assert "audit" not in menu(fake, OLGA)
    assert menu(fake, VICTOR) & {"audit", "restart"} == set()
    assert {"status", "help", "ping"} <= menu(fake, VICTOR)
    assert fake.commands() == []  # the default scope: what a stranger would see
    assert fake.commands(chat_scope(MALLORY)) == []
    scopes = [call.params.get("scope") for call in fake.calls_to("setMyCommands")[1:]]
    assert all(scope and scope["type"] == "chat" for scope in scopes), scopes

    # The menu and /help are generated from the same registry: they agree.
    fake.send_text(OLGA, "/help")
    operator_help = wait_message(fake, uid(OLGA), "Commands").text or ""
    assert help_commands(operator_help) == menu(fake, OLGA)


def test_a_viewer_cannot_restart(fake: FakeBotAPI, steward: Steward) -> None:
    steward.start()
    fake.send_text(VICTOR, "/restart nextcloud")

    refusal = wait_message(fake, uid(VICTOR), "restart")
    assert "needs the operator role" in (refusal.text or "")
    assert "you are viewer" in (refusal.text or "")
    assert refusal.buttons == []
    assert all("reply_markup" not in call.params for call in fake.calls_to("sendMessage"))
    assert steward.count("confirmations") == 0
    assert steward.count("jobs") == 0


def test_a_stranger_gets_one_neutral_refusal_and_nothing_runs(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.send_text(MALLORY, "/restart nextcloud")
    fake.send_text(MALLORY, "/status")
    stranger = str(uid(MALLORY))
    fake.wait_for(lambda _: steward.count("audit_log", "actor_id = ?", (stranger,)) == 2)

    assert fake.texts(uid(MALLORY)) == [STRANGER_REPLY]
    rows = steward.query("SELECT event, command, result FROM audit_log ORDER BY id")
    assert rows == [
        ("refused", "restart", "stranger"),
        ("refused", "status", "stranger (not answered: rate limit)"),
    ]
    assert steward.count("confirmations") == 0
    assert steward.count("jobs") == 0
    assert menu(fake, MALLORY) == set()


def test_a_stranger_pressing_a_real_confirm_button_changes_nothing(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.send_text(OLGA, "/restart nextcloud", GROUP, "supergroup")
    prompt = wait_prompt(fake, GROUP)

    query = fake.press(MALLORY, prompt.message_id, button_data(prompt, "Confirm"), GROUP)
    assert wait_answer(fake, query).text == "Not allowed."
    stranger = str(uid(MALLORY))
    fake.wait_for(lambda _: steward.count("audit_log", "actor_id = ?", (stranger,)) == 1)

    assert fake.message(GROUP, prompt.message_id) == prompt  # not edited, buttons kept
    assert [m.message_id for m in fake.messages(GROUP)] == [prompt.message_id]
    assert steward.query("SELECT state FROM confirmations") == [("pending",)]
    assert steward.count("jobs") == 0
    rows = steward.query("SELECT event, command FROM audit_log WHERE actor_id = ?", (stranger,))
    assert rows == [("refused", "press")]


def test_a_debug_log_never_shows_the_token(fake: FakeBotAPI, steward: Steward) -> None:
    process = steward.start(log_level="DEBUG")
    fake.send_text(ALICE, "/ping")
    fake.send_text(MALLORY, "/ping")
    wait_message(fake, uid(ALICE), "pong")
    wait_message(fake, uid(MALLORY), STRANGER_REPLY)

    assert steward.stop(process) == 0
    log = process.stderr
    assert "DEBUG telegram.ext.ExtBot: Calling Bot API endpoint `sendMessage`" in log
    assert "Set Bot API URL: http://127.0.0.1" in log  # where python-telegram-bot shows it
    assert TOKEN_SECRET not in log
    assert TOKEN_SECRET not in process.stdout


# -- commands in groups -------------------------------------------------------------------------


def test_in_a_group_only_commands_for_this_bot_are_answered(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.send_text(ALICE, "/ping@some_other_bot", GROUP, "supergroup")
    fake.send_text(ALICE, "good morning, everyone", GROUP, "supergroup")
    fake.send_text(MALLORY, "/status@some_other_bot", GROUP, "supergroup")
    fake.send_text(MALLORY, "nice bot", GROUP, "supergroup")
    fake.send_text(ALICE, "/ping@steward_test_bot", GROUP, "supergroup")
    fake.send_text(ALICE, "/whoami@Steward_Test_Bot", GROUP, "supergroup")

    # Updates of one chat are handled in order: once /whoami is answered, all were seen.
    wait_message(fake, GROUP, "You are")
    assert len(fake.texts(GROUP)) == 2
    assert fake.texts(GROUP)[0].startswith("pong")
    fake.wait_for(lambda _: steward.count("audit_log") == 2)
    assert steward.query("SELECT command FROM audit_log ORDER BY id") == [("ping",), ("whoami",)]


# -- confirmations ------------------------------------------------------------------------------


def test_a_confirmed_restart_runs_to_its_outcome_with_silent_progress(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.send_text(OLGA, "/restart nextcloud")
    prompt = wait_prompt(fake, uid(OLGA))
    datas = [button["callback_data"] for button in prompt.buttons]
    assert [button["text"] for button in prompt.buttons] == ["Confirm", "Cancel"]
    confirm, cancel = datas
    assert confirm.startswith("cf:")
    assert cancel.startswith("cx:")
    assert NONCE.fullmatch(confirm[3:])
    assert cancel[3:] == confirm[3:]
    assert all(len(data.encode()) <= 64 for data in datas)
    assert "Waiting for Olga to confirm" in (prompt.text or "")

    query = fake.press(OLGA, prompt.message_id, confirm)
    assert wait_answer(fake, query).text == "Confirmed."
    outcome = wait_message(fake, uid(OLGA), "Nextcloud restarted and active")

    closed = fake.message(uid(OLGA), prompt.message_id)
    assert "✅ Confirmed by Olga." in (closed.text or "")
    assert closed.buttons == []
    assert closed.reply_markup is None
    # One progress message, sent silently and then edited in place into the outcome.
    assert outcome.message_id != prompt.message_id
    assert outcome.disable_notification
    assert outcome.reply_to == prompt.message_id
    first = next(c for c in fake.calls_to("sendMessage") if "Restarting" in c.params["text"])
    assert first.params["disable_notification"] == "true"
    assert outcome.edits
    assert [m.message_id for m in fake.messages(uid(OLGA))] == [
        prompt.message_id,
        outcome.message_id,
    ]
    fake.wait_for(lambda _: steward.query("SELECT state FROM jobs") == [("succeeded",)])


def test_a_press_by_another_user_gets_a_toast_and_changes_nothing(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.send_text(OLGA, "/restart nextcloud", GROUP, "supergroup")
    prompt = wait_prompt(fake, GROUP)

    query = fake.press(BOB, prompt.message_id, button_data(prompt, "Confirm"), GROUP)
    assert wait_answer(fake, query).text == "Only Olga can confirm this."
    fake.wait_for(lambda _: steward.count("audit_log", "event = 'refused'") == 1)

    assert fake.message(GROUP, prompt.message_id) == prompt
    assert [m.message_id for m in fake.messages(GROUP)] == [prompt.message_id]
    assert steward.query("SELECT state FROM confirmations") == [("pending",)]
    assert steward.count("jobs") == 0


def test_a_replayed_confirm_runs_once(fake: FakeBotAPI, steward: Steward) -> None:
    steward.start()
    fake.send_text(OLGA, "/restart nextcloud")
    prompt = wait_prompt(fake, uid(OLGA))
    confirm = button_data(prompt, "Confirm")

    # A double tap: both presses are on their way before the bot has seen the first. (Not
    # strict: the second must go out even if the bot has just removed the keyboard.)
    first = fake.press(OLGA, prompt.message_id, confirm)
    second = fake.press(OLGA, prompt.message_id, confirm, strict=False)
    assert wait_answer(fake, first).text == "Confirmed."
    assert wait_answer(fake, second).text == "Already confirmed."
    wait_message(fake, uid(OLGA), "restarted and active")
    # And once more, long after, with the data of a button that is gone.
    third = fake.press(OLGA, prompt.message_id, confirm, strict=False)
    assert wait_answer(fake, third).text == "Already confirmed."

    assert len(texts_with(fake, uid(OLGA), "restarted and active")) == 1
    assert steward.count("jobs") == 1
    assert steward.count("audit_log", "event = 'outcome' AND command = 'restart'") == 1


def test_forged_callback_data_does_nothing(fake: FakeBotAPI, steward: Steward) -> None:
    steward.start()
    fake.send_text(OLGA, "/restart nextcloud")
    prompt = wait_prompt(fake, uid(OLGA))
    olgas = button_data(prompt, "Confirm")
    fake.send_text(BOB, "/ping")
    bobs_message = wait_message(fake, uid(BOB), "pong")

    random_nonce = "cf:" + secrets.token_urlsafe(16)
    assert random_nonce != olgas
    guessed = fake.press(OLGA, prompt.message_id, random_nonce, strict=False)
    # Another user's nonce, pressed in another chat (Bob's own, with another admin's role).
    stolen = fake.press(BOB, bobs_message.message_id, olgas, uid(BOB), strict=False)
    cancel_stolen = fake.press(BOB, bobs_message.message_id, "cx" + olgas[2:], strict=False)
    junk = fake.press(OLGA, prompt.message_id, "cf:", strict=False)

    for query in (guessed, stolen, cancel_stolen, junk):
        assert wait_answer(fake, query).text == "This button is not valid (anymore)."
    assert fake.message(uid(OLGA), prompt.message_id) == prompt
    assert fake.message(uid(BOB), bobs_message.message_id) == bobs_message
    assert steward.query("SELECT state FROM confirmations") == [("pending",)]
    assert steward.count("jobs") == 0
    fake.wait_for(lambda _: steward.count("audit_log", "result = 'unknown button'") == 4)


def test_an_expired_button_does_nothing(fake: FakeBotAPI, steward: Steward) -> None:
    steward.start()
    fake.send_text(OLGA, "/restart nextcloud")
    prompt = wait_prompt(fake, uid(OLGA))
    aged = steward.execute(
        "UPDATE confirmations SET expires_at = ? WHERE state = 'pending'",
        ("2020-01-01 00:00:00.000000",),
    )
    assert aged == 1

    query = fake.press(OLGA, prompt.message_id, button_data(prompt, "Confirm"))
    answer = wait_answer(fake, query)
    assert answer.text is not None
    assert "expired" in answer.text

    closed = wait_message(fake, uid(OLGA), "Expired; nothing was done.")
    assert closed.message_id == prompt.message_id
    assert closed.buttons == []
    assert steward.query("SELECT state FROM confirmations") == [("expired",)]
    assert steward.count("jobs") == 0
    assert [m.message_id for m in fake.messages(uid(OLGA))] == [prompt.message_id]
    assert texts_with(fake, uid(OLGA), "restarted") == []


# -- formatting ---------------------------------------------------------------------------------


def test_names_from_telegram_are_escaped_in_html(fake: FakeBotAPI, steward: Steward) -> None:
    steward.start()
    name = '<Eve & "Co">'
    fake.send_text(EVE, "/start")
    hello = wait_message(fake, uid(EVE), "Hello")
    fake.send_text(EVE, "/restart nextcloud")
    prompt = wait_prompt(fake, uid(EVE))
    query = fake.press(EVE, prompt.message_id, button_data(prompt, "Cancel"))
    assert wait_answer(fake, query).text == "Cancelled."
    closed = wait_message(fake, uid(EVE), "Cancelled by")

    refused = [call for call in fake.calls if call.status >= 400]
    assert refused == []  # the fake's strict HTML parser accepted every text
    assert f"Hello {name}." in (hello.text or "")
    assert f"Waiting for {name} to confirm" in (prompt.text or "")
    assert f"Cancelled by {name}; nothing was done." in (closed.text or "")
    assert "&lt;Eve &amp; &quot;Co&quot;&gt;" in (prompt.source or "")


def test_output_longer_than_a_message_goes_as_a_document(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    admin = FakeBotAPI.user(uid(ALICE), "Alice", last_name="Longname-Administrator")
    for _ in range(70):
        fake.send_text(admin, "/ping")
    fake.wait_for(lambda f: len(texts_with(f, uid(ALICE), "pong")) == 70, timeout=30)

    fake.send_text(admin, "/audit 100")
    (upload,) = fake.wait_for(lambda f: f.calls_to("sendDocument"))
    assert upload.status == 200
    document = next(m for m in fake.messages(uid(ALICE)) if m.document is not None)
    assert document.document is not None
    content = document.document.content.decode()
    summary = wait_message(fake, uid(ALICE), "full text attached")

    assert len(content) > 4096
    assert content.startswith("Audit log (newest last, 70 rows)")
    assert content.count("telegram:Alice Longname-Administrator /ping → ok") == 70
    assert document.document.filename == "output.txt"
    assert len(summary.text or "") < 300
    assert f"full text attached: {len(content)} characters" in (summary.text or "")
    assert document.protect_content  # /audit is sensitive
    assert summary.protect_content
    too_long = [c for c in fake.calls if c.status == 400]
    assert too_long == []


# -- backlog after downtime ---------------------------------------------------------------------


def test_after_downtime_reads_are_answered_and_stale_changes_refused(
    fake: FakeBotAPI, steward: Steward
) -> None:
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    fake.send_text(OLGA, "/restart nextcloud", date=ten_minutes_ago)
    fake.send_text(OLGA, "/ping", date=ten_minutes_ago)
    steward.start()

    refusal = wait_message(fake, uid(OLGA), "/restart was sent")
    pong = wait_message(fake, uid(OLGA), "pong")
    assert "was sent 10 min ago" in (refusal.text or "")
    assert "expire after 5 min" in (refusal.text or "")
    assert refusal.buttons == []
    lag = re.search(r"message lag (\d+)", pong.text or "")
    assert lag is not None
    assert 590 <= int(lag.group(1)) <= 700
    assert steward.count("confirmations") == 0
    assert steward.count("jobs") == 0


def test_an_alerts_snooze_button_snoozes_it_and_keeps_the_keyboard(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.send_text(ALICE, "/demo disk 93")
    alert = wait_message(fake, uid(ALICE), "Warning")
    assert [b["text"] for b in alert.buttons] == ["Snooze 1h", "Mute 24h", "Details"]
    assert all(len(str(b["callback_data"]).encode()) <= 64 for b in alert.buttons)
    query = fake.press(ALICE, alert.message_id, button_data(alert, "Snooze 1h"))
    assert wait_answer(fake, query).text == "OK"
    snoozed = wait_message(fake, uid(ALICE), "no messages about it until")
    assert snoozed.text is not None
    assert snoozed.text.startswith("🔕 disk / is 93% full")
    kept = fake.message(uid(ALICE), alert.message_id)
    assert [b["text"] for b in kept.buttons] == ["Snooze 1h", "Mute 24h", "Details"]
    forged = fake.press(ALICE, alert.message_id, "run:restart nextcloud", strict=False)
    assert wait_answer(fake, forged).text == "This button is not valid (anymore)."


def test_the_weekly_report_comes_with_its_chart_as_a_photo(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.send_text(VICTOR, "/demo disk 50")  # a viewer may not fill disks
    wait_message(fake, uid(VICTOR), "needs the admin role")
    fake.send_text(ALICE, "/demo disk 50")  # the alert check keeps a sample
    wait_message(fake, uid(ALICE), "Demo:")
    fake.send_text(VICTOR, "/report week")
    wait_message(fake, uid(VICTOR), "📈 Week of")
    photo = fake.wait_for(
        lambda f: next((m for m in f.messages(uid(VICTOR)) if m.document is not None), None)
    )
    assert photo is not None
    assert photo.document is not None
    assert photo.document.kind == "photo"
    assert (photo.document.width, photo.document.height) == (800, 400)
