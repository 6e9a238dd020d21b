"""`steward run` as a separate process against the loopback fake Bot API, as in production.

``Steward.start`` launches ``python -m bot run`` with a clean environment (nothing of the
caller's ``STEWARD_*`` leaks in), a temporary working folder and state folder, and waits until
the bot long-polls. Teardown (``Steward.close``) sends SIGTERM to every process still running,
insists on exit status 0 within 15 s, and checks that the bot token never reached stdout or
stderr. Blocking waits are fine here: the bot lives in another process.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.fake_telegram import BotMessage, CallbackAnswer, FakeBotAPI

JSON = dict[str, Any]

# A token in Telegram's shape. Its secret half must never show up in the bot's output.
TOKEN = "7312045118:AAHx9fE2e-TestOnly_Q3zLmNp7rStUvWxYz0"
TOKEN_SECRET = TOKEN.partition(":")[2]

ALICE = FakeBotAPI.user(1001, "Alice", "alice")  # admin
BOB = FakeBotAPI.user(1002, "Bob", "bob")  # admin
EVE = FakeBotAPI.user(1003, '<Eve & "Co">')  # admin, with a name that needs escaping
OLGA = FakeBotAPI.user(2001, "Olga", "olga")  # operator
VICTOR = FakeBotAPI.user(3001, "Victor", "victor")  # viewer
MALLORY = FakeBotAPI.user(6666, "Mallory", "mallory")  # nobody: a stranger
ADMINS = (ALICE, BOB, EVE)
GROUP = -1001234567890  # a supergroup the admins share with the bot

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
NONCE = re.compile(r"[A-Za-z0-9_-]{22}")


def uid(user: JSON) -> int:
    return int(user["id"])


@dataclass
class BotProcess:
    """One `steward run` process and the files its stdout and stderr go to."""

    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    settled: bool = False  # the test ended it (killed it, or saw it exit) on purpose

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to end by itself; returns its exit status."""
        try:
            status = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(
                f"steward did not exit within {timeout} s; stderr:\n{self.stderr}"
            ) from None
        self.settled = True
        return status


class BotRunner:
    """Starts `steward run` processes that share one state folder; at the end stops each with
    SIGTERM, insists on exit status 0, and checks that no secret reached its output."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root / "cwd"
        self.state_dir = root / "state"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.processes: list[BotProcess] = []

    @property
    def db_path(self) -> Path:
        return self.state_dir / "steward.db"

    def base_env(self) -> dict[str, str]:
        """A clean environment: only what the bot needs, never the caller's STEWARD_*."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            # The checkout under test, not whatever the venv's editable install points at.
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "STEWARD_DEMO": "1",
            "STEWARD_DEMO_DELAY": "0.05",
            "STEWARD_STATE_DIR": str(self.state_dir),
        }

    def secrets(self) -> dict[str, str]:
        """What must never show in the bot's output, by name."""
        return {}

    def launch(self, env: dict[str, str]) -> BotProcess:
        number = len(self.processes) + 1
        stdout_path = self.root / f"steward-{number}.stdout"
        stderr_path = self.root / f"steward-{number}.stderr"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            popen = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"],
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        process = BotProcess(popen, stdout_path, stderr_path)
        self.processes.append(process)
        return process

    def stop(self, process: BotProcess) -> int:
        """SIGTERM, as systemd stops it; the exit status must come within STOP_TIMEOUT."""
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGTERM)
        return process.wait_exit(STOP_TIMEOUT)

    def kill(self, process: BotProcess) -> None:
        """SIGKILL: the bot gets no chance to tidy up (a crash, a power cut, an OOM kill)."""
        process.popen.kill()
        process.popen.wait(STOP_TIMEOUT)
        process.settled = True

    def close(self) -> None:
        problems: list[str] = []
        for number, process in enumerate(self.processes, 1):
            if process.popen.poll() is None:
                status = self.stop(process)
                if status != 0:
                    problems.append(f"process {number} exited with {status} after SIGTERM")
            elif not process.settled:
                problems.append(
                    f"process {number} exited by itself with {process.popen.returncode}"
                )
            for name, text in (("stdout", process.stdout), ("stderr", process.stderr)):
                for what, secret in self.secrets().items():
                    if secret in text:
                        problems.append(f"process {number} printed the {what} on {name}")
            if problems:
                problems.append(f"stderr of process {number}:\n{process.stderr}")
        assert not problems, "\n".join(problems)

    # -- the bot's database, read (and, to age a confirmation, written) from outside ------

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=10)) as db:
            return db.execute(sql, params).fetchall()

    def revision(self) -> str | None:
        """The schema revision of the bot's database, None until the bot has made it. Read
        only, so that reading never creates the file the bot is about to make."""
        if not self.db_path.exists():
            return None
        ro = f"file:{self.db_path}?mode=ro"
        with contextlib.closing(sqlite3.connect(ro, uri=True, timeout=10)) as db:
            try:
                row = db.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.OperationalError:  # no such table yet
                return None
        return None if row is None else str(row[0])

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> int:
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=10)) as db, db:
            return db.execute(sql, params).rowcount

    def count(self, table: str, where: str = "1", params: tuple[object, ...] = ()) -> int:
        (row,) = self.query(f"SELECT count(*) FROM {table} WHERE {where}", params)  # noqa: S608
        return int(row[0])


