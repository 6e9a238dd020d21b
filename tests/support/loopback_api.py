"""The plumbing every loopback fake of a cloud's JSON API shares: a ``ThreadingHTTPServer`` on
its own thread, a log of the requests it answered, a queue of injected faults, paging and the
reading of JSON bodies, and work that finishes as it is polled.

A fake subclasses ``LoopbackApi`` and writes ``answer()``: the provider's credentials, routes,
error bodies and headers. The server thread keeps the client's synchronous calls and the test's
event loop from waiting on each other. A fault is answered by the subclass
(``fault_answer()``), except ``"drop"``, which cuts the connection without a word, and
``"slow"``, which waits ``slow_seconds`` before answering normally (for the client's timeout).
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

JSON = dict[str, Any]
Query = dict[str, list[str]]
_K = TypeVar("_K", bound=Hashable)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query and without the fake's ``api_prefix``
    status: int  # 0: the connection was cut
    query: Query = field(default_factory=dict)


@dataclass
class Fault:
    kind: str  # the subclass's error name, "drop" or "slow"
    times: int | None  # None: until clear_faults()
    method: str | None = None  # only requests with this method


@dataclass
class Answer:
    status: int
    payload: Any = None  # a JSON value; None is no body (unless the fake's encode() says)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Call:
    """One request as ``answer()`` sees it."""

    method: str
    target: str  # the path and query, as sent
    headers: Message
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> Query:
        return parse_qs(urlsplit(self.target).query)

    @property
    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header."""
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


class LoopbackApi:
    """Start with ``with Fake() as fake:``; ``base_url`` is ``http://127.0.0.1:PORT`` and
    ``api_url`` adds the provider's ``api_prefix`` (``/v1``), which the request log leaves out.
    """

    slow_seconds = 2.0
    api_prefix = ""
    content_type = "application/json"
    tables: tuple[str, ...] = ()  # the attributes a call may change, for state()

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.RLock()
        self._faults: list[Fault] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what a fake writes ------------------------------------------------------------------

    def answer(self, call: Call) -> Answer:
        raise NotImplementedError

    def fault_answer(self, kind: str) -> Answer:
        raise NotImplementedError

    def known_fault(self, kind: str) -> bool:
        raise NotImplementedError

    def encode(self, payload: Any) -> bytes:
        """The body of an answer: its JSON, or nothing for None."""
        return b"" if payload is None else json.dumps(payload).encode()

    def state(self) -> JSON:
        """A deep copy of everything a call could change, to compare before and after."""
        with self.lock:
            return copy.deepcopy({name: getattr(self, name) for name in self.tables})

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.base_url + self.api_prefix

    def start(self) -> Self:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults -------------------------------------------------------------------------------

    def inject(self, kind: str, times: int | None = 1, method: str | None = None) -> None:
        """Answer the next ``times`` requests (all, if None) with fault ``kind``; ``method``
        limits it to e.g. POST."""
        if kind not in {"drop", "slow"} and not self.known_fault(kind):
            raise ValueError(f"unknown fault {kind}")
        with self.lock:
            self._faults.append(Fault(kind, times, method))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self, method: str) -> str | None:
        with self.lock:
            for fault in self._faults:
                if fault.method not in (None, method):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault.kind
        return None

    def record(self, call: Call, status: int) -> None:
        with self.lock:
            path = call.path.removeprefix(self.api_prefix)
            self.requests.append(Request(call.method, path, status, call.query))


def _handler_for(api: LoopbackApi) -> type[BaseHTTPRequestHandler]:
    class Handler(_JsonHandler):
        pass

    Handler.api = api
    return Handler


class _JsonHandler(BaseHTTPRequestHandler):
    api: LoopbackApi
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test reads ``requests`` instead."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        call = Call(self.command, self.path, self.headers, body)
        fault = self.api.take_fault(self.command)
        if fault == "drop":
            self.api.record(call, 0)
            self.close_connection = True
            return
        if fault == "slow":
            time.sleep(self.api.slow_seconds)
            fault = None
        reply = self.api.fault_answer(fault) if fault is not None else self.api.answer(call)
        self.api.record(call, reply.status)
        self._send(reply)

    def _send(self, reply: Answer) -> None:
        raw = self.api.encode(reply.payload)
        self.send_response(reply.status)
        if raw:
            self.send_header("Content-Type", self.api.content_type)
        self.send_header("Content-Length", str(len(raw)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting for a slow answer

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815


# -- what the providers' APIs have in common -------------------------------------------------------


def page_of(rows: Sequence[_T], page: int, per_page: int) -> list[_T]:
    """Page ``page`` (from 1) of ``rows``; past the end, an empty page."""
    return list(rows[(page - 1) * per_page : page * per_page])


def last_page(total: int, per_page: int) -> int:
    """The number of the last page: 1 for no rows, as the APIs count."""
    return max(1, math.ceil(total / per_page))


def query_int(query: Query, name: str, default: int, refuse: Callable[[str], Exception]) -> int:
    """A whole number from 1 in the query (``default`` if absent); else ``refuse(name)``."""
    raw = query.get(name, [str(default)])[0]
    if not raw.isdigit() or int(raw) < 1:
        raise refuse(name)
    return int(raw)


def json_object(body: bytes, not_json: Exception, not_object: Exception) -> JSON:
    """A request body that must be a JSON object (an empty body is ``{}``); the provider's own
    errors for what is not JSON and what is not an object."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise not_json from None
    if not isinstance(data, dict):
        raise not_object
    return data


class Progress(Generic[_K]):
    """Work that finishes after it has been polled: ``start()`` it with a number of polls and
    what happens when it ends; each ``poll()`` counts one down, the last one ``finish()``es it.
    """

    def __init__(self) -> None:
        self._left: dict[_K, tuple[int, Callable[[], None]]] = {}

    def start(self, key: _K, polls: int, finish: Callable[[], None]) -> None:
        self._left[key] = (polls, finish)

    def __contains__(self, key: object) -> bool:
        return key in self._left

    def __iter__(self) -> Iterator[_K]:
        return iter(self._left)

    def poll(self, key: _K, *, hold: bool = False) -> Literal["running", "finished"] | None:
        """``running`` when a poll was counted, ``finished`` when this one ended the work;
        None when there is no work under ``key`` or it is held."""
        pending = self._left.get(key)
        if pending is None or hold:
            return None
        left, finish = pending
        if left > 0:
            self._left[key] = (left - 1, finish)
            return "running"
        del self._left[key]
        finish()
        return "finished"
