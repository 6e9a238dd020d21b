"""Settings from ``STEWARD_*`` environment variables and ``.env``.

Every secret has a ``*_FILE`` twin (systemd credentials). A bad value stops the program with one
line that names the variable, and exit status 2.

Each field of ``Settings`` is read from ``STEWARD_<FIELD>`` and parsed according to its type; a
callable in ``Annotated[...]`` is the field's own parser. Adding a setting is adding a field.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from bot import config_shapes
from values import value

PREFIX = "STEWARD_"
DOTENV = Path(".env")

# Users only: negative ids are groups and channels, which must never hold a role.
_TELEGRAM_ID = re.compile(r"^[1-9]\d{0,19}$")
_MATRIX_ID = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
_COMMAND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_BOOLEANS = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}

_N = TypeVar("_N", int, float)
Parser = Callable[[str], object]


class ConfigError(Exception):
    """One line, naming the variable."""


class Secret:
    """A string that is never shown: not in ``repr``, ``str``, logs of the settings or errors."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash(self._value)


# -- parsers: raw text in, value out; ValueError with a short reason (never the value of a secret)


def _boolean(raw: str) -> bool:
    try:
        return _BOOLEANS[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"{raw!r} is not a boolean (true/false, 1/0, yes/no, on/off)") from None


def _number(kind: Callable[[str], _N], low: _N, high: _N) -> Callable[[str], _N]:
    def parse(raw: str) -> _N:
        try:
            value = kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ValueError(f"{raw!r} is not {what}") from None
        if not low <= value <= high:  # also refuses nan
            raise ValueError(f"{raw!r} is not between {low} and {high}")
        return value

    return parse


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            expected = ", ".join(repr(choice) for choice in choices)
            raise ValueError(f"{raw!r} is not one of {expected}")
        return raw

    return parse


