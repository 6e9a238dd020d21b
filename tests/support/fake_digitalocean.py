"""A loopback fake of the DigitalOcean API v2, for the official ``pydo`` client.

It follows the public reference (https://docs.digitalocean.com/reference/api/): bearer tokens
(read-only tokens get 403 on writes), error bodies ``{"id", "message"}`` with their statuses,
lists paged with ``page`` and ``per_page`` (default 20, at most 200) that carry
``links.pages`` (``first``/``prev``, ``next``/``last``, absolute URLs) and ``meta.total``, and
the ``ratelimit-limit``, ``ratelimit-remaining`` and ``ratelimit-reset`` headers on every
answer, plus ``Retry-After`` on a 429. Droplet and volume actions are ``in-progress`` when
created and become ``completed`` (or ``errored``) as they are polled through
``GET /v2/actions/{id}``. A droplet with an action in progress is locked: a new droplet action
gets 422 "Droplet already has a pending event."

Faults are injected with ``inject()``: an error name below, ``"drop"`` (the connection is cut
without an answer) or ``"slow"`` (an answer after ``slow_seconds``, for client timeouts).
"""

from __future__ import annotations

import copy
import itertools
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from providers.server.digitalocean import DigitalOceanServerProvider
from tests.support.loopback_api import (
    JSON,
    Answer,
    Call,
    LoopbackApi,
    Progress,
    Query,
    json_object,
    last_page,
    page_of,
    query_int,
)

TOKEN = "dop_v1_test"  # read and write
READ_TOKEN = "dop_v1_read"  # a token made with the read scope only
# name -> (status, error id, message), as the reference writes them.
ERRORS = {
    "bad_request": (400, "bad_request", "The request could not be understood."),
    "unauthorized": (401, "unauthorized", "Unable to authenticate you."),
    "forbidden": (403, "forbidden", "You do not have access for the attempted action."),
    "not_found": (404, "not_found", "The resource you were accessing could not be found."),
    "locked": (422, "unprocessable_entity", "Droplet already has a pending event."),
    "unprocessable_entity": (422, "unprocessable_entity", "The request was invalid."),
    "too_many_requests": (429, "too_many_requests", "API Rate limit exceeded."),
    "server_error": (500, "server_error", "Unexpected server-side error"),
    "service_unavailable": (503, "service_unavailable", "Service unavailable."),
}
REGIONS = {
    "fra1": {"slug": "fra1", "name": "Frankfurt 1", "available": True,
             "features": ["backups", "ipv6", "metadata", "storage"], "sizes": []},
    "ams3": {"slug": "ams3", "name": "Amsterdam 3", "available": True,
             "features": ["backups", "ipv6", "metadata", "storage"], "sizes": []},
}  # fmt: skip
# slug -> (vcpus, memory MB, disk GB, transfer TB, price_monthly USD), as published.
SIZES = {
    "s-1vcpu-1gb": (1, 1024, 25, 1.0, 6.0),
    "s-2vcpu-4gb": (2, 4096, 80, 4.0, 24.0),
}
DROPLET_ACTIONS = {  # type -> the droplet's status once the action has completed
    "power_on": "active",
    "power_off": "off",
    "shutdown": "off",
    "power_cycle": "active",
    "reboot": "active",
}


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def size_json(slug: str) -> JSON:
    vcpus, memory, disk, transfer, monthly = SIZES[slug]
    return {"slug": slug, "memory": memory, "vcpus": vcpus, "disk": disk, "transfer": transfer,
            "price_monthly": monthly, "price_hourly": round(monthly / 672, 5),
            "regions": list(REGIONS), "available": True, "description": "Basic"}  # fmt: skip


class ApiError(Exception):
    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(name)
        self.status, self.id, default = ERRORS[name]
        self.message = message or default


