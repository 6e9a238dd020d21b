"""The second factor: TOTP (RFC 6238, with pyotp) for admins, secrets sealed at rest.

Secrets are sealed with AES-256-GCM (pycryptodome) under a key read from
STEWARD_TOTP_KEY_FILE, a systemd credential: a copy of the database alone holds no usable
secret. The associated data binds each sealed secret to its user, so moving a row from one
user to another in the database does not move the second factor with it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
from datetime import datetime
from typing import Any

import pyotp

from bot.config import ConfigError
from bot.storage.totp_store import SqlTotpStore
from handlers.core.guard import FAILURE_WINDOW, CodeCheck

ISSUER = "Steward"
_SEALED = "v1."
_CODE = re.compile(r"\d{6}")


class SecretBox:
    """AES-256-GCM with a random 96-bit nonce per sealing; ``user`` is the associated data.

    pycryptodome, not ``cryptography``: python-telegram-bot imports ``cryptography`` at start
    whenever it is installed (for Telegram Passport), which costs every bot about 8 MB."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the key must be 32 bytes")
        self._key = key

    @classmethod
    def from_text(cls, text: str) -> SecretBox:
        """The key file holds 32 random bytes in base64: ``openssl rand -base64 32``."""
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ConfigError(
                "STEWARD_TOTP_KEY_FILE: must hold 32 random bytes in base64 "
                "(openssl rand -base64 32)"
            )
        return cls(key)

    def seal(self, secret: str, user: str) -> str:
        nonce = os.urandom(12)
        sealed, tag = self._cipher(nonce, user).encrypt_and_digest(secret.encode())
        return _SEALED + base64.urlsafe_b64encode(nonce + sealed + tag).decode()

    def open(self, sealed: str, user: str) -> str:
        """Raises ``ValueError`` for another key or another user (the tag does not match)."""
        raw = base64.urlsafe_b64decode(sealed.removeprefix(_SEALED))
        plain: bytes = self._cipher(raw[:12], user).decrypt_and_verify(raw[12:-16], raw[-16:])
        return plain.decode()

    def _cipher(self, nonce: bytes, user: str) -> Any:
        # Imported only with TOTP set up.
        from Crypto.Cipher import AES  # noqa: PLC0415

        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=16)
        cipher.update(_aad(user))
        return cipher


def _aad(user: str) -> bytes:
    return f"steward-totp:{user}".encode()


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code ``code`` is, within one step either side of ``now``."""
    if not _CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for offset in (-1, 0, 1):
        if hmac.compare_digest(totp.at(now, counter_offset=offset), code):
            return current + offset
    return None


class TotpFactor:
    """``SecondFactor`` on the database and a sealed-secret box."""

    def __init__(self, store: SqlTotpStore, box: SecretBox) -> None:
        self.store = store
        self.box = box

    async def enrolled(self, user: str) -> bool:
        return await self.store.get(user) is not None

    async def anyone_enrolled(self) -> bool:
        return await self.store.count() > 0

    async def verify(self, user: str, code: str, now: datetime) -> CodeCheck:
        row = await self.store.get(user)
        if row is None:
            return CodeCheck.NOT_ENROLLED
        step = matching_step(self.box.open(row.secret, user), code.strip(), now)
        if step is None:
            return CodeCheck.WRONG
        return CodeCheck.OK if await self.store.accept_step(user, step) else CodeCheck.REPLAYED

    async def add_failure(self, user: str, now: datetime) -> int:
        return await self.store.add_failure(user, now, now - FAILURE_WINDOW)

    async def locked_until(self, user: str) -> datetime | None:
        row = await self.store.get(user)
        return None if row is None else row.locked_until

    async def lock(self, user: str, until: datetime) -> None:
        await self.store.lock(user, until)

    async def enroll(self, user: str, now: datetime) -> str:
        """A new secret for ``user``, stored sealed; returned once, for the QR code."""
        secret = pyotp.random_base32()
        await self.store.put(user, self.box.seal(secret, user), now)
        return secret


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)
