"""`steward run` checks every setting before it starts: each mistake a new user makes stops it
with exit 2 and one line that names the variable. Also --version and a plain --help."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import bot

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = "replace-me"


def steward(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("STEWARD_")}
    env["STEWARD_STATE_DIR"] = str(tmp_path / "state")
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "bot", *(args or ("run",))],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=30, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


TELEGRAM = {"STEWARD_TELEGRAM_TOKEN": "123456:" + "A" * 35}


@pytest.mark.parametrize(
    ("variables", "named", "says"),
    [
        ({"STEWARD_MATRIX_HOMESERVER": "m.example.org"}, "STEWARD_MATRIX_HOMESERVER",
         "needs http:// or https://"),
        ({**TELEGRAM, "STEWARD_TELEGRAM_API_URL": "api.telegram.org/bot"},
         "STEWARD_TELEGRAM_API_URL", "is not a URL"),
        ({"STEWARD_MATRIX_USER": "steward"}, "STEWARD_MATRIX_USER", "@name:server"),
        ({"STEWARD_ADMIN": "1"}, "STEWARD_ADMIN", "did you mean STEWARD_ADMINS?"),
        ({"STEWARD_TELEGRAM_TOKNE": "1"}, "STEWARD_TELEGRAM_TOKNE",
         "did you mean STEWARD_TELEGRAM_TOKEN?"),
        ({"STEWARD_TELEGRAM_TOKEN": PLACEHOLDER}, "STEWARD_TELEGRAM_TOKEN", "placeholder"),
        ({"STEWARD_TELEGRAM_TOKEN": "123456-notatoken"}, "STEWARD_TELEGRAM_TOKEN",
         "from @BotFather"),
        ({"STEWARD_HCLOUD_TOKEN": "short-token"}, "STEWARD_HCLOUD_TOKEN", "64 letters"),
        ({"STEWARD_DIGITALOCEAN_TOKEN": "abc"}, "STEWARD_DIGITALOCEAN_TOKEN", "dop_v1_"),
        ({"STEWARD_CLOUDFLARE_TOKEN": "abc"}, "STEWARD_CLOUDFLARE_TOKEN", "40 letters"),
        ({"STEWARD_HEARTBEAT_URL": "hc-ping.com/x"}, "STEWARD_HEARTBEAT_URL", "is not a URL"),
    ],
    ids=["homeserver", "telegram-url", "matrix-user", "admin", "typo", "placeholder",
         "telegram-shape", "hcloud", "digitalocean", "cloudflare", "heartbeat"],
)  # fmt: skip
def test_each_bad_setting_stops_the_start_with_one_line_and_exit_2(
    tmp_path: Path, variables: dict[str, str], named: str, says: str
) -> None:
    done = steward(tmp_path, **variables)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"steward: {named}: "), line
    assert says in line
    assert done.stdout == ""
    assert not (tmp_path / "state").exists()  # nothing started


def test_a_placeholder_token_in_its_file_names_the_file_variable_and_never_the_value(
    tmp_path: Path,
) -> None:
    (tmp_path / "token").write_text("your-token-here\n", encoding="utf-8")
    done = steward(tmp_path, STEWARD_TELEGRAM_TOKEN_FILE=str(tmp_path / "token"))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("steward: STEWARD_TELEGRAM_TOKEN_FILE: ")
    assert "your-token-here" not in line


def test_a_token_shaped_as_its_provider_issues_it_is_accepted(tmp_path: Path) -> None:
    done = steward(
        tmp_path, "console", "--demo",
        STEWARD_HCLOUD_TOKEN="aZ09" * 16, STEWARD_CLOUDFLARE_TOKEN="A-_b" * 10,
        STEWARD_DIGITALOCEAN_TOKEN="dop_v1_" + "0f" * 32,
        STEWARD_MATRIX_USER="@steward:example.org",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_version_prints_the_packages_version(tmp_path: Path) -> None:
    done = steward(tmp_path, "--version")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert done.returncode == 0
    assert done.stdout == f"steward {project['version']}\n"
    assert bot.__version__ == project["version"]


def test_help_is_plain_text_and_lists_doctor(tmp_path: Path) -> None:
    done = steward(tmp_path, "--help")
    assert done.returncode == 0
    assert "doctor" in done.stdout
    assert "--version" in done.stdout
    for markup in ("``", "<b>", "<code>", "**"):
        assert markup not in done.stdout
