"""A loopback fake of the Scaleway APIs the adapter uses, for the official ``scaleway`` SDK.

Written from the public reference (https://www.scaleway.com/en/developers/api/): the
``X-Auth-Token`` header; error bodies ``{"type", "message", ...}`` (``denied_authentication``
401, ``permissions_denied`` 403, ``unknown_resource`` 404, ``transient_state`` 409, 429, 5xx);
pagination by ``page`` and ``per_page`` (Instance, count in ``X-Total-Count``) or ``page_size``
(Block Storage, ``total_count`` in the body), with empty pages past the end, since the SDK
pages until it gets one. Served, under ``/instance/v1/zones/{zone}`` and
``/block/v1alpha1/zones/{zone}``: servers, their ``action`` (answered with a task), the
product catalogue of server types, block volumes (PATCH grows them), volume types with their
prices, and snapshots.

Long work progresses as it is polled: a server in ``starting``/``stopping``, a volume
``resizing`` or a snapshot ``creating`` reaches its end state after ``polls`` reads of that
resource. ``inject()`` adds faults: an error kind, ``"drop"`` (the connection is cut) or
``"slow"`` (the answer comes after ``slow_seconds``). It serves from its own thread
(``tests.support.loopback_api``), like ``fake_hetzner``.
"""

from __future__ import annotations

import copy
import uuid
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
    page_of,
    query_int,
)

ACCESS_KEY = "SCWTESTTESTTESTTEST0"
SECRET_KEY = "11111111-2222-4333-8444-555555555555"  # read and write
READ_KEY = "66666666-7777-4888-9999-000000000000"  # a key whose policy only reads
PROJECT = "5e0c2c7e-8a0b-4c1d-9e2f-3a4b5c6d7e8f"
ZONE = "fr-par-1"
GB = 1000**3
ERRORS = {  # kind: (status, type, message)
    "unauthorized": (401, "denied_authentication", "invalid authentication"),
    "forbidden": (403, "permissions_denied", "insufficient permissions"),
    "not_found": (404, "unknown_resource", "resource is not found"),
    "locked": (409, "transient_state", "resource is in a transient state"),
    "invalid_input": (400, "invalid_arguments", "invalid argument(s)"),
    "rate_limit_exceeded": (429, "too_many_requests", "rate limit exceeded"),
    "server_error": (500, "internal_error", "internal error"),
    "service_error": (503, "service_unavailable", "service unavailable"),
}
# Illustrative catalogue entries: (ncpus, RAM GiB, hourly EUR, monthly EUR).
SERVER_TYPES = {"PLAY2-MICRO": (2, 4, 0.02, 14.6), "PRO2-XS": (4, 16, 0.11, 80.3)}
# Block Storage classes: (IOPS, volume nanos EUR per GB-hour, snapshot nanos per GB-hour).
VOLUME_TYPES = {"sbs_5k": (5000, 118_000, 45_000), "sbs_15k": (15000, 164_000, 45_000)}
STEADY = {"starting": "running", "stopping": "stopped"}


