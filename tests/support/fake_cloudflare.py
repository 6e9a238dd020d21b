"""A loopback fake of the Cloudflare v4 API (zones and DNS records), for the official SDK.

It serves ``http://127.0.0.1:PORT/client/v4`` from a thread and follows the public API
documentation (https://developers.cloudflare.com/api/): every answer is the envelope
``{"success", "errors", "messages", "result"}``, lists add ``result_info`` with ``page``,
``per_page``, ``count``, ``total_count`` and ``total_pages`` and answer an EMPTY page past the
end (the SDK asks for the next page until one comes back empty). Records are listed by
``name`` (also ``name.exact``, ``name.contains``, ``name.startswith``, ``name.endswith``),
``type`` and ``content``; CAA records are written with ``data`` and read with both ``content``
and ``data``; ``ttl`` 1 means automatic.

Tokens: ``token`` may edit DNS, ``read_only_token`` may only read (writes get 403, code
10000), anything else gets 401 (code 10000, "Authentication error"). Faults: ``fail`` (429
with the error envelope and Retry-After, 500 with the envelope, 502-504 with an HTML page like
Cloudflare's edge) and ``drop`` (the connection closes with no answer).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

JSON = dict[str, Any]
PREFIX = "/client/v4"
RECORD_TYPES = frozenset({"A", "AAAA", "CNAME", "MX", "TXT", "CAA", "NS", "SRV", "PTR"})
_RECORD_PATH = re.compile(r"/zones/([0-9a-f]{32})/dns_records(?:/([0-9a-f]{32}))?")
_ZONE_PATH = re.compile(r"/zones(?:/([0-9a-f]{32}))?")
_HTML_STATUS = {502: "Bad gateway", 503: "Service unavailable", 504: "Gateway time-out"}


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: JSON | None
    status: int


@dataclass
class _Fault:
    method: str  # "GET", "POST", ... or "*"
    kind: str  # "fail" or "drop"
    times: int | None
    status: int = 0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeCloudflare:
    """Zones and records in memory; thread-safe; a context manager that starts and stops the
    server."""

    def __init__(self) -> None:
        self.token = "cf-token-" + uuid.uuid4().hex
        self.read_only_token = "cf-readonly-" + uuid.uuid4().hex
        self.account = {"id": uuid.uuid4().hex, "name": "Steward test account"}
        self._zones: dict[str, JSON] = {}
        self._records: dict[str, dict[str, JSON]] = {}
        self._faults: list[_Fault] = []
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Cloudflare API is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}{PREFIX}"

    def start(self) -> FakeCloudflare:
        handler = type("Handler", (_Handler,), {"fake": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="fake-cloudflare", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeCloudflare:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state ----------------------------------------------------------------------------

    def add_zone(self, name: str) -> str:
        zone_id = uuid.uuid4().hex
        stamp = _now()
        zone = {
            "id": zone_id,
            "name": name,
            "status": "active",
            "paused": False,
            "type": "full",
            "development_mode": 0,
            "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
            "original_name_servers": None,
            "original_registrar": None,
            "original_dnshost": None,
            "created_on": stamp,
            "modified_on": stamp,
            "activated_on": stamp,
            "account": dict(self.account),
            "owner": {"id": None, "type": "user", "email": None},
            "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
            "plan": {"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website"},
            "meta": {"phishing_detected": False},
            "vanity_name_servers": [],
        }
        with self._lock:
            self._zones[zone_id] = zone
            self._records[zone_id] = {}
        return zone_id

    def zone_id(self, name: str) -> str:
        with self._lock:
            return str(next(z["id"] for z in self._zones.values() if z["name"] == name))

    def add_record(self, zone: str, body: JSON) -> JSON:
        """Add a record as POST /dns_records would (the same checks); return it."""
        zone_id = self.zone_id(zone)
        with self._lock:
            return copy.deepcopy(self._create(zone_id, body))

    def remove_records(self, zone: str) -> None:
        zone_id = self.zone_id(zone)
        with self._lock:
            self._records[zone_id].clear()

    def records(self, zone: str) -> list[JSON]:
        zone_id = self.zone_id(zone)
        with self._lock:
            return copy.deepcopy(list(self._records[zone_id].values()))

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    @property
    def writes(self) -> list[Call]:
        """Calls that asked to change something, whatever the answer."""
        return [call for call in self.calls if call.method != "GET"]

    # -- error injection ------------------------------------------------------------------

    def fail(self, status: int, method: str = "*", times: int | None = 1) -> None:
        """The next ``times`` requests (of ``method``; None times for ever) get ``status``."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), "fail", times, status))

    def drop(self, method: str = "*", times: int | None = 1) -> None:
        """The next ``times`` requests get their connection closed with no answer."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), "drop", times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in ("*", method):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def record_call(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    # -- the API --------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> JSON:
        """Answer one authorised request; ApiError for a documented error."""
        with self._lock:
            match = _RECORD_PATH.fullmatch(path)
            if match is not None:
                return self._records_call(method, match[1], match[2], query, body)
            match = _ZONE_PATH.fullmatch(path)
            if match is not None and method == "GET":
                return self._zones_call(match[1], query)
            raise ApiError(404, 7000, "No route for that URI")

    def _zones_call(self, zone_id: str | None, query: dict[str, list[str]]) -> JSON:
        if zone_id is not None:
            if zone_id not in self._zones:
                raise ApiError(404, 1001, "Invalid zone identifier")
            return {"result": copy.deepcopy(self._zones[zone_id])}
        zones = list(self._zones.values())
        name = _one(query, "name")
        if name is not None:
            zones = [zone for zone in zones if zone["name"] == name.lower()]
        return _page(zones, query, default=20, largest=50)

    def _records_call(
        self,
        method: str,
        zone_id: str,
        record_id: str | None,
        query: dict[str, list[str]],
        body: Any,
    ) -> JSON:
        if zone_id not in self._zones:
            raise ApiError(
                404,
                7003,
                f"Could not route to /zones/{zone_id}/dns_records, perhaps your "
                "object identifier is invalid?",
            )
        if record_id is None:
            if method == "GET":
                return self._list_records(zone_id, query)
            if method == "POST":
                return {"result": self._create(zone_id, _object(body))}
            raise ApiError(405, 10405, "Method not allowed")
        records = self._records[zone_id]
        if record_id not in records:
            raise ApiError(404, 81044, "Record does not exist.")
        if method == "GET":
            return {"result": copy.deepcopy(records[record_id])}
        if method == "DELETE":
            del records[record_id]
            return {"result": {"id": record_id}}
        if method in ("PATCH", "PUT"):
            return {"result": self._change(zone_id, record_id, _object(body), method == "PUT")}
        raise ApiError(405, 10405, "Method not allowed")

    def _list_records(self, zone_id: str, query: dict[str, list[str]]) -> JSON:
        records = sorted(self._records[zone_id].values(), key=lambda r: (r["type"], r["name"]))
        for key in query:
            field, _, operator = key.partition(".")
            if field in ("name", "content", "type"):
                wanted = query[key][0].lower()
                records = [r for r in records if _matches(r[field], operator, wanted)]
        return _page(records, query, default=100, largest=5_000_000)

    def _create(self, zone_id: str, body: JSON) -> JSON:
        stamp = _now()
        record = {
            "id": uuid.uuid4().hex,
            "zone_id": zone_id,
            "zone_name": self._zones[zone_id]["name"],
            "proxiable": False,
            "proxied": False,
            "comment": None,
            "tags": [],
            "settings": {},
            "meta": {},
            "created_on": stamp,
            "modified_on": stamp,
        }
        record.update(self._validated(zone_id, body, None))
        self._records[zone_id][record["id"]] = record
        return copy.deepcopy(record)

    def _change(self, zone_id: str, record_id: str, body: JSON, replace_all: bool) -> JSON:
        record = self._records[zone_id][record_id]
        merged = dict(body) if replace_all else {**_writable(record), **body}
        record.update(self._validated(zone_id, merged, record_id))
        if record["type"] != "MX":
            record.pop("priority", None)
        if record["type"] != "CAA":
            record.pop("data", None)
        record["modified_on"] = _now()
        return copy.deepcopy(record)

    def _validated(self, zone_id: str, body: JSON, record_id: str | None) -> JSON:
        zone_name = self._zones[zone_id]["name"]
        kind = body.get("type")
        if kind not in RECORD_TYPES:
            raise ApiError(400, 9000, "DNS record type is invalid.")
        name = _full_name(str(body.get("name", "")), zone_name)
        ttl = body.get("ttl")
        if not isinstance(ttl, int) or not (ttl == 1 or 60 <= ttl <= 86400):
            raise ApiError(
                400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."
            )
        fields: JSON = {"type": kind, "name": name, "ttl": ttl}
        fields.update(_content_fields(kind, body))
        self._refuse_clash(zone_id, fields, record_id)
        return fields

    def _refuse_clash(self, zone_id: str, fields: JSON, record_id: str | None) -> None:
        for other in self._records[zone_id].values():
            if other["id"] == record_id or other["name"] != fields["name"]:
                continue
            if other["type"] == fields["type"] and other["content"] == fields["content"]:
                raise ApiError(400, 81058, "An identical record already exists.")
            if "CNAME" in (other["type"], fields["type"]):
                raise ApiError(
                    400, 81053, "An A, AAAA, or CNAME record with that host already exists."
                )


def _content_fields(kind: str, body: JSON) -> JSON:
    if kind == "CAA":
        data = body.get("data")
        if not isinstance(data, dict) or not {"flags", "tag", "value"} <= data.keys():
            raise ApiError(400, 9101, "CAA records need data with flags, tag and value.")
        value = str(data["value"]).replace('"', '\\"')
        caa = f'{int(data["flags"])} {data["tag"]} "{value}"'
        return {"content": caa, "data": {k: data[k] for k in ("flags", "tag", "value")}}
    content = body.get("content")
    if not isinstance(content, str) or not content:
        raise ApiError(400, 9005, f"Content for {kind} record is invalid.")
    if kind == "A":
        _address(
            ipaddress.IPv4Address, content, "Content for A record must be a valid IPv4 address."
        )
    if kind == "AAAA":
        _address(
            ipaddress.IPv6Address, content, "Content for AAAA record must be a valid IPv6 address."
        )
    fields: JSON = {"content": content}
    if kind == "MX":
        priority = body.get("priority")
        if not isinstance(priority, int) or not 0 <= priority <= 65535:
            raise ApiError(400, 9100, "MX records must have a priority between 0 and 65535.")
        fields["priority"] = priority
    return fields


def _address(kind: Any, content: str, message: str) -> None:
    try:
        kind(content)
    except ValueError:
        raise ApiError(400, 9005, message) from None


def _writable(record: JSON) -> JSON:
    keys = ("type", "name", "ttl", "content", "priority", "data", "proxied", "comment", "tags")
    return {key: record[key] for key in keys if key in record}


def _full_name(name: str, zone: str) -> str:
    name = name.strip().rstrip(".").lower()
    if name in ("", "@"):
        return zone
    if name == zone or name.endswith("." + zone):
        return name
    return f"{name}.{zone}"


def _matches(value: str, operator: str, wanted: str) -> bool:
    value = value.lower()
    if operator == "contains":
        return wanted in value
    if operator == "startswith":
        return value.startswith(wanted)
    if operator == "endswith":
        return value.endswith(wanted)
    return value == wanted


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _int(query: dict[str, list[str]], key: str, default: int) -> int:
    raw = _one(query, key)
    if raw is None:
        return default
    try:
        return int(float(raw))
    except ValueError:
        raise ApiError(400, 1004, f"Invalid value for {key}") from None


def _page(items: list[JSON], query: dict[str, list[str]], default: int, largest: int) -> JSON:
    page = max(1, _int(query, "page", 1))
    per_page = min(max(5, _int(query, "per_page", default)), largest)
    chunk = items[(page - 1) * per_page : page * per_page]
    total_pages = (len(items) + per_page - 1) // per_page
    return {
        "result": copy.deepcopy(chunk),
        "result_info": {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": len(items),
            "total_pages": total_pages,
        },
    }


def _object(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise ApiError(400, 9207, "Request body is invalid.")
    return body


def envelope(result: Any, errors: list[JSON] | None = None, **extra: Any) -> JSON:
    return {
        "success": not errors,
        "errors": errors or [],
        "messages": [],
        "result": result,
        **extra,
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeCloudflare
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the calls are in ``fake.calls``."""

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.removeprefix(PREFIX)
        query = parse_qs(url.query)
        body = self._body()
        fault = self.fake.take_fault(method)
        if fault is not None and fault.kind == "drop":
            self.fake.record_call(Call(method, path, query, body, 0))
            self.close_connection = True
            self.connection.close()
            return
        status, payload, headers = self._answer(method, path, query, body, fault)
        self.fake.record_call(Call(method, path, query, body, status))
        self._send(status, payload, headers)

    def _answer(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, fault: _Fault | None
    ) -> tuple[int, JSON | str, dict[str, str]]:
        if fault is not None:
            return _fault_answer(fault.status)
        try:
            self._authorise(method)
            result = self.fake.handle(method, path, query, body)
        except ApiError as error:
            errors = [{"code": error.code, "message": error.message}]
            return error.status, envelope(None, errors), {}
        return 200, envelope(result.pop("result"), **result), {}

    def _authorise(self, method: str) -> None:
        header = self.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        if token == self.fake.token:
            return
        if token == self.fake.read_only_token:
            if method == "GET":
                return
            raise ApiError(403, 10000, "Authentication error")
        raise ApiError(401, 10000, "Authentication error")

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def _send(self, status: int, payload: JSON | str, headers: dict[str, str]) -> None:
        if isinstance(payload, str):
            data, content_type = payload.encode(), "text/html"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _fault_answer(status: int) -> tuple[int, JSON | str, dict[str, str]]:
    if status == 429:
        errors = [
            {"code": 971, "message": "Please wait and consider throttling your request speed"}
        ]
        return 429, envelope(None, errors), {"Retry-After": "1"}
    if status in _HTML_STATUS:
        reason = f"{status}: {_HTML_STATUS[status]}"
        page = f"<html><head><title>{reason}</title></head><body><h1>{reason}</h1></body></html>"
        return status, page, {}
    errors = [{"code": 10002, "message": "An unknown error has occurred"}]
    return status, envelope(None, errors), {}
