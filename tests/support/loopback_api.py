"""The plumbing every loopback fake of a cloud's JSON API shares: a ``ThreadingHTTPServer`` on
its own thread, a log of the requests it answered, and a queue of injected faults.

A fake subclasses ``LoopbackApi`` and writes ``answer()``: the provider's routes, error bodies and
headers. The server thread keeps the client's synchronous calls and the test's event loop from
waiting on each other. A fault is answered by the subclass (``fault_answer()``), except
``"drop"``, which cuts the connection without a word, and ``"slow"``, which waits ``slow_seconds``
before answering normally (for the client's timeout).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    status: int  # 0: the connection was cut


@dataclass
class Fault:
    kind: str  # the subclass's error name, "drop" or "slow"
    times: int | None  # None: until clear_faults()
    method: str | None = None  # only requests with this method


@dataclass
class Answer:
    status: int
    payload: JSON | None = None
    headers: dict[str, str] = field(default_factory=dict)


class LoopbackApi:
    """Start with ``with Fake() as fake:``; ``base_url`` is ``http://127.0.0.1:PORT``."""

    slow_seconds = 2.0

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.RLock()
        self._faults: list[Fault] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what a fake writes ------------------------------------------------------------------

    def answer(self, method: str, target: str, token: str | None, body: bytes) -> Answer:
        raise NotImplementedError

    def fault_answer(self, kind: str) -> Answer:
        raise NotImplementedError

    def known_fault(self, kind: str) -> bool:
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

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

    def record(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self.requests.append(Request(method, path, status))


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
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        path = self.path.split("?", 1)[0]
        fault = self.api.take_fault(self.command)
        if fault == "drop":
            self.api.record(self.command, path, 0)
            self.close_connection = True
            return
        if fault == "slow":
            time.sleep(self.api.slow_seconds)
            fault = None
        reply = (
            self.api.fault_answer(fault)
            if fault is not None
            else self.api.answer(self.command, self.path, token, body)
        )
        self.api.record(self.command, path, reply.status)
        self._send(reply)

    def _send(self, reply: Answer) -> None:
        raw = b"" if reply.payload is None else json.dumps(reply.payload).encode()
        self.send_response(reply.status)
        if raw:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting for a slow answer

    do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815
