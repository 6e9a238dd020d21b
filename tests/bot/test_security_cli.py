"""`steward totp …` and `steward lockdown …` on the shell, and the start-up checks of TOTP."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select

from bot import security_cli
from bot.app import build_guard
from bot.config import ConfigError, load_settings
from bot.storage.database import Database
from bot.storage.models import audit_log, totp_secrets
from bot.storage.stores import SqlKeyValue
from bot.storage.totp_store import SqlTotpStore
from bot.totp import SecretBox, TotpFactor
from handlers.core.guard import TotpMode

ADMIN = "1001"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "totp.key"
    path.write_text(base64.b64encode(bytes(range(32))).decode())
    return path


def test_enrol_prints_a_qr_code_and_a_uri_and_stores_the_secret_sealed(
    tmp_path: Path, key: Path
) -> None:
    out = io.StringIO()
    settings = load_settings(state_dir=tmp_path / "state", admins=ADMIN, totp_key_file=key)
    assert security_cli.totp(settings, "enroll", ADMIN, out) == 0

    printed = out.getvalue()
    assert "█" in printed
    uri = re.search(r"otpauth://totp/\S+", printed)
    assert uri is not None
    secret = re.search(r"secret=([A-Z2-7]+)", uri.group(0))
    assert secret is not None
    db = Database(settings.database)
    try:
        with db.transaction() as conn:
            (sealed,) = conn.execute(select(totp_secrets.c.user_key, totp_secrets.c.secret)).all()
            rows = conn.execute(select(audit_log.c.command, audit_log.c.args)).all()
        assert sealed[0] == "telegram:1001"
        assert secret.group(1) not in sealed[1]
        assert SecretBox.from_text(key.read_text()).open(sealed[1], sealed[0]) == secret.group(1)
        assert rows == [("totp enroll", '["1001"]')]
        assert not any(secret.group(1) in str(row) for row in rows)
        factor = TotpFactor(SqlTotpStore(db), SecretBox.from_text(key.read_text()))
        now = datetime.now(UTC)
        code = pyotp.TOTP(secret.group(1)).at(now)
        assert asyncio.run(factor.verify("telegram:1001", code, now)) == "ok"
    finally:
        db.dispose()


def test_only_admins_enrol_and_only_with_a_key(tmp_path: Path, key: Path) -> None:
    with pytest.raises(ConfigError, match="not in STEWARD_ADMINS"):
        security_cli.totp(load_settings(admins=ADMIN, totp_key_file=key,
                                        state_dir=tmp_path), "enroll", "2002")  # fmt: skip
    with pytest.raises(ConfigError, match="STEWARD_TOTP_KEY_FILE: needed to enrol"):
        security_cli.totp(load_settings(admins=ADMIN, state_dir=tmp_path), "enroll", ADMIN)
    with pytest.raises(ConfigError, match="give a Telegram numeric id"):
        security_cli.totp(load_settings(admins=ADMIN, state_dir=tmp_path), "enroll", "alice")
    bad = tmp_path / "bad.key"
    bad.write_text("too short")
    with pytest.raises(ConfigError, match="32 random bytes"):
        security_cli.totp(load_settings(admins=ADMIN, totp_key_file=bad, state_dir=tmp_path),
                          "enroll", ADMIN)  # fmt: skip


def test_lockdown_from_the_shell_is_stored_and_audited(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path)
    out = io.StringIO()
    assert security_cli.lockdown(settings, "on", out) == 0
    assert security_cli.lockdown(settings, "status", out) == 0
    assert security_cli.lockdown(settings, "off", out) == 0
    assert security_cli.lockdown(settings, "status", out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "Lock-down is on."
    assert lines[1].startswith("Lock-down is on (by ")
    assert lines[2:] == ["Lock-down is off.", "Lock-down is off."]
    db = Database(settings.database)
    try:
        with db.transaction() as conn:
            rows = conn.execute(select(audit_log.c.event, audit_log.c.command)).all()
    finally:
        db.dispose()
    assert rows == [("security", "lockdown on"), ("security", "lockdown off")]


def test_codes_asked_for_with_no_key_to_check_them_stop_the_start(
    tmp_path: Path, key: Path
) -> None:
    settings = load_settings(state_dir=tmp_path, admins=ADMIN, totp_key_file=key)
    security_cli.totp(settings, "enroll", ADMIN, io.StringIO())
    db = Database(settings.database)
    try:
        kv = SqlKeyValue(db)
        keyless = load_settings(state_dir=tmp_path, admins=ADMIN)
        with pytest.raises(ConfigError, match="STEWARD_TOTP_KEY_FILE: needed, admins have"):
            build_guard(keyless, db, kv)
        with pytest.raises(ConfigError, match="STEWARD_TOTP=all: needs STEWARD_TOTP_KEY_FILE"):
            build_guard(load_settings(state_dir=tmp_path, totp="all"), db, kv)
        assert build_guard(load_settings(state_dir=tmp_path, totp="off"), db, kv).factor is None
        guard = build_guard(settings, db, kv)
        assert guard.factor is not None
        assert asyncio.run(guard.mode()) is TotpMode.DESTRUCTIVE
    finally:
        db.dispose()
