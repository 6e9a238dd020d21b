"""A loopback fake of the Hetzner Cloud API v1, for the official ``hcloud`` client.

It follows the public reference (https://docs.hetzner.cloud): bearer tokens, the error envelope
``{"error": {"code", "message", "details"}}`` with its HTTP statuses, ``meta.pagination`` on
lists (``page``, ``per_page`` default 25, max 50), the ``RateLimit-*`` headers, and actions that
are ``running`` when created and reach ``success`` (or ``error``) as they are polled through
``GET /actions/{id}``. A resource with a running action is ``locked`` (423) for new actions.

It serves from its own thread (stdlib ``ThreadingHTTPServer``), so the client's synchronous
calls and the test's event loop never wait on each other. Faults are injected with
``inject()``: an error code (rate_limit_exceeded 429, locked 423, unauthorized 401, forbidden
403, service_error 503, ...) or ``"drop"``, which cuts the connection without an answer.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

JSON = dict[str, Any]

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


@dataclass
class Fault:
    kind: str  # an error code, or "drop"
    times: int | None  # None: until clear_faults()
    method: str | None = None  # only requests with this method


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    status: int


class ApiError(Exception):
    def __init__(self, code: str, message: str | None = None, details: JSON | None = None):
        super().__init__(code)
        self.code = code
        self.message = message or MESSAGES.get(code, code.replace("_", " "))
        self.details = details if details is not None else {}


class FakeHetzner:
    """``tokens`` maps a token to ``"read_write"`` or ``"read"``. ``action_polls`` is how many
    ``GET /actions/{id}`` an action stays running; ``hold_actions`` keeps them running."""

    def __init__(self, token: str = TOKEN, read_token: str = READ_TOKEN) -> None:
        self.tokens = {token: "read_write", read_token: "read"}
        self.readonly_code = "forbidden"
        self.action_polls = 1
        self.hold_actions = False
        self.fail_commands: set[str] = set()
        self.servers: dict[int, JSON] = {}
        self.volumes: dict[int, JSON] = {}
        self.images: dict[int, JSON] = {}
        self.actions: dict[int, JSON] = {}
        self.requests: list[Request] = []
        self._faults: list[Fault] = []
        self._pending: dict[int, tuple[int, Any]] = {}  # action id -> (polls left, effect)
        self._ids = itertools.count(100)
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.server_types = {t[0]: server_type_json(t) for t in SERVER_TYPES}

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake Hetzner API is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeHetzner:
        fake = self

        class Handler(_Handler):
            api = fake

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> FakeHetzner:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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
        with self._lock:
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
        with self._lock:
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
        with self._lock:
            self.images[image_id] = image
        return image

    def inject(self, kind: str, times: int | None = 1, method: str | None = None) -> None:
        """Answer the next ``times`` requests (all, if None) with error ``kind`` or a cut
        connection (``"drop"``); ``method`` limits it to e.g. POST."""
        if kind != "drop" and kind not in STATUS_OF:
            raise ValueError(f"unknown error code {kind}")
        with self._lock:
            self._faults.append(Fault(kind, times, method))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def state(self) -> JSON:
        """A deep copy of everything a call could change, to compare before and after."""
        with self._lock:
            return copy.deepcopy(
                {"servers": self.servers, "volumes": self.volumes, "images": self.images}
            )

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

    def handle(
        self, method: str, target: str, token: str | None, body: bytes
    ) -> tuple[int, JSON | None]:
        """Returns (status, payload); a status of 0 means: cut the connection."""
        url = urlsplit(target)
        path = url.path.removeprefix("/v1")
        with self._lock:
            fault = self._take_fault(method)
            if fault == "drop":
                self.requests.append(Request(method, path, 0))
                return 0, None
            try:
                self._authorize(method, token, fault)
                status, payload = self._route(method, path, parse_qs(url.query), body)
            except ApiError as err:
                status = STATUS_OF.get(err.code, 400)
                payload = {
                    "error": {"code": err.code, "message": err.message, "details": err.details}
                }
            self.requests.append(Request(method, path, status))
            return status, payload

    def _take_fault(self, method: str) -> str | None:
        for fault in self._faults:
            if fault.method not in (None, method):
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault.kind
        return None

    def _authorize(self, method: str, token: str | None, fault: str | None) -> None:
        if fault is not None:
            raise ApiError(fault)
        permission = self.tokens.get(token or "")
        if permission is None:
            raise ApiError("unauthorized")
        if permission == "read" and method != "GET":
            raise ApiError(self.readonly_code)

    def _route(  # noqa: PLR0911, PLR0912 - one flat table of routes reads best
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
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

    def _list(self, key: str, items: Any, query: dict[str, list[str]]) -> JSON:
        rows = [r for r in items if "name" not in query or r.get("name") == query["name"][0]]
        page, per_page = _int(query, "page", 1), min(_int(query, "per_page", 25), 50)
        last = max(1, math.ceil(len(rows) / per_page))
        pagination = {
            "page": page, "per_page": per_page, "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None, "last_page": last,
            "total_entries": len(rows),
        }  # fmt: skip
        chunk = rows[(page - 1) * per_page : page * per_page]
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

    def _start(self, command: str, kind: str, resource_id: int, effect: Any) -> JSON:
        action_id = next(self._ids)
        action: JSON = {"id": action_id, "command": command, "status": "running", "progress": 0,
                  "started": _now(), "finished": None,
                  "resources": [{"id": resource_id, "type": kind}], "error": None}  # fmt: skip
        self.actions[action_id] = action
        self._pending[action_id] = (self.action_polls, effect)
        return copy.deepcopy(action)

    def _poll(self, action: JSON) -> JSON:
        pending = self._pending.get(action["id"])
        if pending is not None and not self.hold_actions:
            left, effect = pending
            if left > 0:
                self._pending[action["id"]] = (left - 1, effect)
                action["progress"] = 50
            else:
                del self._pending[action["id"]]
                ok = action["command"] not in self.fail_commands
                effect(ok)
                action.update(status="success" if ok else "error", progress=100, finished=_now())
                if not ok:
                    action["error"] = {"code": "action_failed", "message": "Action failed"}
        return copy.deepcopy(action)


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    raw = query.get(name, [str(default)])[0]
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError("invalid_input", f"invalid input in field '{name}'")
    return int(raw)


def _json_body(body: bytes) -> JSON:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise ApiError("json_error", "invalid JSON in request body") from None
    if not isinstance(data, dict):
        raise ApiError("json_error", "request body must be a JSON object")
    return data


class _Handler(BaseHTTPRequestHandler):
    api: FakeHetzner
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads ``FakeHetzner.requests`` instead."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        status, payload = self.api.handle(self.command, self.path, token, body)
        if status == 0:
            self.close_connection = True
            return
        raw = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if raw:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("RateLimit-Limit", "3600")
        self.send_header("RateLimit-Remaining", "0" if status == 429 else "3599")
        self.send_header("RateLimit-Reset", str(int(time.time()) + 1))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815
