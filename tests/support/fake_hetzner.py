"""A loopback fake of the Hetzner Cloud API v1, for the official ``hcloud`` client.

It follows the public reference (https://docs.hetzner.cloud): bearer tokens, the error envelope
``{"error": {"code", "message", "details"}}`` with its HTTP statuses, ``meta.pagination`` on
lists (``page``, ``per_page`` default 25, max 50), the ``RateLimit-*`` headers, and actions that
are ``running`` when created and reach ``success`` (or ``error``) as they are polled through
``GET /actions/{id}``. A resource with a running action is ``locked`` (423) for new actions.

It serves from its own thread (``tests.support.loopback_api``). Faults are injected with
``inject()``: an error code (rate_limit_exceeded 429, locked 423, unauthorized 401, forbidden
403, service_error 503, ...), ``"drop"``, which cuts the connection without an answer, or
``"slow"``.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

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

STATUS_OF = {
    "unauthorized": 401,
    "forbidden": 403,
    "token_readonly": 403,
    "protected": 403,
    "resource_limit_exceeded": 403,
    "resource_unavailable": 403,
    "invalid_input": 400,
    "json_error": 400,
    "unsupported_error": 400,
    "not_found": 404,
    "conflict": 409,
    "uniqueness_error": 409,
    "locked": 423,
    "rate_limit_exceeded": 429,
    "server_error": 500,
    "service_error": 503,
    "maintenance": 503,
    "unavailable": 503,
    "timeout": 504,
}
MESSAGES = {
    "unauthorized": "unable to authenticate",
    "forbidden": "insufficient permissions for this request",
    "rate_limit_exceeded": "limit of 3600 requests per hour reached",
    "locked": "another action is running on this resource",
    "service_error": "error within a service",
}
LOCATIONS = {
    "fsn1": {"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1", "country": "DE",
             "city": "Falkenstein", "latitude": 50.47612, "longitude": 12.370071,
             "network_zone": "eu-central"},
    "nbg1": {"id": 2, "name": "nbg1", "description": "Nuremberg DC Park 1", "country": "DE",
             "city": "Nuremberg", "latitude": 49.452102, "longitude": 11.076665,
             "network_zone": "eu-central"},
    "hel1": {"id": 3, "name": "hel1", "description": "Helsinki DC Park 1", "country": "FI",
             "city": "Helsinki", "latitude": 60.169855, "longitude": 24.938379,
             "network_zone": "eu-central"},
}  # fmt: skip
# (id, name, cores, memory GB, disk GB, monthly net EUR); gross adds 19% VAT.
SERVER_TYPES = ((22, "cx22", 2, 4.0, 40, "3.7900"), (23, "cx32", 4, 8.0, 80, "6.8000"))
VAT = 1.19
IMAGE_PER_GB_NET = "0.0119"
VOLUME_PER_GB_NET = "0.0440"
INCLUDED_TRAFFIC = 20 * 1000**4
TOKEN = "test-token"  # read and write
READ_TOKEN = "read-token"  # a token made with Read permission only


def _money(net: str) -> JSON:
    return {"net": net, "gross": f"{float(net) * VAT:.10f}"}


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def server_type_json(spec: tuple[int, str, int, float, int, str]) -> JSON:
    type_id, name, cores, memory, disk, net = spec
    prices = [
        {"location": loc, "price_hourly": _money(f"{float(net) / 730:.4f}"),
         "price_monthly": _money(net), "included_traffic": INCLUDED_TRAFFIC,
         "price_per_tb_traffic": _money("1.0000")}
        for loc in ("fsn1", "nbg1")  # none for hel1: the adapter must cope with a missing price
    ]  # fmt: skip
    return {"id": type_id, "name": name, "description": name.upper(), "cores": cores,
            "memory": memory, "disk": disk, "deprecated": False, "deprecation": None,
            "prices": prices, "storage_type": "local", "cpu_type": "shared",
            "architecture": "x86", "category": "cost_optimized"}  # fmt: skip


class ApiError(Exception):
    def __init__(self, code: str, message: str | None = None, details: JSON | None = None):
        super().__init__(code)
        self.code = code
        self.message = message or MESSAGES.get(code, code.replace("_", " "))
        self.details = details if details is not None else {}


class FakeHetzner(LoopbackApi):
    """``tokens`` maps a token to ``"read_write"`` or ``"read"``. ``action_polls`` is how many
    ``GET /actions/{id}`` an action stays running; ``hold_actions`` keeps them running."""

    api_prefix = "/v1"
    tables = ("servers", "volumes", "images")

    def __init__(self, token: str = TOKEN, read_token: str = READ_TOKEN) -> None:
        super().__init__()
        self.tokens = {token: "read_write", read_token: "read"}
        self.readonly_code = "forbidden"
        self.action_polls = 1
        self.hold_actions = False
        self.fail_commands: set[str] = set()
        self.servers: dict[int, JSON] = {}
        self.volumes: dict[int, JSON] = {}
        self.images: dict[int, JSON] = {}
        self.actions: dict[int, JSON] = {}
        self._pending: Progress[int] = Progress()  # by action id
        self._ids = itertools.count(100)
        self.server_types = {t[0]: server_type_json(t) for t in SERVER_TYPES}

    # -- set-up and inspection ----------------------------------------------------------------

    def add_server(
        self,
        name: str,
        *,
        ipv4: str | None = "203.0.113.10",
        ipv6: str | None = "2001:db8:1234::/64",
        server_type: str = "cx22",
        location: str = "fsn1",
        status: str = "running",
    ) -> JSON:
        server_id = next(self._ids)
        stype = next(t for t in self.server_types.values() if t["name"] == server_type)
        loc = LOCATIONS[location]
        ip4 = ipv4 and {
            "id": next(self._ids),
            "ip": ipv4,
            "blocked": False,
            "dns_ptr": f"{name}.example.org",
        }
        ip6 = ipv6 and {"id": next(self._ids), "ip": ipv6, "blocked": False, "dns_ptr": []}
        server = {
            "id": server_id, "name": name, "status": status, "created": _now(),
            "public_net": {"ipv4": ip4, "ipv6": ip6, "floating_ips": [], "firewalls": []},
            "private_net": [], "server_type": stype, "location": loc,
            "datacenter": {"id": loc["id"], "name": f"{location}-dc14",
                           "description": loc["description"], "location": loc},
            "image": None, "iso": None, "rescue_enabled": False, "locked": False,
            "backup_window": None, "outgoing_traffic": 123_456_789, "ingoing_traffic": 987_654,
            "included_traffic": INCLUDED_TRAFFIC, "protection": {"delete": True, "rebuild": True},
            "labels": {}, "volumes": [], "load_balancers": [], "primary_disk_size": stype["disk"],
            "placement_group": None,
        }  # fmt: skip
        with self.lock:
            self.servers[server_id] = server
        return server

    def add_volume(self, name: str, size: int, server_id: int | None) -> JSON:
        volume_id = next(self._ids)
        volume = {
            "id": volume_id, "created": _now(), "name": name, "server": server_id,
            "location": LOCATIONS["fsn1"], "size": size,
            "linux_device": f"/dev/disk/by-id/scsi-0HC_Volume_{volume_id}",
            "protection": {"delete": False}, "labels": {}, "status": "available", "format": "ext4",
        }  # fmt: skip
        with self.lock:
            self.volumes[volume_id] = volume
            if server_id is not None:
                self.servers[server_id]["volumes"].append(volume_id)
        return volume

    def add_snapshot(self, description: str, image_size: float | None, server_id: int) -> JSON:
        image_id = next(self._ids)
        image = {
            "id": image_id, "type": "snapshot", "status": "available", "name": None,
            "description": description, "image_size": image_size,
            "disk_size": self.servers[server_id]["primary_disk_size"], "created": _now(),
            "created_from": {"id": server_id, "name": self.servers[server_id]["name"]},
            "bound_to": None, "os_flavor": "unknown", "os_version": None, "rapid_deploy": False,
            "protection": {"delete": False}, "deprecated": None, "deleted": None, "labels": {},
            "architecture": "x86",
        }  # fmt: skip
        with self.lock:
            self.images[image_id] = image
        return image

    def pricing(self) -> JSON:
        return {
            "currency": "EUR", "vat_rate": "19.00", "primary_ips": [], "floating_ips": [],
            "floating_ip": {"price_monthly": _money("3.0000")},
            "image": {"price_per_gb_month": _money(IMAGE_PER_GB_NET)},
            "volume": {"price_per_gb_month": _money(VOLUME_PER_GB_NET)},
            "server_backup": {"percentage": "20.00"},
            "server_types": [{"id": t["id"], "name": t["name"], "prices": t["prices"]}
                             for t in self.server_types.values()],
            "load_balancer_types": [],
        }  # fmt: skip

    # -- request handling (server threads) --------------------------------------------------------

    def known_fault(self, kind: str) -> bool:
        return kind in STATUS_OF

    def fault_answer(self, kind: str) -> Answer:
        return self._error(ApiError(kind))

    def answer(self, call: Call) -> Answer:
        path = call.path.removeprefix(self.api_prefix)
        with self.lock:
            try:
                self._authorize(call.method, call.bearer)
                status, payload = self._route(call.method, path, call.query, call.body)
            except ApiError as err:
                return self._error(err)
        return _with_limits(status, payload)

    @staticmethod
    def _error(err: ApiError) -> Answer:
        error = {"code": err.code, "message": err.message, "details": err.details}
        return _with_limits(STATUS_OF.get(err.code, 400), {"error": error})

    def _authorize(self, method: str, token: str | None) -> None:
        permission = self.tokens.get(token or "")
        if permission is None:
            raise ApiError("unauthorized")
        if permission == "read" and method != "GET":
            raise ApiError(self.readonly_code)

    def _route(  # noqa: PLR0911, PLR0912 - one flat table of routes reads best
        self, method: str, path: str, query: Query, body: bytes
    ) -> tuple[int, JSON | None]:
        parts = [p for p in path.split("/") if p]
        data = _json_body(body) if method in {"POST", "PUT"} else {}
        match method, parts:
            case "GET", ["servers"]:
                return 200, self._list("servers", self.servers.values(), query)
            case "GET", ["servers", sid]:
                return 200, {"server": self._get(self.servers, sid)}
            case "POST", ["servers", sid, "actions", command]:
                return 201, self._server_action(self._get(self.servers, sid), command, data)
            case "GET", ["server_types"]:
                return 200, self._list("server_types", self.server_types.values(), query)
            case "GET", ["server_types", tid]:
                return 200, {"server_type": self._get(self.server_types, tid)}
            case "GET", ["locations"]:
                return 200, self._list("locations", LOCATIONS.values(), query)
            case "GET", ["pricing"]:
                return 200, {"pricing": self.pricing()}
            case "GET", ["volumes"]:
                return 200, self._list("volumes", self.volumes.values(), query)
            case "GET", ["volumes", vid]:
                return 200, {"volume": self._get(self.volumes, vid)}
            case "POST", ["volumes", vid, "actions", "resize"]:
                return 201, self._resize(self._get(self.volumes, vid), data)
            case "GET", ["images"]:
                images = [
                    i for i in self.images.values() if i["type"] in query.get("type", [i["type"]])
                ]
                return 200, self._list("images", images, query)
            case "GET", ["images", iid]:
                return 200, {"image": self._get(self.images, iid)}
            case "DELETE", ["images", iid]:
                image = self._get(self.images, iid)
                if image["protection"]["delete"]:
                    raise ApiError("protected", "image is delete protected")
                del self.images[image["id"]]
                return 204, None
            case "GET", ["actions", aid]:
                return 200, {"action": self._poll(self._get(self.actions, aid))}
        raise ApiError("not_found", f"no route {method} {path}")

    def _list(self, key: str, items: Any, query: Query) -> JSON:
        rows = [r for r in items if "name" not in query or r.get("name") == query["name"][0]]
        page = query_int(query, "page", 1, _invalid)
        per_page = min(query_int(query, "per_page", 25, _invalid), 50)
        last = last_page(len(rows), per_page)
        pagination = {
            "page": page, "per_page": per_page, "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None, "last_page": last,
            "total_entries": len(rows),
        }  # fmt: skip
        chunk = page_of(rows, page, per_page)
        return {key: copy.deepcopy(chunk), "meta": {"pagination": pagination}}

    @staticmethod
    def _get(table: dict[int, JSON], raw_id: str) -> JSON:
        if not raw_id.isdigit():
            raise ApiError("invalid_input", "invalid id")
        found = table.get(int(raw_id))
        if found is None:
            raise ApiError("not_found", f"resource with ID '{raw_id}' not found")
        return found

    # -- actions --------------------------------------------------------------------------------

    def _server_action(self, server: JSON, command: str, data: JSON) -> JSON:
        self._check_unlocked("server", server["id"])
        if command == "create_image":
            return self._create_image(server, data)
        transitions = {
            "poweron": ("start_server", "starting", "running"),
            "poweroff": ("stop_server", "stopping", "off"),
            "reset": ("reset_server", "running", "running"),
        }
        if command not in transitions:
            raise ApiError("not_found", f"no route POST /servers/{server['id']}/actions/{command}")
        name, during, after = transitions[command]
        before = server["status"]
        server["status"] = during

        def effect(ok: bool) -> None:
            server["status"] = after if ok else before

        return {"action": self._start(name, "server", server["id"], effect)}

    def _create_image(self, server: JSON, data: JSON) -> JSON:
        if data.get("type", "snapshot") not in {"snapshot", "backup"}:
            raise ApiError("invalid_input", "invalid input in field 'type'")
        image = self.add_snapshot(
            data.get("description") or f"{server['name']}-{_now()}", None, server["id"]
        )
        image["status"], image["type"] = "creating", data.get("type", "snapshot")

        def effect(ok: bool) -> None:
            if ok:
                image.update(
                    status="available", image_size=round(server["primary_disk_size"] * 0.05, 2)
                )
            else:
                self.images.pop(image["id"], None)

        action = self._start("create_image", "server", server["id"], effect)
        return {"image": copy.deepcopy(image), "action": action}

    def _resize(self, volume: JSON, data: JSON) -> JSON:
        size = data.get("size")
        if not isinstance(size, int | float) or size <= volume["size"]:
            raise ApiError(
                "invalid_input",
                "invalid input in field 'size': must be greater than current size",
                {"fields": [{"name": "size", "messages": ["must be greater than current size"]}]},
            )
        self._check_unlocked("volume", volume["id"])

        def effect(ok: bool) -> None:
            if ok:
                volume["size"] = int(size)

        return {"action": self._start("resize_volume", "volume", volume["id"], effect)}

    def _check_unlocked(self, kind: str, resource_id: int) -> None:
        for action_id in self._pending:
            if {"id": resource_id, "type": kind} in self.actions[action_id]["resources"]:
                raise ApiError("locked", f"{kind} {resource_id} is locked by action {action_id}")

    def _start(
        self, command: str, kind: str, resource_id: int, effect: Callable[[bool], None]
    ) -> JSON:
        action_id = next(self._ids)
        action: JSON = {"id": action_id, "command": command, "status": "running", "progress": 0,
                  "started": _now(), "finished": None,
                  "resources": [{"id": resource_id, "type": kind}], "error": None}  # fmt: skip
        self.actions[action_id] = action

        def finish() -> None:
            ok = command not in self.fail_commands
            effect(ok)
            action.update(status="success" if ok else "error", progress=100, finished=_now())
            if not ok:
                action["error"] = {"code": "action_failed", "message": "Action failed"}

        self._pending.start(action_id, self.action_polls, finish)
        return copy.deepcopy(action)

    def _poll(self, action: JSON) -> JSON:
        if self._pending.poll(action["id"], hold=self.hold_actions) == "running":
            action["progress"] = 50
        return copy.deepcopy(action)


def _with_limits(status: int, payload: JSON | None) -> Answer:
    """Every answer carries the ``RateLimit-*`` headers."""
    headers = {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0" if status == 429 else "3599",
               "RateLimit-Reset": str(int(time.time()) + 1)}  # fmt: skip
    return Answer(status, payload, headers)


def _invalid(name: str) -> ApiError:
    return ApiError("invalid_input", f"invalid input in field '{name}'")


def _json_body(body: bytes) -> JSON:
    return json_object(
        body,
        ApiError("json_error", "invalid JSON in request body"),
        ApiError("json_error", "request body must be a JSON object"),
    )