class Steward(BotRunner):
    """Bots on Telegram, sharing one fake Bot API."""

    def __init__(self, fake: FakeBotAPI, root: Path) -> None:
        super().__init__(root)
        self.fake = fake

    def secrets(self) -> dict[str, str]:
        return {"bot token": TOKEN_SECRET}

    def env(self, extra: Mapping[str, str] | None = None, **settings: str) -> dict[str, str]:
        """``settings`` are more STEWARD_* variables, named without the prefix
        (``demo_delay="2"``); ``extra`` are other variables (PATH with fake tools first)."""
        env = {
            **self.base_env(),
            "PTB_TIMEDELTA": "true",
            "STEWARD_TELEGRAM_TOKEN": self.fake.token,
            "STEWARD_TELEGRAM_API_URL": self.fake.base_url,
            "STEWARD_TELEGRAM_RATE_LIMIT": "0",
            "STEWARD_ADMINS": ",".join(str(uid(user)) for user in ADMINS),
            "STEWARD_OPERATORS": str(uid(OLGA)),
            "STEWARD_VIEWERS": str(uid(VICTOR)),
        }
        env.update({f"STEWARD_{name.upper()}": value for name, value in settings.items()})
        env.update(extra or {})
        return env

    def start(
        self, *, ready: bool = True, extra: Mapping[str, str] | None = None, **settings: str
    ) -> BotProcess:
        """Start `steward run`; with ``ready``, wait until it long-polls the fake."""
        polls_before = self.fake.getupdates_count
        process = self.launch(self.env(extra, **settings))
        if ready:

            def polling(fake: FakeBotAPI) -> bool:
                if process.popen.poll() is not None:
                    raise AssertionError(
                        f"steward exited with {process.popen.returncode} before polling; "
                        f"stderr:\n{process.stderr}"
                    )
                # Polling starts while the database still opens; ready is when both are.
                return fake.getupdates_count > polls_before and "listening on" in process.stderr

            self.fake.wait_for(polling, timeout=START_TIMEOUT)
        return process


# -- reading the chat ---------------------------------------------------------------------


def wait_message(
    fake: FakeBotAPI, chat_id: int, contains: str, timeout: float = 10.0
) -> BotMessage:
    """The first message of the bot in a chat whose current text (or caption) contains it."""

    def found(api: FakeBotAPI) -> BotMessage | None:
        for message in api.messages(chat_id):
            text = message.text if message.document is None else message.caption
            if not message.deleted and contains in (text or ""):
                return message
        return None

    message = fake.wait_for(found, timeout=timeout)
    assert message is not None
    return message


def wait_prompt(fake: FakeBotAPI, chat_id: int, timeout: float = 10.0) -> BotMessage:
    """The newest message that shows buttons."""

    def found(api: FakeBotAPI) -> BotMessage | None:
        shown = [m for m in api.messages(chat_id) if m.buttons and not m.deleted]
        return shown[-1] if shown else None

    message = fake.wait_for(found, timeout=timeout)
    assert message is not None
    return message


def wait_answer(fake: FakeBotAPI, query_id: str, timeout: float = 10.0) -> CallbackAnswer:
    def found(api: FakeBotAPI) -> CallbackAnswer | None:
        return next((a for a in api.callback_answers if a.callback_query_id == query_id), None)

    answer = fake.wait_for(found, timeout=timeout)
    assert answer is not None
    return answer


def texts_with(fake: FakeBotAPI, chat_id: int, contains: str) -> list[str]:
    return [text for text in fake.texts(chat_id) if contains in text]


def button_data(message: BotMessage, label: str) -> str:
    data = next(b["callback_data"] for b in message.buttons if b["text"] == label)
    assert isinstance(data, str)
    return data