class ApiError(Exception):
    def __init__(self, kind: str, message: str | None = None, **extra: Any) -> None:
        super().__init__(kind)
        status, self.type, default = ERRORS[kind]
        self.status = status
        self.body: JSON = {"type": self.type, "message": message or default, **extra}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeScaleway(LoopbackApi):
    """``keys`` maps a secret key to ``"read_write"`` or ``"read"``. ``polls``: reads a
    transient resource stays transient; ``hold`` keeps it so; ``fail_actions`` makes power
    actions, resizes and snapshots end in failure (the resource as it was, the snapshot in
    ``error``)."""

    tables = ("servers", "volumes", "snapshots")

    def __init__(self) -> None:
        super().__init__()
        self.keys = {SECRET_KEY: "read_write", READ_KEY: "read"}
        self.polls = 1
        self.hold = False
        self.fail_actions = False
        self.retry_after = 1
        self.servers: dict[str, JSON] = {}
        self.volumes: dict[str, JSON] = {}
        self.snapshots: dict[str, JSON] = {}
        self.tasks: dict[str, JSON] = {}
        self._pending: Progress[str] = Progress()  # by resource id

    # -- set-up and inspection ----------------------------------------------------------------

    def add_server(
        self,
        name: str,
        *,
        ipv4: str | None = "203.0.113.10",
        ipv6: str | None = "2001:db8:1234::1",
        commercial_type: str = "PLAY2-MICRO",
        disk_gb: int = 40,
        protected: bool = True,
    ) -> JSON:
        server_id = str(uuid.uuid4())
        root = self.add_volume(f"{name}-root", disk_gb, None)
        ips = [_ip(ipv4, "inet", "32")] if ipv4 else []
        ips += [_ip(ipv6, "inet6", "64")] if ipv6 else []
        server = {
            "id": server_id, "name": name, "organization": PROJECT, "project": PROJECT,
            "allowed_actions": ["poweroff", "terminate", "reboot", "stop_in_place", "backup"],
            "tags": [], "commercial_type": commercial_type, "creation_date": _now(),
            "dynamic_ip_required": False, "routed_ip_enabled": True, "hostname": name,
            "image": None, "protected": protected, "private_ip": None, "public_ips": ips,
            "public_ip": ips[0] if ips else None, "mac_address": "de:00:00:00:00:01",
            "modification_date": _now(), "state": "running", "state_detail": "booted",
            "boot_type": "local", "arch": "x86_64", "maintenances": [], "private_nics": [],
            "volumes": {"0": {"id": root["id"], "volume_type": "sbs_volume", "boot": False,
                              "zone": ZONE, "state": "available"}},
            "security_group": {"id": str(uuid.uuid4()), "name": "default"},
            "placement_group": None, "zone": ZONE, "filesystems": [], "end_of_service": False,
        }  # fmt: skip
        with self.lock:
            self.servers[server_id] = server
            self._attach(root, server_id)
        return server

    def add_volume(self, name: str, size_gb: int, server_id: str | None) -> JSON:
        volume: JSON = {
            "id": str(uuid.uuid4()), "name": name, "type": "sbs_5k", "size": size_gb * GB,
            "project_id": PROJECT, "created_at": _now(), "updated_at": _now(), "references": [],
            "parent_snapshot_id": None, "status": "available", "tags": [],
            "specs": {"perf_iops": 5000, "class": "sbs"}, "zone": ZONE, "last_detached_at": None,
        }  # fmt: skip
        with self.lock:
            self.volumes[volume["id"]] = volume
            if server_id is not None:
                self._attach(volume, server_id)
        return volume

    def add_snapshot(self, name: str, size_gb: float, volume_id: str) -> JSON:
        parent = self.volumes[volume_id]
        snapshot: JSON = {
            "id": str(uuid.uuid4()), "name": name, "size": int(size_gb * GB),
            "parent_volume": {"id": parent["id"], "name": parent["name"], "type": parent["type"],
                              "status": parent["status"]},
            "project_id": PROJECT, "created_at": _now(), "updated_at": _now(), "references": [],
            "status": "available", "tags": [], "zone": ZONE, "class": "sbs",
        }  # fmt: skip
        with self.lock:
            self.snapshots[snapshot["id"]] = snapshot
        return snapshot

    def root_volume(self, server: JSON) -> JSON:
        return self.volumes[server["volumes"]["0"]["id"]]

    # -- request handling (server threads) ------------------------------------------------------

    def known_fault(self, kind: str) -> bool:
        return kind in ERRORS

    def fault_answer(self, kind: str) -> Answer:
        return self._error(ApiError(kind))

    def answer(self, call: Call) -> Answer:
        with self.lock:
            try:
                self._authorize(call.method, call.headers.get("X-Auth-Token"))
                status, payload, headers = self._route(
                    call.method, call.path, call.query, call.body
                )
            except ApiError as err:
                return self._error(err)
        return Answer(status, payload, headers)

    def _error(self, err: ApiError) -> Answer:
        headers = {"Retry-After": str(self.retry_after)} if err.status == 429 else {}
        return Answer(err.status, err.body, headers)

    def _authorize(self, method: str, key: str | None) -> None:
        permission = self.keys.get(key or "")
        if permission is None:
            raise ApiError("unauthorized")
        if permission == "read" and method != "GET":
            raise ApiError("forbidden", details=[{"action": "write"}])

    def _route(  # noqa: PLR0911, PLR0912 - one flat table of routes reads best
        self, method: str, path: str, query: Query, body: bytes
    ) -> tuple[int, JSON | None, dict[str, str]]:
        parts = [p for p in path.split("/") if p]
        if len(parts) > 3 and parts[2] == "zones" and parts[3] != ZONE:
            raise ApiError("invalid_input", f"unknown zone {parts[3]}", fields={"zone": []})
        data = _json_body(body) if method in {"POST", "PATCH"} else {}
        match method, parts:
            case "GET", ["instance", "v1", "zones", _, "servers"]:
                rows = [s for s in self.servers.values() if _matches(s, query, "project")]
                return _instance_page("servers", rows, query)
            case "GET", ["instance", "v1", "zones", _, "servers", sid]:
                return (
                    200,
                    {"server": self._advance(self._get("servers", sid, "instance_server"))},
                    {},
                )
            case "POST", ["instance", "v1", "zones", _, "servers", sid, "action"]:
                server = self._get("servers", sid, "instance_server")
                return 202, {"task": self._action(server, data.get("action", "poweron"))}, {}
            case "GET", ["instance", "v1", "zones", _, "products", "servers"]:
                return _instance_page("servers", _server_types(), query, keyed=True)
            case "GET", ["block", "v1alpha1", "zones", _, "volume-types"]:
                return _block_page("volume_types", _volume_types(), query)
            case "GET", ["block", "v1alpha1", "zones", _, "volumes"]:
                rows = [v for v in self.volumes.values() if _matches(v, query, "project_id")]
                return _block_page("volumes", rows, query)
            case "GET", ["block", "v1alpha1", "zones", _, "volumes", vid]:
                return 200, self._advance(self._get("volumes", vid, "volume")), {}
            case "PATCH", ["block", "v1alpha1", "zones", _, "volumes", vid]:
                return 200, self._resize(self._get("volumes", vid, "volume"), data), {}
            case "GET", ["block", "v1alpha1", "zones", _, "snapshots"]:
                rows = [s for s in self.snapshots.values() if _matches(s, query, "project_id")]
                return _block_page("snapshots", rows, query)
            case "POST", ["block", "v1alpha1", "zones", _, "snapshots"]:
                return 200, self._snapshot(data), {}
            case "GET", ["block", "v1alpha1", "zones", _, "snapshots", snap]:
                return 200, self._advance(self._get("snapshots", snap, "snapshot")), {}
            case "DELETE", ["block", "v1alpha1", "zones", _, "snapshots", snap]:
                self._check_steady(self._get("snapshots", snap, "snapshot"))
                del self.snapshots[snap]
                return 204, None, {}
        raise ApiError("not_found", f"no route {method} {path}", resource="route")

    def _get(self, table: str, raw_id: str, resource: str) -> JSON:
        found: JSON | None = getattr(self, table).get(raw_id)
        if found is None:
            raise ApiError("not_found", resource=resource, resource_id=raw_id)
        return found

    # -- long work ------------------------------------------------------------------------------

    def _action(self, server: JSON, action: str) -> JSON:
        self._check_steady(server)
        moves = {"poweron": ("starting", "stopped"), "poweroff": ("stopping", "running"),
                 "reboot": ("starting", "running")}  # fmt: skip
        if action not in moves:
            raise ApiError("invalid_input", f"action {action} is not allowed", fields={})
        during, needed = moves[action]
        if server["state"] != needed:
            raise ApiError("invalid_input", f"server should be {needed}")
        before = server["state"]
        server["state"] = during
        task: JSON = {
            "id": str(uuid.uuid4()), "description": f"server_{action}", "status": "pending",
            "progress": 0, "href_from": f"/servers/{server['id']}/action",
            "href_result": f"/servers/{server['id']}", "started_at": _now(),
            "terminated_at": None, "zone": ZONE,
        }  # fmt: skip

        def effect(ok: bool) -> None:
            server["state"] = STEADY[during] if ok else before
            task.update(status="success" if ok else "failure", progress=100, terminated_at=_now())

        self.tasks[task["id"]] = task
        self._begin(server["id"], effect)
        return copy.deepcopy(task)

    def _resize(self, volume: JSON, data: JSON) -> JSON:
        size = data.get("size")
        if not isinstance(size, int) or size <= volume["size"]:
            raise ApiError("invalid_input", fields={"size": ["must be greater than current"]})
        self._check_steady(volume)
        before = volume["status"]
        volume["status"] = "resizing"

        def effect(ok: bool) -> None:
            volume["status"] = before
            if ok:
                volume.update(size=size, updated_at=_now())

        self._begin(volume["id"], effect)
        return copy.deepcopy(volume)

    def _snapshot(self, data: JSON) -> JSON:
        parent = self._get("volumes", str(data.get("volume_id")), "volume")
        self._check_steady(parent)
        made = self.add_snapshot(data.get("name") or "snapshot", parent["size"] / GB, parent["id"])
        made.update(status="creating", project_id=data.get("project_id", PROJECT))

        def effect(ok: bool) -> None:
            made["status"] = "available" if ok else "error"

        self._begin(made["id"], effect)
        return copy.deepcopy(made)

    def _check_steady(self, resource: JSON) -> None:
        if resource["id"] in self._pending:
            raise ApiError("locked", resource_id=resource["id"])

    def _begin(self, resource_id: str, effect: Callable[[bool], None]) -> None:
        self._pending.start(resource_id, self.polls, lambda: effect(not self.fail_actions))

    def _advance(self, resource: JSON) -> JSON:
        self._pending.poll(resource["id"], hold=self.hold)
        return copy.deepcopy(resource)

    def _attach(self, volume: JSON, server_id: str) -> None:
        volume["status"] = "in_use"
        volume["references"].append({
            "id": str(uuid.uuid4()), "product_resource_type": "instance_server",
            "product_resource_id": server_id, "created_at": _now(), "type": "exclusive",
            "status": "attached",
        })  # fmt: skip


