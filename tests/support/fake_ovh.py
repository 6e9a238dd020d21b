"""A loopback fake of the OVHcloud API (https://eu.api.ovh.com/1.0), for the official ``ovh`` SDK.

It follows the public reference and the SDK's client: ``GET /auth/time`` answers the server's
clock; every other call carries ``X-Ovh-Application``, ``X-Ovh-Consumer``, ``X-Ovh-Timestamp``
and ``X-Ovh-Signature`` = ``"$1$" + sha1(secret+consumer+METHOD+url+body+timestamp)`` (joined
with ``+``), which the fake recomputes. Errors are OVH's body ``{"message", "errorCode",
"httpCode"}``: 403 INVALID_KEY / INVALID_CREDENTIAL, 400 INVALID_SIGNATURE, 400 QUERY_TIME_OUT
for a timestamp off by more than ``time_window`` seconds, 403 NOT_GRANTED_CALL for a method the
consumer key was not granted, 404 for what does not exist.

Public Cloud under ``/cloud/project/{serviceName}``: instances (with their flavor), flavors,
volumes (``upsize``), snapshots (images), and the power calls ``reboot``, ``stop``, ``start``.
Calls that start work answer at once; the work progresses as the resource is read
(``operation_polls`` reads), and ``fail_operations`` makes it end in error the way OpenStack
shows it: an image in ``error``, a volume in ``error_extending``, an instance in ``ERROR``.
The public price catalogue ``/order/catalog/public/cloud`` needs no signature.

Faults from ``inject()``: an error kind (``unauthorized``, ``forbidden``, ``not_found``,
``rate_limited`` with Retry-After, ``locked`` 409, ``service_error`` 503, ``server_error``
500), ``"drop"`` (the connection is cut) or ``"slow"`` (the answer waits ``slow_seconds``).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.support.loopback_api import JSON, Answer, Call, LoopbackApi, Progress

APP_KEY = "test-app-key"
APP_SECRET = "test-app-secret"
CONSUMER_KEY = "test-consumer-key"  # granted GET, POST, PUT, DELETE on /*
READ_CONSUMER_KEY = "read-consumer-key"  # granted GET only
PROJECT = "0123456789abcdef0123456789abcdef"
HTTP_STATUS = {400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden",
               404: "404 Not Found", 409: "409 Conflict", 429: "429 Too Many Requests",
               500: "500 Internal Server Error", 503: "503 Service Unavailable"}  # fmt: skip
FAULTS = {
    "unauthorized": (401, "NOT_AUTHENTICATED", "You must login first"),
    "forbidden": (403, "NOT_GRANTED_CALL", "This call has not been granted"),
    "not_found": (404, "", "The requested object does not exist"),
    "rate_limited": (429, "", "Too many requests"),
    "locked": (409, "", "Another operation is running on this resource"),
    "service_error": (503, "", "Service temporarily unavailable"),
    "server_error": (500, "", "Internal server error"),
}
# Fixture flavors: (name, vCPUs, RAM in MB, disk GB). Their sizes are the fake's own.
FLAVORS = (("d2-4", 2, 4000, 40), ("b3-8", 2, 8000, 50))
# Catalogue prices in 10^-8 EUR, without VAT (20% added as "tax"), per hour or month.
PRICES = {"d2-4.consumption": ("hour", 1_000_000), "d2-4.monthly.postpaid": ("month", 550_000_000),
          "b3-8.consumption": ("hour", 4_500_000), "volume.classic.consumption": ("hour", 5_480),
          "snapshot.consumption": ("hour", 1_370)}  # fmt: skip


class OvhError(Exception):
    def __init__(self, status: int, message: str, error_code: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code

    def body(self) -> JSON:
        body = {"message": self.message, "httpCode": HTTP_STATUS.get(self.status, "")}
        return body | ({"errorCode": self.error_code} if self.error_code else {})


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class FakeOvh(LoopbackApi):
    """``skew`` moves the API's clock (seconds); ``operation_polls`` is how many reads a piece
    of work stays unfinished; ``hold_operations`` keeps it unfinished."""

    api_prefix = "/1.0"
    tables = ("instances", "volumes", "images")
    content_type = "application/json; charset=utf-8"

    def __init__(self) -> None:
        super().__init__()
        self.applications = {APP_KEY: APP_SECRET}
        self.consumers = {
            CONSUMER_KEY: {"GET", "POST", "PUT", "DELETE"},
            READ_CONSUMER_KEY: {"GET"},
        }
        self.skew = 0
        self.time_window = 30
        self.operation_polls = 1
        self.hold_operations = False
        self.fail_operations = False
        self.retry_after = 1
        self.instances: dict[str, JSON] = {}
        self.volumes: dict[str, JSON] = {}
        self.images: dict[str, JSON] = {}
        self._work: Progress[str] = Progress()  # by resource id: work that ends as it is read

    # -- set-up and inspection ----------------------------------------------------------------

    @staticmethod
    def _id() -> str:
        return str(uuid.uuid4())

    def add_instance(
        self,
        name: str,
        *,
        ipv4: str | None = "203.0.113.10",
        ipv6: str | None = "2001:db8:1234::1",
        flavor: str = "d2-4",
        region: str = "GRA11",
        monthly: bool = False,
    ) -> JSON:
        addresses = [{"ip": ip, "type": "public", "version": version, "networkId": "ext-net",
                      "gatewayIp": None}
                     for ip, version in ((ipv4, 4), (ipv6, 6)) if ip]  # fmt: skip
        instance: JSON = {
            "id": self._id(), "name": name, "status": "ACTIVE", "region": region,
            "flavor": self._flavor(flavor, region), "ipAddresses": addresses, "created": _now(),
            "image": None, "sshKey": None, "planCode": f"{flavor}.consumption",
            "monthlyBilling": {"since": _now(), "status": "ok"} if monthly else None,
            "operationIds": [],
        }  # fmt: skip
        with self.lock:
            self.instances[instance["id"]] = instance
        return instance

    def add_volume(self, name: str, size: int, instance_id: str | None) -> JSON:
        volume: JSON = {
            "id": self._id(), "name": name, "description": "", "size": size, "region": "GRA11",
            "type": "classic", "status": "in-use" if instance_id else "available",
            "attachedTo": [instance_id] if instance_id else [], "bootable": False,
            "creationDate": _now(), "planCode": "volume.classic.consumption",
        }  # fmt: skip
        with self.lock:
            self.volumes[volume["id"]] = volume
        return volume

    def add_snapshot(
        self, name: str, size: float | None, instance_id: str, created: datetime | None = None
    ) -> JSON:
        made = (created or datetime.now(UTC)).replace(microsecond=0).isoformat()
        image: JSON = {
            "id": self._id(), "name": name, "region": self.instances[instance_id]["region"],
            "visibility": "private", "type": "linux", "minDisk": 40, "minRam": 0,
            "size": size, "creationDate": made, "status": "active", "user": "ubuntu",
            "flavorType": None, "tags": None, "planCode": "snapshot.consumption",
        }  # fmt: skip
        with self.lock:
            self.images[image["id"]] = image
        return image

    def catalogue(self) -> JSON:
        addons = [
            {"planCode": code, "product": code.split(".")[0], "pricingType": "consumption",
             "pricings": [{"capacities": ["consumption"], "interval": 1, "intervalUnit": unit,
                           "price": price, "tax": price // 5, "mode": "consumption",
                           "type": "consumption", "strategy": "tiered"}]}
            for code, (unit, price) in PRICES.items()
        ]  # fmt: skip
        locale = {"currencyCode": "EUR", "subsidiary": "FR", "taxRate": 20}
        return {"catalogId": 1, "locale": locale, "plans": [], "addons": addons, "products": []}

    def _flavor(self, name: str, region: str) -> JSON:
        _, vcpus, ram, disk = next(f for f in FLAVORS if f[0] == name)
        return {"id": f"{name}-{region}", "name": name, "region": region, "vcpus": vcpus,
                "ram": ram, "disk": disk, "type": "ovh.ssd.eg", "osType": "linux",
                "available": True, "inboundBandwidth": 250, "outboundBandwidth": 250,
                "planCodes": {"monthly": f"{name}.monthly.postpaid",
                              "hourly": f"{name}.consumption"}}  # fmt: skip

    # -- request handling (server threads) -----------------------------------------------------

    def known_fault(self, kind: str) -> bool:
        return kind in FAULTS

    def fault_answer(self, kind: str) -> Answer:
        status, code, message = FAULTS[kind]
        return self._reply(status, OvhError(status, message, code).body())

    def encode(self, payload: Any) -> bytes:
        return json.dumps(payload).encode()  # OVHcloud answers ``null`` where there is nothing

    def answer(self, call: Call) -> Answer:
        url = self.base_url + call.target  # what the client signed
        path = call.path.removeprefix(self.api_prefix)
        with self.lock:
            try:
                status, payload = self._answer(call.method, url, path, call.headers, call.body)
            except OvhError as err:
                status, payload = err.status, err.body()
        return self._reply(status, payload)

    def _reply(self, status: int, payload: Any) -> Answer:
        headers = {"Retry-After": str(self.retry_after)} if status == 429 else {}
        return Answer(status, payload, headers)

    def _answer(self, method: str, url: str, path: str, headers: Any, body: bytes) -> Any:
        if method == "GET" and path == "/auth/time":
            return 200, int(time.time()) + self.skew
        if method == "GET" and path == "/order/catalog/public/cloud":
            return 200, self.catalogue()
        self._verify(method, url, headers, body)
        return self._route(method, path, json.loads(body) if body else {})

    def _verify(self, method: str, url: str, headers: Any, body: bytes) -> None:
        secret = self.applications.get(headers.get("X-Ovh-Application", ""))
        if secret is None:
            raise OvhError(403, "Invalid application key", "INVALID_KEY")
        consumer = headers.get("X-Ovh-Consumer", "")
        if consumer not in self.consumers:
            raise OvhError(403, "This credential does not exist", "INVALID_CREDENTIAL")
        stamp = headers.get("X-Ovh-Timestamp", "")
        now = int(time.time()) + self.skew
        if not stamp.isdigit() or abs(int(stamp) - now) > self.time_window:
            raise OvhError(400, "Query out of time", "QUERY_TIME_OUT")
        signed = "+".join([secret, consumer, method, url, body.decode(), stamp])
        expected = "$1$" + hashlib.sha1(signed.encode()).hexdigest()  # noqa: S324 - OVH's scheme
        if not hmac.compare_digest(expected, headers.get("X-Ovh-Signature", "")):
            raise OvhError(400, "Invalid signature", "INVALID_SIGNATURE")
        if method not in self.consumers[consumer]:
            raise OvhError(403, "This call has not been granted", "NOT_GRANTED_CALL")

    def _route(self, method: str, path: str, data: JSON) -> tuple[int, Any]:  # noqa: PLR0911
        parts = [p for p in path.split("/") if p]
        if parts[:2] != ["cloud", "project"] or len(parts) < 4:
            raise OvhError(404, f"Got an invalid (or empty) URL {path}")
        if parts[2] != PROJECT:
            raise OvhError(404, "This service does not exist")
        match method, parts[3:]:
            case "GET", ["instance"]:
                return 200, [self._summary(self._read(i)) for i in list(self.instances.values())]
            case "GET", ["instance", iid]:
                return 200, copy.deepcopy(self._read(self._get(self.instances, iid)))
            case "POST", ["instance", iid, verb]:
                self._instance_call(self._get(self.instances, iid), verb, data)
                return 200, None
            case "GET", ["volume"]:
                return 200, [copy.deepcopy(self._read(v)) for v in list(self.volumes.values())]
            case "GET", ["volume", vid]:
                return 200, copy.deepcopy(self._read(self._get(self.volumes, vid)))
            case "POST", ["volume", vid, "upsize"]:
                return 200, self._upsize(self._get(self.volumes, vid), data)
            case "GET", ["snapshot"]:
                return 200, [copy.deepcopy(self._read(i)) for i in list(self.images.values())]
            case "GET", ["snapshot", sid]:
                return 200, copy.deepcopy(self._read(self._get(self.images, sid)))
            case "DELETE", ["snapshot", sid]:
                self._delete_image(self._get(self.images, sid))
                return 200, None
        raise OvhError(404, f"Got an invalid (or empty) URL {path}")

    @staticmethod
    def _get(table: dict[str, JSON], key: str) -> JSON:
        if key not in table:
            raise OvhError(404, f"The requested object ({key}) does not exist")
        return table[key]

    @staticmethod
    def _summary(instance: JSON) -> JSON:
        """The list gives the flavor's id, not the flavor; the detail gives both."""
        summary = copy.deepcopy(instance)
        summary["flavorId"] = summary.pop("flavor")["id"]
        return summary

    # -- work that progresses as it is read -----------------------------------------------------

    def _busy(self, key: str) -> None:
        if key in self._work:
            raise OvhError(409, "Another operation is running on this resource")

    def _begin(self, key: str, finish: Callable[[bool], None]) -> None:
        self._work.start(key, self.operation_polls, lambda: finish(not self.fail_operations))

    def _read(self, resource: JSON) -> JSON:
        self._work.poll(resource["id"], hold=self.hold_operations)
        return resource

    def _instance_call(self, instance: JSON, verb: str, data: JSON) -> None:
        if verb == "snapshot":
            self._snapshot(instance, data)
            return
        settled = {"reboot": "ACTIVE", "stop": "SHUTOFF", "start": "ACTIVE"}.get(verb)
        if settled is None:
            raise OvhError(404, f"Got an invalid (or empty) URL /instance/{verb}")
        if verb == "reboot" and data.get("type") not in {"soft", "hard"}:
            raise OvhError(400, "[type] Invalid value: must be soft or hard")
        self._busy(instance["id"])
        if verb in {"stop", "start"} and instance["status"] == settled:
            raise OvhError(409, f"Instance is already {settled.lower()}")
        if verb == "reboot":
            instance["status"] = "HARD_REBOOT" if data["type"] == "hard" else "REBOOT"

        def finish(ok: bool) -> None:
            instance["status"] = settled if ok else "ERROR"

        self._begin(instance["id"], finish)

    def _snapshot(self, instance: JSON, data: JSON) -> None:
        name = data.get("snapshotName")
        if not isinstance(name, str) or not name:
            raise OvhError(400, "[snapshotName] Property is mandatory")
        self._busy(instance["id"])
        image = self.add_snapshot(name, None, instance["id"])
        image["status"] = "saving"

        def finish(ok: bool) -> None:
            image.update(status="active", size=round(instance["flavor"]["disk"] * 0.05, 2))
            if not ok:
                image.update(status="error", size=None)

        self._begin(image["id"], finish)

    def _upsize(self, volume: JSON, data: JSON) -> JSON:
        size = data.get("size")
        if not isinstance(size, int) or size <= volume["size"]:
            raise OvhError(400, "[size] New size must be greater than the current size")
        self._busy(volume["id"])
        before = volume["status"]
        volume["status"] = "extending"

        def finish(ok: bool) -> None:
            volume.update({"status": before, "size": size} if ok else {"status": "error_extending"})

        self._begin(volume["id"], finish)
        return copy.deepcopy(volume)

    def _delete_image(self, image: JSON) -> None:
        if image["status"] == "saving":
            raise OvhError(409, "The snapshot is being made")
        del self.images[image["id"]]
