"""`steward doctor` on a real setup: the loopback Bot API, a real restic repository, files on
disk. One line a check, ✔ or ✘, and the fix for each ✘; exit 1 when anything failed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import TOKEN
from tests.support.fake_telegram import FakeBotAPI

WRONG_TOKEN = "7312045118:AAHx9fE2e-WrongOne_Q3zLmNp7rStUvWxYz0"


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as api:
        yield api


def doctor(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("STEWARD_")}
    (tmp_path / "state").mkdir(exist_ok=True)
    env.update({"STEWARD_STATE_DIR": str(tmp_path / "state"), "STEWARD_ADMINS": "1001"})
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "bot", "doctor"], capture_output=True, text=True, cwd=tmp_path,
        env=env, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def line(done: subprocess.CompletedProcess[str], name: str) -> str:
    (found,) = [text for text in done.stdout.splitlines() if text[2:].startswith(f"{name}:")]
    return found


def test_a_working_setup_passes_every_check(fake: FakeBotAPI, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    done = doctor(tmp_path, STEWARD_TELEGRAM_TOKEN_FILE=str(tmp_path / "token"),
                  STEWARD_TELEGRAM_API_URL=fake.base_url)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert line(done, "Telegram").startswith("✔ Telegram: the token works: the bot is @")
    assert line(done, "STEWARD_TELEGRAM_TOKEN_FILE").startswith("✔ ")
    assert line(done, "admins") == "✔ admins: 1 admin(s)"
    assert done.stdout.splitlines()[-1] == "All checks passed."
    assert TOKEN.partition(":")[2] not in done.stdout + done.stderr


def test_a_wrong_token_and_a_missing_secret_file_are_reported_with_their_fix(
    fake: FakeBotAPI, tmp_path: Path
) -> None:
    done = doctor(
        tmp_path, STEWARD_TELEGRAM_TOKEN=WRONG_TOKEN, STEWARD_TELEGRAM_API_URL=fake.base_url,
        STEWARD_B2_KEY_FILE=str(tmp_path / "missing"),
    )  # fmt: skip
    assert done.returncode == 1
    telegram = line(done, "Telegram")
    assert telegram.startswith("✘ Telegram: the credentials are refused (401 Unauthorized).")
    assert "Fix: ask @BotFather" in telegram
    missing = line(done, "STEWARD_B2_KEY_FILE")
    assert missing.startswith(f"✘ STEWARD_B2_KEY_FILE: cannot read {tmp_path / 'missing'}: ")
    assert "Fix: put the secret in the file services.steward.b2KeyFile names" in missing
    assert WRONG_TOKEN.partition(":")[2] not in done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "2 check(s) failed."


def test_every_bad_setting_is_a_line_and_the_rest_is_still_checked(
    fake: FakeBotAPI, tmp_path: Path
) -> None:
    done = doctor(
        tmp_path, STEWARD_ADMIN="1", STEWARD_MATRIX_USER="steward", STEWARD_ADMINS="",
        STEWARD_TELEGRAM_TOKEN=TOKEN, STEWARD_TELEGRAM_API_URL=fake.base_url,
    )  # fmt: skip
    assert done.returncode == 1
    assert "did you mean STEWARD_ADMINS?" in line(done, "STEWARD_ADMIN")
    assert "@name:server" in line(done, "STEWARD_MATRIX_USER")
    assert line(done, "admins").startswith("✘ admins: no admin is set")
    assert line(done, "Telegram").startswith("✔ ")


def test_the_restic_repository_is_opened_with_its_password(tmp_path: Path) -> None:
    repository, password = tmp_path / "repo", tmp_path / "restic-password"
    password.write_text("right\n", encoding="utf-8")
    subprocess.run(["restic", "init", "--repo", str(repository), "--password-file", str(password)],
                   capture_output=True, check=True, timeout=60)  # fmt: skip
    ok = doctor(tmp_path, STEWARD_RESTIC_REPOSITORY=str(repository),
                STEWARD_RESTIC_PASSWORD_FILE=str(password))  # fmt: skip
    assert line(ok, "restic").startswith("✔ restic: the repository")
    password.write_text("wrong\n", encoding="utf-8")
    bad = doctor(tmp_path, STEWARD_RESTIC_REPOSITORY=str(repository),
                 STEWARD_RESTIC_PASSWORD_FILE=str(password))  # fmt: skip
    assert bad.returncode == 1
    assert line(bad, "restic").startswith("✘ restic: the repository")
    assert "Fix: check STEWARD_RESTIC_REPOSITORY" in line(bad, "restic")


def test_doctor_is_not_imported_by_the_running_bot() -> None:
    probe = (
        "import sys, bot.cli; print('bot.doctor' in sys.modules, 'urllib.request' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=30)  # fmt: skip
    assert done.stdout.split()[0] == "False"
