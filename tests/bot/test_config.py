"""Settings from STEWARD_* variables and .env; a bad value is one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import SECRETS, ConfigError, Secret, Settings, load_settings

SECRET = "7001:AAE-very-secret-token"
HCLOUD_TOKEN = "Hc" * 32  # the shape of a Hetzner Cloud token


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No STEWARD_* variable and no .env from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("STEWARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _error(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return str(caught.value)


# -- defaults ---------------------------------------------------------------------------------


def test_without_any_variable_the_defaults_apply() -> None:
    settings = load_settings()
    assert settings.state_dir == Path("state")
    assert settings.database == f"sqlite:///{Path('state') / 'steward.db'}"
    assert settings.demo is False
    assert settings.admins == ()
    assert settings.operators == ()
    assert settings.viewers == ()
    assert settings.two_person == frozenset()
    assert settings.timezone is None
    assert settings.telegram_token is None
    assert settings.telegram_api_url == "https://api.telegram.org/bot"
    assert settings.server_provider == "none"
    assert settings.dns_provider == "none"
    assert settings.confirm_ttl == timedelta(minutes=5)
    assert settings.has_transport is False


def test_the_database_url_defaults_to_sqlite_in_the_state_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STEWARD_STATE_DIR", str(tmp_path / "st"))
    assert load_settings().database == f"sqlite:///{tmp_path / 'st' / 'steward.db'}"
    monkeypatch.setenv("STEWARD_DATABASE_URL", "postgresql+psycopg://steward@/steward")
    assert load_settings().database == "postgresql+psycopg://steward@/steward"


def test_demo_is_switched_on_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_DEMO", "1")
    assert load_settings().demo is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("ON", True), ("yes", True), ("False", False), ("off", False), ("0", False)],
)
def test_a_boolean_takes_the_usual_words(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("STEWARD_TELEGRAM_RATE_LIMIT", value)
    assert load_settings().telegram_rate_limit is expected


def test_a_bad_boolean_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _error(monkeypatch, "STEWARD_DEMO", "maybe").startswith("STEWARD_DEMO: 'maybe' ")


def test_the_log_level_is_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"
    assert _error(monkeypatch, "STEWARD_LOG_LEVEL", "trace").startswith("STEWARD_LOG_LEVEL: ")


def test_demo_home_is_the_home_server_demo_and_a_typo_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEWARD_DEMO", "Home")
    assert load_settings().demo == "home"
    assert load_settings().demo_home
    monkeypatch.setenv("STEWARD_DEMO", "yes")
    assert load_settings().demo is True
    assert not load_settings().demo_home
    monkeypatch.setenv("STEWARD_DEMO", "hom")
    with pytest.raises(ConfigError, match=r"^STEWARD_DEMO: 'hom' is not a boolean or 'home'$"):
        load_settings()


def test_the_public_ip_check_runs_every_minute_to_every_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEWARD_PUBLIC_IP_INTERVAL_SECONDS", "30")
    with pytest.raises(ConfigError, match="STEWARD_PUBLIC_IP_INTERVAL_SECONDS"):
        load_settings()
    monkeypatch.setenv("STEWARD_PUBLIC_IP_INTERVAL_SECONDS", "600")
    monkeypatch.setenv("STEWARD_DNS_AUTO_FOLLOW_IP", "1")
    settings = load_settings()
    assert settings.public_ip_interval_seconds == 600
    assert settings.dns_auto_follow_ip


@pytest.mark.parametrize("value", ["-1", "61", "nan", "inf", "fast"])
def test_the_demo_delay_is_a_number_from_0_to_60(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    assert _error(monkeypatch, "STEWARD_DEMO_DELAY", value).startswith("STEWARD_DEMO_DELAY: ")
    monkeypatch.setenv("STEWARD_DEMO_DELAY", "0.5")
    assert load_settings().demo_delay == 0.5


@pytest.mark.parametrize("value", ["3601", "1e2", "five"])
def test_the_confirmation_time_is_a_whole_number_from_30_to_3600(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = _error(monkeypatch, "STEWARD_CONFIRM_TTL_SECONDS", value)
    assert message.startswith("STEWARD_CONFIRM_TTL_SECONDS: ")
    monkeypatch.setenv("STEWARD_CONFIRM_TTL_SECONDS", "30")
    assert load_settings().confirm_ttl == timedelta(seconds=30)


# -- id lists ---------------------------------------------------------------------------------


def test_admins_take_telegram_ids_and_matrix_ids_separated_by_commas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEWARD_ADMINS", "123, @alice:example.org")
    monkeypatch.setenv("STEWARD_OPERATORS", "1001234,@bob:matrix.example.org:8448,")
    settings = load_settings()
    assert settings.admins == ("123", "@alice:example.org")
    assert settings.operators == ("1001234", "@bob:matrix.example.org:8448")


def test_an_empty_id_list_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_VIEWERS", "")
    assert load_settings().viewers == ()


@pytest.mark.parametrize(
    "value", ["123, alice", "@alice", "12 34", "alice@example.org", "1.5", "-1001234"]
)
def test_a_bad_id_list_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = _error(monkeypatch, "STEWARD_ADMINS", value)
    assert message.startswith("STEWARD_ADMINS: ")
    assert "neither a Telegram numeric id nor a Matrix id" in message
    assert "\n" not in message


def test_a_bad_viewer_list_names_its_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _error(monkeypatch, "STEWARD_VIEWERS", "@nobody").startswith("STEWARD_VIEWERS: ")


# -- secrets and their *_FILE twins -----------------------------------------------------------


def test_a_secret_file_becomes_the_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {SECRET}\n", encoding="utf-8")
    monkeypatch.setenv("STEWARD_TELEGRAM_TOKEN_FILE", str(token_file))
    settings = load_settings()
    assert settings.telegram_token is not None
    assert settings.telegram_token.get_secret_value() == SECRET
    assert settings.has_transport is True


def test_the_secret_from_a_file_is_not_shown_in_the_settings_repr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "b2").write_text(SECRET, encoding="utf-8")
    monkeypatch.setenv("STEWARD_B2_KEY_FILE", str(tmp_path / "b2"))
    monkeypatch.setenv("STEWARD_HCLOUD_TOKEN", HCLOUD_TOKEN)
    settings = load_settings()
    assert settings.b2_key is not None
    assert settings.b2_key.get_secret_value() == SECRET
    for shown in (repr(settings), str(settings)):
        assert SECRET not in shown
        assert HCLOUD_TOKEN not in shown


def test_the_file_twin_wins_over_the_plain_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "password").write_text("from-the-file\n", encoding="utf-8")
    monkeypatch.setenv("STEWARD_MATRIX_PASSWORD", "from-the-variable")
    monkeypatch.setenv("STEWARD_MATRIX_PASSWORD_FILE", str(tmp_path / "password"))
    password = load_settings().matrix_password
    assert password is not None
    assert password.get_secret_value() == "from-the-file"


def test_a_missing_secret_file_is_refused_naming_the_file_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-token"
    message = _error(monkeypatch, "STEWARD_TELEGRAM_TOKEN_FILE", str(missing))
    assert message.startswith("STEWARD_TELEGRAM_TOKEN_FILE: ")
    assert "cannot read" in message
    assert "No such file or directory" in message


def test_an_unreadable_secret_file_does_not_leak_its_content(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xff\xfe" + SECRET.encode())
    message = _error(monkeypatch, "STEWARD_TELEGRAM_TOKEN_FILE", str(token_file))
    assert message.startswith("STEWARD_TELEGRAM_TOKEN_FILE: ")
    assert "not UTF-8 text" in message
    assert SECRET not in message
    assert "AAE" not in message


def test_a_secret_file_that_is_a_folder_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = _error(monkeypatch, "STEWARD_CLOUDFLARE_TOKEN_FILE", str(tmp_path))
    assert message.startswith("STEWARD_CLOUDFLARE_TOKEN_FILE: cannot read ")


def test_an_empty_secret_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    message = _error(monkeypatch, "STEWARD_HCLOUD_TOKEN_FILE", str(tmp_path / "empty"))
    assert message.startswith("STEWARD_HCLOUD_TOKEN_FILE: ")
    assert "is empty" in message


def test_a_secret_is_never_shown_and_compares_by_value() -> None:
    secret = Secret(SECRET)
    assert secret.get_secret_value() == SECRET
    assert repr(secret) == "Secret('**********')"
    assert SECRET not in str(secret)
    assert SECRET not in f"{secret}"
    assert secret == Secret(SECRET)
    assert secret != Secret("other")
    assert secret != SECRET


def test_every_secret_has_a_file_twin() -> None:
    assert "telegram_token" in SECRETS
    names = set(Settings.__dataclass_fields__)
    for name in SECRETS:
        assert f"{name}_file" in names


def test_settings_cannot_be_changed() -> None:
    settings = load_settings()
    with pytest.raises(AttributeError):
        settings.demo = True  # type: ignore[misc]


# -- time zone and two-person commands --------------------------------------------------------


def test_a_known_time_zone_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_TIMEZONE", "Europe/Berlin")
    assert load_settings().timezone == "Europe/Berlin"


@pytest.mark.parametrize("value", ["Mars/Olympus_Mons", "Europe", "../etc/passwd", "/etc/passwd"])
def test_an_unknown_time_zone_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = _error(monkeypatch, "STEWARD_TIMEZONE", value)
    assert message.startswith("STEWARD_TIMEZONE: unknown time zone")


def test_two_person_takes_command_names_with_or_without_a_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEWARD_TWO_PERSON", "restore, /reboot,restart")
    assert load_settings().two_person == frozenset({"restore", "reboot", "restart"})


@pytest.mark.parametrize("value", ["Restore", "re store", "!reboot", "rm -rf"])
def test_two_person_refuses_what_is_not_a_command_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = _error(monkeypatch, "STEWARD_TWO_PERSON", value)
    assert message.startswith("STEWARD_TWO_PERSON: ")
    assert "is not a command name" in message


def test_confirm_is_empty_by_default_and_names_commands_that_ask_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().confirm == frozenset()
    monkeypatch.setenv("STEWARD_CONFIRM", "backup")
    assert load_settings().confirm == frozenset({"backup"})


def test_a_bad_number_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _error(monkeypatch, "STEWARD_CONFIRM_TTL_SECONDS", "5").startswith(
        "STEWARD_CONFIRM_TTL_SECONDS: "
    )


def test_a_provider_outside_the_known_ones_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _error(monkeypatch, "STEWARD_DNS_PROVIDER", "route53").startswith(
        "STEWARD_DNS_PROVIDER: "
    )


# -- .env -------------------------------------------------------------------------------------


def test_variables_are_read_from_dot_env_in_the_working_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "# local settings\nSTEWARD_ADMINS=42,@root:example.org\nSTEWARD_DOMAIN=example.org\n",
        encoding="utf-8",
    )
    settings = load_settings()
    assert settings.admins == ("42", "@root:example.org")
    assert settings.domain == "example.org"


def test_the_environment_wins_over_dot_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STEWARD_DOMAIN=from-dotenv.org\n", encoding="utf-8")
    monkeypatch.setenv("STEWARD_DOMAIN", "from-env.org")
    assert load_settings().domain == "from-env.org"


def test_a_bad_value_in_dot_env_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STEWARD_ADMINS=alice\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^STEWARD_ADMINS: "):
        load_settings()


def test_dot_env_takes_export_quotes_comments_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "\n".join(
            [
                "  # a comment",
                "",
                "export STEWARD_DOMAIN=example.org",
                "STEWARD_MATRIX_USER = '@steward:example.org'",
                'STEWARD_HEARTBEAT_URL="https://hc-ping.com/a b#c"  # the ping',
                "STEWARD_TELEGRAM_API_URL=http://localhost/bot#x  # a comment after the value",
                "STEWARD_DEMO=1",
                "not a variable",
                "OTHER_THING=ignored",
            ]
        ),
        encoding="utf-8",
    )
    settings = load_settings()
    assert settings.domain == "example.org"
    assert settings.matrix_user == "@steward:example.org"
    assert settings.heartbeat_url == "https://hc-ping.com/a b#c"
    assert settings.telegram_api_url == "http://localhost/bot#x"
    assert settings.demo is True


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STEWARD_DOMAIN=from-dotenv.org\n", encoding="utf-8")
    monkeypatch.setenv("STEWARD_DOMAIN", "")
    monkeypatch.setenv("STEWARD_TELEGRAM_TOKEN", "")
    settings = load_settings()
    assert settings.domain == "from-dotenv.org"
    assert settings.telegram_token is None


def test_a_dot_env_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"STEWARD_TELEGRAM_TOKEN=\xff" + SECRET.encode())
    with pytest.raises(ConfigError, match=r"^\.env: ") as caught:
        load_settings()
    assert SECRET not in str(caught.value)


def test_overrides_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STEWARD_DOMAIN", "from-env.org")
    monkeypatch.setenv("STEWARD_DEMO", "0")
    settings = load_settings(
        domain="override.org", demo=True, state_dir=tmp_path, admins=["1", "@a:b.c"]
    )
    assert settings.domain == "override.org"
    assert settings.demo is True
    assert settings.state_dir == tmp_path
    assert settings.admins == ("1", "@a:b.c")
    with pytest.raises(ConfigError, match=r"^STEWARD_VIEWERS: "):
        load_settings(viewers="nobody")
    with pytest.raises(TypeError, match="no_such_setting"):
        load_settings(no_such_setting=1)


def test_loading_the_settings_does_not_import_pydantic() -> None:
    probe = "import sys, bot.config; print(sorted(m for m in sys.modules if 'pydantic' in m))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30
    )
    assert done.stdout.strip() == "[]"


# -- the program ------------------------------------------------------------------------------


def _steward(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("STEWARD_")}
    env["STEWARD_STATE_DIR"] = str(tmp_path / "state")
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "bot", "console", "--demo"],
        input="/status\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=30,
        check=False,
    )


def test_the_program_stops_with_status_2_and_one_line_on_a_bad_admin_list(tmp_path: Path) -> None:
    done = _steward(tmp_path, STEWARD_ADMINS="123, bob")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("steward: STEWARD_ADMINS: ")
    assert "'bob'" in lines[0]
    assert done.stdout == ""


def test_the_program_stops_with_status_2_on_an_unknown_two_person_command(
    tmp_path: Path,
) -> None:
    done = _steward(tmp_path, STEWARD_TWO_PERSON="nosuchcommand")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("steward: STEWARD_TWO_PERSON: ")
    assert "nosuchcommand" in lines[0]
    assert done.stdout == ""


MISSING_EXTRA_PROBE = """
import sys
sys.modules[sys.argv[1]] = None  # as if its extra were not installed
from bot.cli import main
raise SystemExit(main(["run"]))
"""


MATRIX = {"STEWARD_MATRIX_HOMESERVER": "http://127.0.0.1:9", "STEWARD_MATRIX_USER": "@s:localhost",
          "STEWARD_MATRIX_PASSWORD": "x"}  # fmt: skip


@pytest.mark.parametrize(
    ("module", "env", "setting", "extra"),
    [
        ("nio", MATRIX, "STEWARD_MATRIX_HOMESERVER", "matrix"),
        ("vodozemac", {**MATRIX, "STEWARD_MATRIX_E2EE": "1"}, "STEWARD_MATRIX_E2EE",
         "matrix-e2ee"),
        ("hcloud", {"STEWARD_SERVER_PROVIDER": "hetzner", "STEWARD_HCLOUD_TOKEN": HCLOUD_TOKEN},
         "STEWARD_SERVER_PROVIDER=hetzner", "hetzner"),
        ("pydo", {"STEWARD_SERVER_PROVIDER": "digitalocean"},
         "STEWARD_SERVER_PROVIDER=digitalocean", "digitalocean"),
        ("cloudflare", {"STEWARD_DNS_PROVIDER": "cloudflare"}, "STEWARD_DNS_PROVIDER=cloudflare",
         "cloudflare"),
    ],
    ids=["matrix", "matrix-e2ee", "hetzner", "digitalocean", "cloudflare"],
)  # fmt: skip
def test_a_configured_sdk_that_is_not_installed_stops_the_start_in_one_line(
    tmp_path: Path, module: str, env: dict[str, str], setting: str, extra: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    variables = {**clean, "STEWARD_STATE_DIR": str(tmp_path), "STEWARD_TELEGRAM_TOKEN": "1:x",
                 "STEWARD_TELEGRAM_API_URL": "http://127.0.0.1:9/bot", **env}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", MISSING_EXTRA_PROBE, module],
        capture_output=True, text=True, env=variables, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"steward: {setting} needs Steward's {extra} extra, which is not installed: "
        f"pip install 'steward[{extra}]' (the NixOS module adds it by itself)"
    ]
    assert not (tmp_path / "steward.db").exists()  # nothing started


def test_people_link_accounts_and_an_account_belongs_to_one_person(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEWARD_PEOPLE", "alice=telegram:1, matrix:@alice:x;bob=telegram:2")
    assert load_settings().people == (
        ("matrix:@alice:x", "alice"), ("telegram:1", "alice"), ("telegram:2", "bob"),
    )  # fmt: skip
    assert "belongs to two people" in _error(
        monkeypatch, "STEWARD_PEOPLE", "alice=telegram:1;bob=telegram:1"
    )
    for bad in ("alice=matrix:alice", "Alice!=telegram:1", "alice=telegram:-5", "alice=irc:x"):
        assert "STEWARD_PEOPLE" in _error(monkeypatch, "STEWARD_PEOPLE", bad)
