"""End to end on Telegram when things go wrong: 429s, 5xx, dropped connections, an outage of
the Bot API, a bot killed in the middle of a job, a refused token, and the error handler."""

from __future__ import annotations

import itertools
import os
import re
import ssl
import time
from pathlib import Path

import pytest
from telegram.ext import AIORateLimiter

from bot.app import build_app
from bot.config import load_settings
from bot.storage.database import SCHEMA_HEAD
from bot.transports.telegram import TelegramTransport
from handlers.core.messages import ChatRef, Reply
from tests.e2e.harness import (
    ADMINS,
    ALICE,
    OLGA,
    START_TIMEOUT,
    TOKEN,
    Steward,
    button_data,
    texts_with,
    uid,
    wait_message,
    wait_prompt,
)
from tests.support.fake_telegram import QUERY_TOO_OLD, Call, FakeBotAPI
from tests.support.tls import self_signed


def statuses(fake: FakeBotAPI, method: str, since: float = 0.0) -> list[int]:
    return [call.status for call in fake.calls_to(method) if call.time >= since]


def gaps_after_failures(calls: list[Call]) -> list[float]:
    """For each failed call, the seconds until the next call of the same method."""
    return [
        later.time - call.time for call, later in itertools.pairwise(calls) if call.status != 200
    ]


