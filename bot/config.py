"""Settings from ``STEWARD_*`` environment variables and ``.env``.

Every secret has a ``*_FILE`` twin (systemd credentials). A bad value stops the program with one
line that names the variable, and exit status 2.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRETS = (
    "telegram_token",
    "matrix_password",
    "matrix_access_token",
    "hcloud_token",
    "cloudflare_token",
    "b2_key_id",
    "b2_key",
)
# Users only: negative ids are groups and channels, which must never hold a role.
_TELEGRAM_ID = re.compile(r"^[1-9]\d{0,19}$")
_MATRIX_ID = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
_COMMAND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

IdList = Annotated[tuple[str, ...], NoDecode]
NameList = Annotated[frozenset[str], NoDecode]


class ConfigError(Exception):
    """One line, naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STEWARD_",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    state_dir: Path = Path("state")
    database_url: str | None = None
    demo: bool = False
    demo_delay: float = Field(default=0.3, ge=0, le=60)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_rate_limit: bool = True
    matrix_homeserver: str | None = None
    matrix_user: str | None = None
    matrix_password: SecretStr | None = None
    matrix_access_token: SecretStr | None = None

    admins: IdList = ()
    operators: IdList = ()
    viewers: IdList = ()
    two_person: NameList = frozenset()
    confirm_ttl_seconds: int = Field(default=300, ge=30, le=3600)

    timezone: str | None = None
    domain: str | None = None
    desired_state: Path | None = None
    catalogue: Path | None = None

    server_provider: Literal["hetzner", "none"] = "none"
    hcloud_token: SecretStr | None = None
    hcloud_api_url: str | None = None
    hcloud_server: str | None = None

    dns_provider: Literal["cloudflare", "rfc2136", "none"] = "none"
    cloudflare_token: SecretStr | None = None
    cloudflare_api_url: str | None = None
    rfc2136_server: str | None = None
    rfc2136_tsig_file: Path | None = None

    b2_key_id: SecretStr | None = None
    b2_key: SecretStr | None = None
    b2_bucket: str | None = None

    restic_repository: str | None = None
    restic_password_file: Path | None = None
    heartbeat_url: str | None = None

    # The *_FILE twins. Reading them happens in the validator below.
    telegram_token_file: Path | None = None
    matrix_password_file: Path | None = None
    matrix_access_token_file: Path | None = None
    hcloud_token_file: Path | None = None
    cloudflare_token_file: Path | None = None
    b2_key_id_file: Path | None = None
    b2_key_file: Path | None = None

    @field_validator("admins", "operators", "viewers", mode="before")
    @classmethod
    def _ids(cls, value: object) -> tuple[str, ...]:
        items = _split(value)
        for item in items:
            if not (_TELEGRAM_ID.fullmatch(item) or _MATRIX_ID.fullmatch(item)):
                raise ValueError(
                    f"{item!r} is neither a Telegram numeric id nor a Matrix id (@name:server)"
                )
        return tuple(items)

    @field_validator("two_person", mode="before")
    @classmethod
    def _names(cls, value: object) -> frozenset[str]:
        items = [item.lstrip("/") for item in _split(value)]
        for item in items:
            if not _COMMAND.fullmatch(item):
                raise ValueError(f"{item!r} is not a command name")
        return frozenset(items)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo  # noqa: PLC0415

            try:
                ZoneInfo(value)
            except (ValueError, KeyError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        for name in SECRETS:
            path = getattr(self, f"{name}_file")
            if path is None:
                continue
            try:
                secret = Path(path).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise ValueError(f"{name}_file: cannot read {path}: {reason}") from None
            if not secret:
                raise ValueError(f"{name}_file: {path} is empty")
            object.__setattr__(self, name, SecretStr(secret))
        return self

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'steward.db'}"

    @property
    def confirm_ttl(self) -> timedelta:
        return timedelta(seconds=self.confirm_ttl_seconds)

    @property
    def has_transport(self) -> bool:
        return self.telegram_token is not None or self.matrix_homeserver is not None


def _split(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list | tuple | set | frozenset):
        return [str(item).strip() for item in value]
    raise ValueError("expected a comma-separated list")


def load_settings(**overrides: object) -> Settings:
    """Read the settings, or raise ``ConfigError`` with one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        field = ".".join(str(part) for part in error.get("loc", ()))
        if not field and ": " in message:  # model-level errors name their field first
            field, message = message.split(": ", 1)
        raise ConfigError(f"STEWARD_{field.upper()}: {message}") from None
