"""The one I/O seam of the Scaleway adapter: every request of the official SDK goes through
``ScalewayTransport.send``.

The SDK sends with ``requests.request`` and no timeout, and retries nothing. Its API classes
all send through ``API._request``; the adapter builds subclasses whose ``_request`` calls this
transport instead, so the SDK still builds every path, query and body, and unmarshals every
answer, while the transport owns the timeout, the retries and the error sentences.

Retry policy (at most ``max_tries`` tries in all, 3 by default):
- 429: retried for every method, since Scaleway refused it unread; the wait is the answer's
  ``Retry-After`` seconds (a backoff step without one). A ``Retry-After`` above
  ``max_retry_after`` (30 s) is not waited out: the rate limit sentence comes at once.
- 5xx and timeouts: retried for GET only, with exponential backoff (``backoff`` x 1, 2, 4 s).
  A write that failed that way may have happened; sending it again could, say, take two
  snapshots, so it is reported instead.
- Anything else (401, 403, 404, 409, a refused or dropped connection) is never retried.
Every failure becomes ``ScalewayApiError(code)`` with a code of ``providers.server.base``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

# Scaleway's error ``type`` values, and the statuses for answers without its JSON body.
_TYPES = {
    "denied_authentication": "unauthorized",
    "authentication_error": "unauthorized",
    "permissions_denied": "forbidden",
    "forbidden": "forbidden",
    "not_found": "not_found",
    "unknown_resource": "not_found",
    "transient_state": "locked",
    "resource_locked": "locked",
    "conflict": "conflict",
    "invalid_arguments": "invalid_input",
    "invalid_request_error": "invalid_input",
    "precondition_failed": "invalid_input",
    "out_of_stock": "service_error",
    "too_many_requests": "rate_limit_exceeded",
}
_STATUSES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "locked",
    429: "rate_limit_exceeded",
}


class ScalewayApiError(Exception):
    """A request that failed for good; ``code`` is one of ``providers.server.base``'s."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class ScalewayTransport:
    def __init__(
        self,
        *,
        timeout: float = 30.0,
        max_tries: int = 3,
        backoff: float = 1.0,
        max_retry_after: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import requests  # noqa: PLC0415 - comes with the SDK

        self._session = requests.Session()
        self._timeout = timeout
        self._max_tries = max(1, max_tries)
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._sleep = sleep

    def send(
        self,
        url: str,
        method: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str],
        body: Any,
    ) -> requests.Response:
        """Send one SDK request; returns a 2xx answer or raises ScalewayApiError."""
        method = method.upper()
        data = body if isinstance(body, bytes) else json.dumps({} if body is None else body)
        query = list(_flatten(params))
        for attempt in range(1, self._max_tries + 1):
            answer = self._try(method, url, query, dict(headers), data)
            last = attempt == self._max_tries
            if answer is None:  # a timeout
                if method != "GET" or last:
                    raise ScalewayApiError("timeout")
                self._sleep(self._step(attempt))
                continue
            wait = self._retry_wait(method, answer, attempt)
            if wait is None or last:
                return _checked(answer)
            self._sleep(wait)
        raise AssertionError("unreachable: the last try returns or raises")

    def _try(
        self,
        method: str,
        url: str,
        query: list[tuple[str, Any]],
        headers: dict[str, str],
        data: Any,
    ) -> requests.Response | None:
        import requests  # noqa: PLC0415

        try:
            return self._session.request(
                method, url, params=query, headers=headers, data=data, timeout=self._timeout
            )
        except requests.Timeout:
            return None
        except requests.RequestException:
            raise ScalewayApiError("unreachable") from None

    def _retry_wait(self, method: str, answer: requests.Response, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None: the answer is final."""
        if answer.status_code == 429:
            after = _seconds(answer.headers.get("Retry-After"))
            if after is None:
                return self._step(attempt)
            return after if after <= self._max_retry_after else None
        if answer.status_code >= 500 and method == "GET":
            return self._step(attempt)
        return None

    def _step(self, attempt: int) -> float:
        return float(self._backoff * 2 ** (attempt - 1))


def _checked(answer: requests.Response) -> requests.Response:
    if answer.status_code >= 400:
        raise ScalewayApiError(error_code(answer.status_code, answer.content))
    total = answer.headers.get("X-Total-Count")
    if total is not None and answer.content:
        # The SDK reads the count from the body's total_count; the API sends it as a header.
        payload = answer.json()
        payload["total_count"] = int(total)
        answer._content = json.dumps(payload).encode()
    return answer


def error_code(status: int, raw: bytes) -> str:
    """Scaleway's ``{"type", "message"}`` body names the reason; a proxy's page does not."""
    try:
        kind = json.loads(raw).get("type")
    except (ValueError, AttributeError):
        kind = None
    if isinstance(kind, str) and kind in _TYPES:
        return _TYPES[kind]
    if status >= 500:
        return "service_error"
    return _STATUSES.get(status, "invalid_input")


def _seconds(header: str | None) -> float | None:
    if header is None or not header.strip().isdigit():
        return None
    return float(header.strip())


def _flatten(params: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """As the SDK does it: None is left out and a list becomes repeated keys."""
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, list):
            yield from ((key, item) for item in value)
        else:
            yield key, value


def through(api_class: type[Any], client: Any, transport: ScalewayTransport) -> Any:
    """An instance of the SDK's ``api_class`` whose requests all go through ``transport``."""

    def _request(  # noqa: PLR0917 - the SDK's own signature, which it calls
        self: Any,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> requests.Response:
        sent = {"accept": "application/json", "user-agent": self.client.user_agent}
        if method.upper() in {"POST", "PUT", "PATCH"}:
            sent["Content-Type"] = "application/json; charset=utf-8"
        sent |= dict(headers or {})
        sent["x-auth-token"] = self.client.secret_key
        return transport.send(f"{self.client.api_url}{path}", method, params or {}, sent, body)

    seam = type(f"Steward{api_class.__name__}", (api_class,), {"_request": _request})
    # The credentials were checked by the adapter, whose messages never echo a key.
    return seam(client, bypass_validation=True)