def test_429_during_progress_edits_still_delivers_the_outcome(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start(demo_delay="0.3")  # about 1 s of restarts: progress is edited in place
    fake.send_text(OLGA, "/restart nextcloud")
    prompt = wait_prompt(fake, uid(OLGA))
    fake.fail("sendMessage", status=429, retry_after=1, times=1)
    pressed_at = time.monotonic()
    fake.press(OLGA, prompt.message_id, button_data(prompt, "Confirm"))

    progress = wait_message(fake, uid(OLGA), "Restarting Nextcloud")
    fake.fail("editMessageText", status=429, retry_after=1, times=2)
    outcome = wait_message(fake, uid(OLGA), "Nextcloud restarted and active", timeout=20)

    assert outcome.message_id == progress.message_id  # the same message, edited
    assert len(texts_with(fake, uid(OLGA), "restarted and active")) == 1
    assert statuses(fake, "sendMessage", pressed_at) == [429, 200]
    edits = [
        c
        for c in fake.calls_to("editMessageText")
        if c.params["message_id"] == str(progress.message_id)
    ]
    assert [c.status for c in edits][:3] == [429, 429, 200]
    assert edits[-1].status == 200
    # retry_after=1 is honoured: no retry comes sooner than Telegram asked.
    sends = [c for c in fake.calls_to("sendMessage") if c.time >= pressed_at]
    assert all(gap >= 0.95 for gap in gaps_after_failures(sends))
    assert all(gap >= 0.95 for gap in gaps_after_failures(edits))


def test_5xx_and_a_dropped_connection_are_retried(fake: FakeBotAPI, steward: Steward) -> None:
    steward.start()
    fake.fail("sendMessage", status=502, times=2)
    fake.send_text(ALICE, "/ping")
    wait_message(fake, uid(ALICE), "pong")
    assert statuses(fake, "sendMessage") == [502, 502, 200]
    assert all(gap >= 0.45 for gap in gaps_after_failures(fake.calls_to("sendMessage")))

    fake.drop("sendMessage")
    fake.send_text(ALICE, "/whoami")
    wait_message(fake, uid(ALICE), "You are")
    fake.send_text(ALICE, "/ping")
    fake.wait_for(lambda f: len(texts_with(f, uid(ALICE), "pong")) == 2)

    # A dropped connection may or may not have delivered; this fake drops before delivering.
    assert len(texts_with(fake, uid(ALICE), "pong")) == 2
    assert len(texts_with(fake, uid(ALICE), "You are")) >= 1
    assert statuses(fake, "sendMessage") == [502, 502, 200, 0, 200, 200]


def test_the_bot_recovers_after_the_bot_api_is_down_for_10_s(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.down()
    time.sleep(10)
    fake.up()
    back_at = time.monotonic()
    fake.send_text(ALICE, "/ping")

    wait_message(fake, uid(ALICE), "pong", timeout=40)
    polls = [c for c in fake.calls_to("getUpdates") if c.time >= back_at]
    assert polls  # the polling loop survived the outage


def test_the_database_opens_while_the_bot_api_cannot_be_reached(
    fake: FakeBotAPI, steward: Steward
) -> None:
    """The app builds beside the connection to Telegram, not after it: once the first request
    has left, whether or not an answer comes. A /ping that waited is answered when it is back."""
    fake.down()
    fake.send_text(ALICE, "/ping")
    process = steward.start(ready=False)

    def migrated(_: FakeBotAPI) -> bool:
        if process.popen.poll() is not None:
            raise AssertionError(f"steward exited early; stderr:\n{process.stderr}")
        return steward.revision() == SCHEMA_HEAD

    fake.wait_for(migrated, timeout=START_TIMEOUT)
    assert not fake.calls_to("getMe")  # Telegram has not answered anything yet
    fake.up()
    wait_message(fake, uid(ALICE), "pong", timeout=40)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: a Bot API that only a bot told to
    trust it (SSL_CERT_FILE) can reach."""
    return self_signed(tmp_path, "127.0.0.1", days=1, ip="127.0.0.1")


def test_the_bot_api_is_reached_over_tls_only_with_a_trusted_certificate(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """The bot verifies the Bot API's certificate: against certifi's bundle by default, and
    against SSL_CERT_FILE when it is set. Not trusted, the bot sends nothing and says why;
    trusted, both of its clients (commands, and getUpdates) reach the Bot API."""
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    with FakeBotAPI(TOKEN, tls=served) as api:
        untrusting = Steward(api, tmp_path / "untrusting")
        try:
            process = untrusting.start(ready=False)
            api.send_text(ALICE, "/ping")
            api.wait_for(lambda _: "CERTIFICATE_VERIFY_FAILED" in process.stderr)
            assert not api.calls_to("getMe")  # the handshake failed: no request was read
        finally:
            untrusting.close()

        trusting = Steward(api, tmp_path / "trusting")
        try:
            trusting.start(extra={"SSL_CERT_FILE": str(cert)})
            wait_message(api, uid(ALICE), "pong")
            assert api.calls_to("getUpdates")
            assert api.calls_to("sendMessage")
        finally:
            trusting.close()


def test_a_job_cut_off_by_a_restart_is_reported_in_the_same_message(
    fake: FakeBotAPI, steward: Steward
) -> None:
    first = steward.start(demo_delay="2")  # /restart nextcloud takes about 6 s
    fake.send_text(OLGA, "/restart nextcloud")
    prompt = wait_prompt(fake, uid(OLGA))
    fake.press(OLGA, prompt.message_id, button_data(prompt, "Confirm"))
    progress = wait_message(fake, uid(OLGA), "Restarting Nextcloud")
    # The job row knows its message, and the press is acknowledged to Telegram (offset).
    fake.wait_for(lambda _: steward.count("jobs", "message_id IS NOT NULL") == 1)
    fake.wait_for(lambda f: not f.pending_updates)
    steward.kill(first)
    assert steward.query("SELECT state FROM jobs") == [("running",)]

    steward.start(demo_delay="2")
    outcome = wait_message(fake, uid(OLGA), "checked after the bot restarted", timeout=20)

    assert outcome.message_id == progress.message_id
    assert "🟢 Nextcloud is active (checked after the bot restarted)" in (outcome.text or "")
    assert [m.message_id for m in fake.messages(uid(OLGA))] == [
        prompt.message_id,
        progress.message_id,
    ]
    fake.wait_for(lambda _: steward.query("SELECT state FROM jobs") == [("succeeded",)])


def test_a_token_telegram_refuses_stops_the_bot_with_exit_2(
    fake: FakeBotAPI, steward: Steward
) -> None:
    fake.fail("getMe", status=401, times=None)
    process = steward.start(ready=False)

    assert process.wait_exit() == 2
    lines = process.stderr.splitlines()
    naming = [line for line in lines if "STEWARD_TELEGRAM_TOKEN" in line]
    assert naming == ["steward: STEWARD_TELEGRAM_TOKEN: Telegram refused the token"]
    assert lines[-1] == naming[0]
    assert "Traceback" not in process.stderr
    assert fake.getupdates_count == 0


def test_an_error_gives_the_user_an_incident_id_and_tells_the_admins(
    fake: FakeBotAPI, steward: Steward
) -> None:
    process = steward.start()
    # Telegram refuses a reply as the bot wrote it: the handler fails with a BadRequest.
    fake.fail(
        "sendMessage",
        status=400,
        description='Bad Request: can\'t parse entities: Unsupported start tag "x" at byte 0',
    )
    fake.send_text(OLGA, "/ping")

    apology = wait_message(fake, uid(OLGA), "Something went wrong")
    found = re.search(r"incident ([0-9a-f]{8})\)", apology.text or "")
    assert found is not None, apology.text
    incident = found.group(1)
    notices = [wait_message(fake, uid(admin), f"Incident {incident}") for admin in ADMINS]

    assert len(apology.text or "") < 100
    assert "Traceback" not in (apology.text or "")
    for notice in notices:
        assert "BadRequest" in (notice.text or "")
        assert "Traceback" not in (notice.text or "")
        assert len(notice.text or "") < 200
    assert texts_with(fake, uid(OLGA), "pong") == []
    fake.wait_for(lambda _: f"incident {incident}" in process.stderr)
    log = process.stderr[process.stderr.index(f"incident {incident}") :]
    assert "Traceback (most recent call last)" in log  # the details go to the log


def test_a_press_answered_too_late_still_runs_the_confirmed_action(
    fake: FakeBotAPI, steward: Steward
) -> None:
    steward.start()
    fake.send_text(OLGA, "/restart nextcloud")
    prompt = wait_prompt(fake, uid(OLGA))
    # The bot was busy for longer than Telegram keeps a callback query open.
    fake.fail("answerCallbackQuery", status=400, description=QUERY_TOO_OLD)
    fake.press(OLGA, prompt.message_id, button_data(prompt, "Confirm"))

    wait_message(fake, uid(OLGA), "Nextcloud restarted and active")
    assert "✅ Confirmed by Olga." in (fake.message(uid(OLGA), prompt.message_id).text or "")
    assert texts_with(fake, uid(OLGA), "Something went wrong") == []
    fake.wait_for(lambda _: steward.query("SELECT state FROM jobs") == [("succeeded",)])


async def test_the_rate_limiter_is_wired_in_when_it_is_on(
    fake: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("STEWARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env of the caller's
    settings = load_settings(
        state_dir=tmp_path / "state", demo=True, telegram_token=TOKEN, admins="1001"
    )
    assert settings.telegram_rate_limit  # on unless turned off
    app = build_app(settings)
    try:
        telegram = TelegramTransport(
            app.engine,
            TOKEN,
            fake.base_url,
            rate_limit=settings.telegram_rate_limit,
        )
        assert isinstance(telegram.application.bot.rate_limiter, AIORateLimiter)
        off = TelegramTransport(app.engine, TOKEN, fake.base_url, rate_limit=False)
        assert off.application.bot.rate_limiter is None

        # Messages really go through it, 429 included.
        fake.fail("sendMessage", status=429, retry_after=1)
        await telegram.application.initialize()
        try:
            sent = await telegram.outbox.send(ChatRef("telegram", "1001"), Reply("<b>hello</b>"))
        finally:
            await telegram.application.shutdown()
        assert fake.message(uid(ALICE), int(sent.message_id)).text == "hello"
        assert statuses(fake, "sendMessage") == [429, 200]
    finally:
        app.close()


def test_a_stop_in_the_first_moments_of_a_start_exits_cleanly(
    fake: FakeBotAPI, steward: Steward
) -> None:
    """SIGTERM while the database may still be opening and an update waits for the engine."""
    fake.send_text(OLGA, "/ping")
    process = steward.start(ready=False)
    fake.wait_for(lambda f: f.getupdates_count > 0, timeout=30)
    assert steward.stop(process) == 0