def _ip(address: str, family: str, netmask: str) -> JSON:
    return {"id": str(uuid.uuid4()), "address": address, "gateway": "", "netmask": netmask,
            "family": family, "dynamic": False, "provisioning_mode": "manual", "tags": [],
            "ipam_id": str(uuid.uuid4()), "state": "attached"}  # fmt: skip


def _server_types() -> list[tuple[str, JSON]]:
    return [
        (name, {"monthly_price": monthly, "hourly_price": hourly, "alt_names": [],
                "ncpus": cpus, "ram": ram * 1024**3, "arch": "x86_64", "baremetal": False,
                "volumes_constraint": {"min_size": 0, "max_size": 0},
                "scratch_storage_max_volumes_count": 0, "end_of_service": False,
                "capabilities": {"block_storage": True, "boot_types": ["local"],
                                 "max_file_systems": 0}})
        for name, (cpus, ram, hourly, monthly) in SERVER_TYPES.items()
    ]  # fmt: skip


def _volume_types() -> list[JSON]:
    def money(nanos: int) -> JSON:
        return {"currency_code": "EUR", "units": 0, "nanos": nanos}

    return [
        {"type": name, "pricing": money(volume), "snapshot_pricing": money(snapshot),
         "specs": {"perf_iops": iops, "class": "sbs"}}
        for name, (iops, volume, snapshot) in VOLUME_TYPES.items()
    ]  # fmt: skip