def _split(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _user_ids(raw: str) -> tuple[str, ...]:
    items = _split(raw)
    for item in items:
        if not (_TELEGRAM_ID.fullmatch(item) or _MATRIX_ID.fullmatch(item)):
            raise ValueError(
                f"{item!r} is neither a Telegram numeric id nor a Matrix id (@name:server)"
            )
    return tuple(items)


_PERSON = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")


def _people(raw: str) -> tuple[tuple[str, str], ...]:
    """``alice=telegram:1,matrix:@alice:x;bob=telegram:2`` → (account key, person) pairs:
    the accounts one person has on several transports."""
    pairs: dict[str, str] = {}
    for entry in (item.strip() for item in raw.split(";") if item.strip()):
        person, _, accounts = entry.partition("=")
        person = person.strip()
        if not _PERSON.fullmatch(person):
            raise ValueError(f"{person!r} is not a person's name (a-z, 0-9, _ . -)")
        for account in _split(accounts):
            transport, _, user = account.partition(":")
            valid = _TELEGRAM_ID if transport == "telegram" else _MATRIX_ID
            if transport not in ("telegram", "matrix") or not valid.fullmatch(user):
                raise ValueError(f"{account!r} is not telegram:<id> or matrix:@name:server")
            if pairs.setdefault(account, person) != person:
                raise ValueError(f"{account!r} belongs to two people")
    return tuple(sorted(pairs.items()))


def _command_names(raw: str) -> frozenset[str]:
    items = [item.lstrip("/") for item in _split(raw)]
    for item in items:
        if not _COMMAND.fullmatch(item):
            raise ValueError(f"{item!r} is not a command name")
    return frozenset(items)


_WHEN = re.compile(r"^(daily|weekly|monthly)\s+([01]?\d|2[0-3]):([0-5]\d)$")


def parse_when(text: str) -> tuple[str, int, int]:
    """``"daily 03:30"`` → ``("daily", 3, 30)``; ValueError with the accepted form otherwise."""
    match = _WHEN.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError("say when as daily|weekly|monthly HH:MM, e.g. daily 03:30")
    return match.group(1), int(match.group(2)), int(match.group(3))


def _schedule(raw: str) -> str:
    every, hour, minute = parse_when(raw)
    return f"{every} {hour:02d}:{minute:02d}"


def _demo(raw: str) -> bool | str:
    """``1``/``true`` … the cloud demo, ``home`` the home-server demo, ``0`` none."""
    if raw.strip().lower() == "home":
        return "home"
    try:
        return _boolean(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a boolean or 'home'") from None


def _time_zone(raw: str) -> str:
    from zoneinfo import ZoneInfo  # noqa: PLC0415 - only when a zone is configured

    try:
        ZoneInfo(raw)
    except (ValueError, KeyError, OSError):
        # A folder of the zone database ("Europe") is an OSError when tzdata is installed.
        raise ValueError(f"unknown time zone {raw!r}") from None
    return raw


_STEWARD_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _steward_name(raw: str) -> str:
    name = raw.strip().lower()
    if not _STEWARD_NAME.fullmatch(name):
        raise ValueError(f"{raw!r} is not a short name (a-z, 0-9, - and _, at most 32)")
    return name


def host_name() -> str:
    """The host name as a Steward name: its first label, lower case, other characters as -."""
    import socket  # noqa: PLC0415 - only when no name is configured

    label = socket.gethostname().split(".", 1)[0].lower()
    name = re.sub(r"[^a-z0-9_-]", "-", label).strip("-_")[:32]
    return name or "steward"


def _ovh_endpoint(raw: str) -> str:
    if raw in {"ovh-eu", "ovh-ca", "ovh-us"} or re.fullmatch(r"https?://\S+", raw):
        return raw
    raise ValueError(f"{raw!r} is not ovh-eu, ovh-ca, ovh-us or an http(s) URL")


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _log_level(raw: str) -> str:
    return _one_of(get_args(LogLevel))(raw.upper())


UserIds = Annotated[tuple[str, ...], _user_ids]
Url = Annotated[str, config_shapes.url]
OptionalUrl = Annotated[str | None, config_shapes.url]
CommandNames = Annotated[frozenset[str], _command_names]

# Parsers by type, for fields without their own. Optional types use their inner type's.
_BY_TYPE: dict[object, Parser] = {str: str, Path: Path, bool: _boolean, Secret: Secret}


@value(kw_only=True)
class Settings:
    state_dir: Path = Path("state")
    database_url: str | None = None
    demo: Annotated[bool | Literal["home"], _demo] = False
    demo_delay: Annotated[float, _number(float, 0.0, 60.0)] = 0.3
    log_level: Annotated[LogLevel, _log_level] = "INFO"

    telegram_token: Secret | None = None
    telegram_api_url: Url = config_shapes.TELEGRAM_API_URL
    telegram_rate_limit: bool = True
    matrix_homeserver: OptionalUrl = None
    matrix_user: Annotated[str | None, config_shapes.matrix_user] = None
    matrix_password: Secret | None = None
    matrix_access_token: Secret | None = None
    matrix_e2ee: bool = False

    admins: UserIds = ()
    operators: UserIds = ()
    viewers: UserIds = ()
    two_person: CommandNames = frozenset()
    # Commands that ask for a confirmation though they destroy nothing (only `backup` does not
    # ask by default): STEWARD_CONFIRM=backup.
    confirm: CommandNames = frozenset()
    # Accounts of one person: they count once when a second admin must approve.
    people: Annotated[tuple[tuple[str, str], ...], _people] = ()
    confirm_ttl_seconds: Annotated[int, _number(int, 30, 3600)] = 300
    # Which confirmations need a TOTP code; unset: destructive ones once anyone has enrolled.
    totp: Annotated[str | None, _one_of(("off", "destructive", "all"))] = None
    totp_key: Secret | None = None  # seals the TOTP secrets in the database; from its _FILE

    timezone: Annotated[str | None, _time_zone] = None
    domain: str | None = None
    desired_state: Path | None = None
    catalogue: Path | None = None
    keep_minutes: Annotated[float, _number(float, 0.0, 1440.0)] = 10.0
    upgrade_flake: str | None = None
    # What the module's allowRootKeysFromChat says; root enforces it, the bot only tells.
    root_keys_from_chat: bool = False
    preview_build: bool = False
    rebuild_poll_seconds: Annotated[float, _number(float, 0.05, 60.0)] = 1.0

    server_provider: Literal["hetzner", "digitalocean", "scaleway", "ovh", "none"] = "none"
    hcloud_token: Secret | None = None
    hcloud_api_url: OptionalUrl = None
    hcloud_server: str | None = None
    digitalocean_token: Secret | None = None
    digitalocean_api_url: OptionalUrl = None
    digitalocean_droplet: str | None = None
    scaleway_access_key: Secret | None = None
    scaleway_secret_key: Secret | None = None
    scaleway_project_id: str | None = None
    scaleway_zone: str | None = None
    scaleway_server: str | None = None
    scaleway_api_url: OptionalUrl = None
    ovh_endpoint: Annotated[str, _ovh_endpoint] = "ovh-eu"  # or a URL (tests)
    ovh_application_key: Secret | None = None
    ovh_application_secret: Secret | None = None
    ovh_consumer_key: Secret | None = None
    ovh_project_id: str | None = None
    ovh_instance: str | None = None
    snapshot_before_upgrade: bool = False

    dns_provider: Literal["cloudflare", "rfc2136", "none"] = "none"
    cloudflare_token: Secret | None = None
    cloudflare_api_url: OptionalUrl = None
    rfc2136_server: str | None = None
    rfc2136_tsig_file: Path | None = None
    dns_zone: str | None = None
    public_ipv4: str | None = None
    public_ipv6: str | None = None
    dkim_file: Path | None = None
    dkim_selector: str = "selector"
    acme_dir: str = "/var/lib/acme"

    b2_key_id: Secret | None = None
    b2_key: Secret | None = None
    b2_bucket: str | None = None

    restic_repository: str | None = None
    restic_password_file: Path | None = None
    # A rest: or sftp: URL may hold a password: its file twin keeps it out of the Nix store.
    restic_repository_file: Path | None = None
    # KEY=VALUE lines for restic's backend (the AWS_* keys of S3 and B2), read from a file.
    restic_environment_file: Path | None = None
    # sftp: repositories: ssh checks the server's key against this file only, and may log in
    # with this key (restic 0.14 has no sftp.args: Steward builds its sftp.command).
    restic_known_hosts_file: Path | None = None
    restic_ssh_key_file: Path | None = None
    # Steward's own snapshot holds a copy of this folder (unset or missing: none).
    nixos_config_dir: Path | None = Path("/etc/nixos")
    backup_schedule: Annotated[str, _schedule] = "daily 03:30"
    keep_last: Annotated[int, _number(int, 0, 1000)] = 3
    keep_daily: Annotated[int, _number(int, 0, 1000)] = 7
    keep_weekly: Annotated[int, _number(int, 0, 1000)] = 4
    keep_monthly: Annotated[int, _number(int, 0, 1000)] = 6
    keep_yearly: Annotated[int, _number(int, 0, 1000)] = 1
    heartbeat_url: OptionalUrl = None
    # Back up and restore service data in the module's root units (steward-backup@ and
    # steward-restore@) instead of in the bot, which may not read that data.
    backup_units: bool = False
    # The root workers' own folder (journal of restores, database dumps, status for the bot);
    # unset: the state folder, for a bot that backs up itself.
    worker_dir: Path | None = None
    # Dumps of the catalogue's PostgreSQL databases go into each backup when a host is set.
    postgres_host: str | None = None
    postgres_port: Annotated[int, _number(int, 1, 65535)] = 5432
    postgres_user: str = "postgres"
    postgres_password_file: Path | None = None
    # One's own hardware (server_provider none): disks (smartctl), arrays (/proc/mdstat, zpool,
    # btrfs), a NUT UPS, and a dynamic public address that the DNS records follow.
    watch_hardware: bool = True
    health_dir: Path | None = None  # where the root steward-health unit records smartctl etc.
    mdstat_path: Path = Path("/proc/mdstat")
    ups: str | None = None  # upsc's name of the UPS, e.g. ups@localhost
    public_ip_url: OptionalUrl = None
    public_ip_interval_seconds: Annotated[int, _number(int, 60, 86400)] = 300
    dns_auto_follow_ip: bool = False
    report_schedule: Annotated[str, _schedule] = "daily 08:00"
    alert_interval_seconds: Annotated[int, _number(int, 60, 3600)] = 300
    # Several servers in one chat: this Steward's short name (default the host name), the
    # Steward whose heartbeat it watches, and how often it shows a sign of life to the others.
    name: Annotated[str | None, _steward_name] = None
    watch: Annotated[str | None, _steward_name] = None
    fleet_heartbeat_seconds: Annotated[int, _number(int, 1, 86400)] = 300

    # The *_FILE twins of the secrets: load_settings reads them, and the file wins.
    telegram_token_file: Path | None = None
    matrix_password_file: Path | None = None
    matrix_access_token_file: Path | None = None
    hcloud_token_file: Path | None = None
    digitalocean_token_file: Path | None = None
    scaleway_access_key_file: Path | None = None
    scaleway_secret_key_file: Path | None = None
    ovh_application_key_file: Path | None = None
    ovh_application_secret_file: Path | None = None
    ovh_consumer_key_file: Path | None = None
    cloudflare_token_file: Path | None = None
    b2_key_id_file: Path | None = None
    b2_key_file: Path | None = None
    totp_key_file: Path | None = None

    @property
    def work_dir(self) -> Path:
        return self.worker_dir or self.state_dir

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'steward.db'}"

    @property
    def confirm_ttl(self) -> timedelta:
        return timedelta(seconds=self.confirm_ttl_seconds)

    @property
    def steward_name(self) -> str:
        return self.name or host_name()

    @property
    def demo_home(self) -> bool:
        return self.demo == "home"

    @property
    def has_transport(self) -> bool:
        return self.telegram_token is not None or self.matrix_homeserver is not None


def _parser(hint: Any) -> Parser:
    if get_origin(hint) is Annotated:
        parse: Parser = hint.__metadata__[0]
        return parse
    if isinstance(hint, UnionType):  # X | None
        (hint,) = (arg for arg in get_args(hint) if arg is not NoneType)
    if get_origin(hint) is Literal:
        return _one_of(get_args(hint))
    return _BY_TYPE[hint]


_HINTS = get_type_hints(Settings, include_extras=True)
_PARSERS = {field.name: _parser(_HINTS[field.name]) for field in fields(Settings)}
SECRETS = tuple(name for name, hint in _HINTS.items() if hint == Secret | None)
VARIABLES = {PREFIX + name.upper() for name in _PARSERS}


def load_settings(**overrides: object) -> Settings:
    """Read the settings, or raise ``ConfigError`` with one line naming the variable.

    Sources, first wins: ``overrides`` (by field name), the environment, ``.env``. An empty value
    counts as unset.
    """
    if unknown := overrides.keys() - _PARSERS.keys():
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    given = {PREFIX + name.upper(): _text(value) for name, value in overrides.items()}
    return settings_from((given, os.environ, read_dotenv(DOTENV)))


def settings_from(sources: Sequence[Mapping[str, str | None]]) -> Settings:
    """The settings from ``sources``, the first that holds a variable winning."""
    if unknown := config_shapes.unknown_names(sources, VARIABLES):
        raise ConfigError(unknown)
    values: dict[str, Any] = {}
    for field, parse in _PARSERS.items():
        variable = PREFIX + field.upper()
        raw = next((found for source in sources if (found := source.get(variable))), None)
        if raw is None:
            continue
        try:
            values[field] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{variable}: {exc}") from None

    for name in SECRETS:
        if (path := values.get(f"{name}_file")) is not None:
            values[name] = Secret(_read_secret_file(f"{PREFIX}{name.upper()}_FILE", path))
    if (path := values.get("restic_repository_file")) is not None:
        values["restic_repository"] = _read_secret_file(f"{PREFIX}RESTIC_REPOSITORY_FILE", path)
    _check_tokens(values)
    return Settings(**values)


def _check_tokens(values: Mapping[str, Any]) -> None:
    """Each secret in its provider's shape; the error names where it came from, never it."""
    for name in SECRETS:
        secret = values.get(name)
        if not isinstance(secret, Secret):
            continue
        url_setting = config_shapes.api_url_setting(name)
        api_url = values.get(url_setting) if url_setting else None
        problem = config_shapes.token_problem(name, secret.get_secret_value(), api_url)
        if problem is not None:
            twin = "_FILE" if values.get(f"{name}_file") is not None else ""
            raise ConfigError(f"{PREFIX}{name.upper()}{twin}: {problem}")


RESTIC_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def restic_environment(settings: Settings) -> dict[str, str]:
    """The backend keys restic needs: from STEWARD_RESTIC_ENVIRONMENT_FILE when it is set (the
    NixOS module passes it as a credential), else from the process environment."""
    path = settings.restic_environment_file
    if path is None:
        return {key: value for key in RESTIC_KEYS if (value := os.environ.get(key))}
    if not path.is_file():
        raise ConfigError(f"{PREFIX}RESTIC_ENVIRONMENT_FILE: cannot read {path}")
    found = read_dotenv(path)
    if unknown := sorted(found.keys() - set(RESTIC_KEYS)):
        raise ConfigError(
            f"{PREFIX}RESTIC_ENVIRONMENT_FILE: {path} sets {', '.join(unknown)}; it may set "
            f"{', '.join(RESTIC_KEYS)} only"
        )
    return {key: value for key, value in found.items() if value}


# What each extra brings, by the module the adapter imports (pyproject.toml's extras).
EXTRA_MODULES = {
    "matrix": "nio",
    "matrix-e2ee": "vodozemac",
    "hetzner": "hcloud",
    "digitalocean": "pydo",
    "scaleway": "scaleway",
    "ovh": "ovh",
    "cloudflare": "cloudflare",
    "b2": "b2sdk",
}


def check_extras(settings: Settings) -> None:
    """A configured transport or provider whose extra is not installed stops the start in one
    line, before anything connects. ``find_spec`` looks without importing."""
    wanted: list[tuple[str, str]] = []
    if settings.matrix_homeserver is not None:
        wanted.append(("matrix", "STEWARD_MATRIX_HOMESERVER"))
        if settings.matrix_e2ee:
            wanted.append(("matrix-e2ee", "STEWARD_MATRIX_E2EE"))
    if settings.server_provider != "none":
        wanted.append(
            (settings.server_provider, f"STEWARD_SERVER_PROVIDER={settings.server_provider}")
        )
    if settings.dns_provider == "cloudflare":
        wanted.append(("cloudflare", "STEWARD_DNS_PROVIDER=cloudflare"))
    if settings.b2_key_id is not None:
        wanted.append(("b2", "STEWARD_B2_KEY_ID"))
    for extra, setting in wanted:
        if importlib.util.find_spec(EXTRA_MODULES[extra]) is None:
            raise ConfigError(
                f"{setting} needs Steward's {extra} extra, which is not installed: "
                f"pip install 'steward[{extra}]' (the NixOS module adds it by itself)"
            )


def _text(value: object) -> str | None:
    """An override as the text a variable would hold: the parsers then treat both alike."""
    if value is None:
        return None
    if isinstance(value, Secret):
        return value.get_secret_value()
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value)
    return str(value)


def _read_secret_file(variable: str, path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{variable}: cannot read {path}: {reason}") from None
    if not secret:
        raise ConfigError(f"{variable}: {path} is empty")
    return secret


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments, blank lines, ``export`` and quotes allowed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    variables = {}
    for line in text.splitlines():
        key, equals, value = line.strip().removeprefix("export ").partition("=")
        if key.startswith("#") or not equals:
            continue
        value = value.strip()
        if value[:1] in {"'", '"'} and value.count(value[0]) >= 2:
            value = value[1 : value.index(value[0], 1)]  # what follows the closing quote is ignored
        else:
            value = re.sub(r"\s+#.*", "", value)  # a comment after the value
        variables[key.strip()] = value
    return variables