class FakeDigitalOcean(LoopbackApi):
    """``action_polls`` is how many polls an action stays in progress; ``hold_actions`` keeps
    them in progress; an action whose type is in ``fail_types`` ends ``errored``."""

    tables = ("droplets", "volumes", "snapshots")

    def __init__(self, token: str = TOKEN, read_token: str = READ_TOKEN) -> None:
        super().__init__()
        self.tokens = {token: "write", read_token: "read"}
        self.retry_after = 1
        self.action_polls = 1
        self.hold_actions = False
        self.fail_types: set[str] = set()
        self.always_next = False  # a broken API that offers a next page even past the end
        self.droplets: dict[int, JSON] = {}
        self.volumes: dict[str, JSON] = {}
        self.snapshots: dict[str, JSON] = {}
        self.actions: dict[int, JSON] = {}
        self._pending: Progress[int] = Progress()
        self._ids = itertools.count(3164400)

    # -- set-up and inspection ------------------------------------------------------------------

    def add_droplet(
        self,
        name: str,
        *,
        ipv4: str | None = "203.0.113.10",
        ipv6: str | None = "2a03:b0c0:3:d0::1a2b:1",
        size: str = "s-2vcpu-4gb",
        region: str = "fra1",
        status: str = "active",
        backups: bool = False,
    ) -> JSON:
        vcpus, memory, disk, _, _ = SIZES[size]
        v4 = [{"ip_address": ipv4, "netmask": "255.255.240.0", "gateway": "203.0.113.1",
               "type": "public"}] if ipv4 else []  # fmt: skip
        v6 = [{"ip_address": ipv6, "netmask": 64, "gateway": "2a03:b0c0:3:d0::1",
               "type": "public"}] if ipv6 else []  # fmt: skip
        droplet: JSON = {
            "id": next(self._ids), "name": name, "memory": memory, "vcpus": vcpus, "disk": disk,
            "locked": False, "status": status, "created_at": _now(),
            "features": ["backups"] if backups else [], "backup_ids": [],
            "next_backup_window": None, "snapshot_ids": [], "volume_ids": [],
            "image": {"id": 6918990, "name": "NixOS 25.05", "distribution": "Unknown"},
            "size": size_json(size), "size_slug": size,
            "networks": {"v4": v4, "v6": v6}, "region": REGIONS[region], "tags": [],
            "vpc_uuid": str(uuid.uuid4()),
        }  # fmt: skip
        with self.lock:
            self.droplets[droplet["id"]] = droplet
        return droplet

    def add_volume(self, name: str, size: int, droplet_id: int | None) -> JSON:
        volume: JSON = {
            "id": str(uuid.uuid4()), "region": REGIONS["fra1"], "name": name,
            "droplet_ids": [] if droplet_id is None else [droplet_id],
            "description": "", "size_gigabytes": size, "created_at": _now(),
            "filesystem_type": "ext4", "filesystem_label": name, "tags": [],
        }  # fmt: skip
        with self.lock:
            self.volumes[volume["id"]] = volume
            if droplet_id is not None:
                self.droplets[droplet_id]["volume_ids"].append(volume["id"])
        return volume

    def add_snapshot(
        self, name: str, size_gigabytes: float, droplet_id: int, resource_type: str = "droplet"
    ) -> JSON:
        snapshot_id = str(next(self._ids)) if resource_type == "droplet" else str(uuid.uuid4())
        snapshot = {
            "id": snapshot_id, "name": name, "created_at": _now(), "regions": ["fra1"],
            "resource_id": str(droplet_id), "resource_type": resource_type,
            "min_disk_size": self.droplets[droplet_id]["disk"],
            "size_gigabytes": size_gigabytes, "tags": [],
        }  # fmt: skip
        with self.lock:
            self.snapshots[snapshot_id] = snapshot
            if resource_type == "droplet":
                self.droplets[droplet_id]["snapshot_ids"].append(int(snapshot_id))
        return snapshot

    # -- answers (server threads) -------------------------------------------------------------

    def known_fault(self, kind: str) -> bool:
        return kind in ERRORS

    def fault_answer(self, kind: str) -> Answer:
        return self._error(ApiError(kind))

    def answer(self, call: Call) -> Answer:  # pydo's endpoint is base_url: paths start /v2
        with self.lock:
            try:
                self._authorize(call.method, call.bearer)
                status, payload = self._route(call.method, call.path, call.query, call.body)
            except ApiError as err:
                return self._error(err)
        return Answer(status, payload, self._limits(remaining=4999))

    def _error(self, err: ApiError) -> Answer:
        headers = self._limits(remaining=0 if err.status == 429 else 4999)
        if err.status == 429:
            headers["Retry-After"] = str(self.retry_after)
        return Answer(err.status, {"id": err.id, "message": err.message}, headers)

    @staticmethod
    def _limits(remaining: int) -> dict[str, str]:
        reset = str(int(time.time()) + 60)
        return {"ratelimit-limit": "5000", "ratelimit-remaining": str(remaining),
                "ratelimit-reset": reset}  # fmt: skip

    def _authorize(self, method: str, token: str | None) -> None:
        scope = self.tokens.get(token or "")
        if scope is None:
            raise ApiError("unauthorized")
        if scope == "read" and method != "GET":
            raise ApiError("forbidden")

    def _route(  # noqa: PLR0911 - one flat table of routes reads best
        self, method: str, path: str, query: Query, body: bytes
    ) -> tuple[int, JSON | None]:
        data = _json_body(body) if method == "POST" else {}
        match method, [p for p in path.split("/") if p]:
            case "GET", ["v2", "droplets"]:
                return 200, self._list(path, "droplets", self.droplets.values(), query)
            case "GET", ["v2", "droplets", did]:
                return 200, {"droplet": self._droplet(did)}
            case "GET", ["v2", "droplets", did, "snapshots"]:
                mine = [_as_droplet_snapshot(s) for s in self._snapshots_of(self._droplet(did))]
                return 200, self._list(path, "snapshots", mine, query)
            case "POST", ["v2", "droplets", did, "actions"]:
                return 201, {"action": self._droplet_action(self._droplet(did), data)}
            case "GET", ["v2", "actions", aid] | ["v2", "droplets", _, "actions", aid]:
                return 200, {"action": self._poll(aid)}
            case "GET", ["v2", "volumes"]:
                return 200, self._list(path, "volumes", self.volumes.values(), query)
            case "GET", ["v2", "volumes", vid]:
                return 200, {"volume": self._found(self.volumes.get(vid))}
            case "POST", ["v2", "volumes", vid, "actions"]:
                return 202, {"action": self._resize(self._found(self.volumes.get(vid)), data)}
            case "GET", ["v2", "snapshots"]:
                kind = query.get("resource_type", [None])[0]
                rows = [s for s in self.snapshots.values() if kind in (None, s["resource_type"])]
                return 200, self._list(path, "snapshots", rows, query)
            case "GET", ["v2", "snapshots", sid]:
                return 200, {"snapshot": self._found(self.snapshots.get(sid))}
            case "DELETE", ["v2", "snapshots", sid]:
                self._delete_snapshot(self._found(self.snapshots.get(sid)))
                return 204, None
        raise ApiError("not_found")

    def _list(self, path: str, key: str, items: Iterable[JSON], query: Query) -> JSON:
        rows = [r for r in items if "name" not in query or r.get("name") == query["name"][0]]
        page = query_int(query, "page", 1, _invalid)
        per_page = min(query_int(query, "per_page", 20, _invalid), 200)
        last = last_page(len(rows), per_page)

        def link(number: int) -> str:
            kept = {k: v[0] for k, v in query.items() if k not in {"page", "per_page"}}
            kept.update(page=str(number), per_page=str(per_page))
            return f"{self.base_url}{path}?{urlencode(kept)}"

        pages: JSON = {}
        if page > 1:
            pages.update(first=link(1), prev=link(min(page - 1, last)))
        if page < last or self.always_next:
            pages.update(last=link(last), next=link(page + 1))
        chunk = page_of(rows, page, per_page)
        return {key: copy.deepcopy(chunk), "links": {"pages": pages}, "meta": {"total": len(rows)}}

    def _droplet(self, raw_id: str) -> JSON:
        return self._found(self.droplets.get(int(raw_id)) if raw_id.isdigit() else None)

    @staticmethod
    def _found(resource: JSON | None) -> JSON:
        if resource is None:
            raise ApiError("not_found")
        return resource

    def _snapshots_of(self, droplet: JSON) -> list[JSON]:
        return [s for s in self.snapshots.values() if s["resource_id"] == str(droplet["id"])]

    def _delete_snapshot(self, snapshot: JSON) -> None:
        del self.snapshots[snapshot["id"]]
        for droplet in self.droplets.values():
            if snapshot["id"].isdigit() and int(snapshot["id"]) in droplet["snapshot_ids"]:
                droplet["snapshot_ids"].remove(int(snapshot["id"]))

    # -- actions ----------------------------------------------------------------------------------

    def _droplet_action(self, droplet: JSON, data: JSON) -> JSON:
        kind = data.get("type")
        if kind != "snapshot" and kind not in DROPLET_ACTIONS:
            raise ApiError("unprocessable_entity", f"invalid action type {kind!r}")
        if droplet["locked"]:
            raise ApiError("locked")
        droplet["locked"] = True

        def effect(ok: bool) -> None:
            droplet["locked"] = False
            if ok and kind == "snapshot":
                name = data.get("name") or f"{droplet['name']}-{int(time.time())}"
                self.add_snapshot(name, round(droplet["disk"] * 0.05, 2), droplet["id"])
            elif ok:
                droplet["status"] = DROPLET_ACTIONS[str(kind)]

        return self._start(str(kind), "droplet", droplet["id"], droplet["region"], effect)

    def _resize(self, volume: JSON, data: JSON) -> JSON:
        size = data.get("size_gigabytes")
        if data.get("type") != "resize":
            raise ApiError("unprocessable_entity", f"invalid action type {data.get('type')!r}")
        if not isinstance(size, int) or size <= volume["size_gigabytes"]:
            raise ApiError("unprocessable_entity", "new size must be greater than current size")

        def effect(ok: bool) -> None:
            if ok:
                volume["size_gigabytes"] = size

        return self._start("resize", "volume", volume["id"], volume["region"], effect)

    def _start(
        self, kind: str, rtype: str, rid: Any, region: JSON, effect: Callable[[bool], None]
    ) -> JSON:
        action = {
            "id": next(self._ids), "status": "in-progress", "type": kind, "started_at": _now(),
            "completed_at": None, "resource_id": rid, "resource_type": rtype, "region": region,
            "region_slug": region["slug"],
        }  # fmt: skip
        self.actions[action["id"]] = action

        def finish() -> None:
            ok = action["type"] not in self.fail_types
            effect(ok)
            action.update(status="completed" if ok else "errored", completed_at=_now())

        self._pending.start(action["id"], self.action_polls, finish)
        return copy.deepcopy(action)

    def _poll(self, raw_id: str) -> JSON:
        action = self._found(self.actions.get(int(raw_id)) if raw_id.isdigit() else None)
        self._pending.poll(action["id"], hold=self.hold_actions)
        return copy.deepcopy(action)


def _as_droplet_snapshot(snapshot: JSON) -> JSON:
    """``/v2/droplets/{id}/snapshots`` writes the id as a number, ``/v2/snapshots`` as text."""
    return {**snapshot, "id": int(snapshot["id"]), "type": "snapshot"}


def _invalid(name: str) -> ApiError:
    return ApiError("bad_request", f"invalid {name}")


def _json_body(body: bytes) -> JSON:
    return json_object(
        body,
        ApiError("bad_request", "invalid JSON in request body"),
        ApiError("bad_request", "request body must be a JSON object"),
    )


def digitalocean_adapter(fake: FakeDigitalOcean, **options: Any) -> DigitalOceanServerProvider:
    """The real adapter on this fake: this droplet is ``steward``, and polls and waits are short
    (the retry policy's waits are tested with their own values)."""
    settings: dict[str, Any] = {"droplet": "steward", "poll_interval": 0.01,
                                "action_timeout": 5.0, "retry_backoff": 0.0} | options  # fmt: skip
    return DigitalOceanServerProvider(
        settings.pop("token", TOKEN), api_url=fake.api_url, **settings
    )