def _matches(row: JSON, query: Query, project_key: str) -> bool:
    """As the API filters: the project exactly, the name by substring."""
    project = query.get("project", query.get("project_id", [None]))[0]
    name = query.get("name", [""])[0]
    return project in (None, row.get(project_key)) and name in row["name"]


def _page_of(rows: list[Any], query: Query, size_key: str) -> list[Any]:
    page, size = query_int(query, "page", 1, _invalid), query_int(query, size_key, 50, _invalid)
    if size > 100:
        raise ApiError("invalid_input", f"{size_key} must be at most 100")
    return page_of(rows, page, size)  # past the end: an empty page


def _instance_page(
    key: str, rows: list[Any], query: Query, *, keyed: bool = False
) -> tuple[int, JSON, dict[str, str]]:
    chunk = copy.deepcopy(_page_of(rows, query, "per_page"))
    return 200, {key: dict(chunk) if keyed else chunk}, {"X-Total-Count": str(len(rows))}


def _block_page(key: str, rows: list[JSON], query: Query) -> tuple[int, JSON, dict[str, str]]:
    chunk = copy.deepcopy(_page_of(rows, query, "page_size"))
    return 200, {key: chunk, "total_count": len(rows)}, {}


def _invalid(name: str) -> ApiError:
    return ApiError("invalid_input", f"{name} must be a number from 1", fields={name: []})


def _json_body(body: bytes) -> JSON:
    return json_object(
        body,
        ApiError("invalid_input", "invalid JSON body"),
        ApiError("invalid_input", "the body must be a JSON object"),
    )
