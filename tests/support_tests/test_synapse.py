"""The Synapse fixture, checked with matrix-nio against the real homeserver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from nio import (
    AsyncClient,
    JoinResponse,
    LoginError,
    LoginResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from tests.support.synapse import RegisteredUser, Synapse, SynapseMissingError, unique


@asynccontextmanager
async def logged_in(synapse: Synapse, user: RegisteredUser) -> AsyncIterator[AsyncClient]:
    """A nio client that logged in with the password; always closed."""
    client = AsyncClient(synapse.url, user.user_id)
    try:
        response = await client.login(user.password, device_name="steward-tests")
        assert isinstance(response, LoginResponse), response
        yield client
    finally:
        await client.close()


async def test_registered_user_logs_in_with_nio(synapse: Synapse) -> None:
    user = synapse.register(unique("user"), "secret-1")

    assert user.user_id.endswith(f":{synapse.server_name}")
    async with logged_in(synapse, user) as client:
        assert client.user_id == user.user_id
        assert client.access_token not in ("", user.access_token)

    client = AsyncClient(synapse.url, user.user_id)
    try:
        wrong = await client.login("not-the-password")
    finally:
        await client.close()
    assert isinstance(wrong, LoginError)
    assert wrong.status_code == "M_FORBIDDEN"


async def test_message_reaches_the_invited_user(synapse: Synapse) -> None:
    alice = synapse.register(unique("alice"), "secret-a")
    bob = synapse.register(unique("bob"), "secret-b")

    async with logged_in(synapse, alice) as sender, logged_in(synapse, bob) as receiver:
        created = await sender.room_create(name="ops", invite=[bob.user_id])
        assert isinstance(created, RoomCreateResponse), created
        joined = await receiver.join(created.room_id)
        assert isinstance(joined, JoinResponse), joined
        sent = await sender.room_send(
            created.room_id, "m.room.message", {"msgtype": "m.text", "body": "disk at 91%"}
        )
        assert isinstance(sent, RoomSendResponse), sent

        bodies: list[str] = []
        deadline = time.monotonic() + 10
        while "disk at 91%" not in bodies and time.monotonic() < deadline:
            synced = await receiver.sync(timeout=1000)
            assert isinstance(synced, SyncResponse), synced
            room = synced.rooms.join.get(created.room_id)
            if room is not None:
                bodies += [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)]
        assert "disk at 91%" in bodies


async def test_admin_flag_gives_the_admin_api(synapse: Synapse) -> None:
    admin = synapse.register(unique("admin"), "secret-adm", admin=True)
    user = synapse.register(unique("user"), "secret-usr")

    about = synapse.api("GET", f"/_synapse/admin/v2/users/{user.user_id}", token=admin.access_token)
    assert about["name"] == user.user_id
    assert about["admin"] is False
    itself = synapse.api(
        "GET", f"/_synapse/admin/v2/users/{admin.user_id}", token=admin.access_token
    )
    assert itself["admin"] is True
    with pytest.raises(RuntimeError, match="403"):
        synapse.api("GET", f"/_synapse/admin/v2/users/{admin.user_id}", token=user.access_token)


async def test_stop_and_start_keep_the_port_and_the_users(synapse: Synapse) -> None:
    user = synapse.register(unique("user"), "secret-r")
    url = synapse.url

    try:
        synapse.stop()
        assert not synapse.running
        with pytest.raises(OSError, match="refused"):
            synapse.api("GET", "/_matrix/client/versions")
    finally:
        await asyncio.to_thread(synapse.start)

    assert synapse.url == url
    async with logged_in(synapse, user) as client:
        assert client.user_id == user.user_id


def test_missing_synapse_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_SYNAPSE_PYTHON", "/nonexistent/python")
    with pytest.raises(SynapseMissingError, match="make synapse"):
        Synapse()


def test_unique_localparts_differ() -> None:
    names = {unique("Admin") for _ in range(100)}
    assert len(names) == 100
    assert all(name.startswith("admin-") for name in names)
