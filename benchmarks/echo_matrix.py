"""The Matrix baseline: a bare matrix-nio bot on the same Synapse.

It joins every room it is invited to and answers any ``m.text`` that starts with ``!`` with
an ``m.notice`` in reply to it, echoing the text. Its first sync is only the starting point:
nothing in it is answered. No encryption, and the same sync filter as Steward.
Usage: ECHO_MATRIX_TOKEN=... python benchmarks/echo_matrix.py HOMESERVER_URL
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from nio import AsyncClient, InviteMemberEvent, MatrixRoom, RoomMessageText, SyncResponse

SYNC_FILTER = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {
        "timeline": {"limit": 50},
        "ephemeral": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    },
}


async def main(homeserver: str, token: str) -> None:
    client = AsyncClient(homeserver)
    client.access_token = token
    who = await client.whoami()
    client.restore_login(who.user_id, who.device_id or "", token)

    async def on_invite(room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == client.user_id and event.membership == "invite":
            await client.join(room.room_id)

    async def on_text(room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender != client.user_id and event.body.startswith("!"):
            content = {
                "msgtype": "m.notice",
                "body": event.body,
                "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}},
            }
            await client.room_send(room.room_id, "m.room.message", content)

    first = await client.sync(timeout=0, sync_filter=SYNC_FILTER, full_state=True)
    assert isinstance(first, SyncResponse), first
    client.add_event_callback(on_invite, InviteMemberEvent)
    for room_id in first.rooms.invite:  # invitations are not history: accept them
        await client.join(room_id)
    client.add_event_callback(on_text, RoomMessageText)
    try:
        await client.sync_forever(timeout=30_000, sync_filter=SYNC_FILTER)
    finally:
        await client.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1], os.environ["ECHO_MATRIX_TOKEN"]))
