"""A session check for Matrix: the admins hear once when an admin's account gains a device.

A stolen access token or a login on a borrowed laptop shows as a new device. The devices come
from the client-server key query (``POST /keys/query``), which lists every device that holds
keys; it needs no encryption in the admin room. The first look at an admin is the baseline;
the device ids seen are kept in the bot's database, so a restart warns about nothing twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nio import AsyncClient, SyncResponse

from bot.transports.matrix_state import PREFIX
from handlers.core.messages import esc

if TYPE_CHECKING:
    from bot.transports.matrix_state import KeyValue

log = logging.getLogger(__name__)
DEVICES = f"{PREFIX}devices:"
# Besides the changes a sync reports, look again now and then: a missed change still shows.
EVERY = 600.0

Warn = Callable[[str, str, str], Awaitable[None]]  # user, device id, text


class DeviceWatch:
    def __init__(
        self, client: AsyncClient, kv: KeyValue, admins: Sequence[str], warn: Warn
    ) -> None:
        self.client = client
        self.kv = kv
        self.admins = tuple(admins)
        self.warn = warn
        self._next = 0.0

    async def after_sync(self, response: SyncResponse) -> None:
        changed = set(response.device_list.changed) & set(self.admins)
        due = time.monotonic() >= self._next
        if not (changed or due) or not self.admins:
            return
        if due:
            self._next = time.monotonic() + EVERY
        try:
            await self.check(self.admins if due else sorted(changed))
        except Exception:  # a failed look must never stop the sync
            log.warning("Matrix: could not check the admins' devices", exc_info=True)

    async def check(self, users: Sequence[str]) -> list[tuple[str, str]]:
        """Warn about the devices of ``users`` not seen before; returns them."""
        found = await self._query(users)
        new: list[tuple[str, str]] = []
        for user, devices in found.items():
            key = DEVICES + user
            raw = await self.kv.get(key)
            known = set(json.loads(raw)) if raw else set()
            if raw is not None:
                for device in sorted(devices.keys() - known):
                    new.append((user, device))
                    await self.warn(user, device, _warning(user, device, devices[device]))
            if raw is None or devices.keys() - known:
                await self.kv.set(key, json.dumps(sorted(known | devices.keys())), _now())
        return new

    async def _query(self, users: Sequence[str]) -> dict[str, dict[str, str]]:
        body = json.dumps({"device_keys": {user: [] for user in users}})
        headers = {"Authorization": f"Bearer {self.client.access_token}",
                   "Content-Type": "application/json"}  # fmt: skip
        response = await self.client.send("POST", "/_matrix/client/v3/keys/query", body, headers)
        try:
            if response.status != 200:
                raise RuntimeError(f"keys/query answered {response.status}")
            data: dict[str, Any] = await response.json()
        finally:
            response.release()
        return {
            user: {device: _name(keys) for device, keys in (devices or {}).items()}
            for user, devices in data.get("device_keys", {}).items()
            if user in users
        }


def _name(keys: Any) -> str:
    unsigned = keys.get("unsigned") if isinstance(keys, dict) else None
    name = unsigned.get("device_display_name") if isinstance(unsigned, dict) else None
    return str(name or "")


def _warning(user: str, device: str, name: str) -> str:
    called = f" ({esc(name)})" if name else ""
    return (
        f"⚠️ A new device signed in to the Matrix account of {esc(user)}: "
        f"<code>{esc(device)}</code>{called}. If that was not them, the account may be "
        "stolen: send /lockdown, and sign that device out."
    )


def _now() -> datetime:
    return datetime.now(UTC)
