"""The HTTP seam of the DigitalOcean adapter: its retry policy and its reading of errors.

pydo sends every request through azure-core's pipeline; ``TransientRetryPolicy`` takes the place
of azure-core's own retry policy there (which retries ten times and sleeps for as long as any
``Retry-After`` asks). The policy itself is written in ``providers/server/digitalocean.py``.

Only the adapter's constructor imports this module, so azure-core is loaded with pydo and only
when DigitalOcean is configured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy
from azure.core.rest import HttpRequest, HttpResponse

# Methods that may be sent again after an answer was lost or the server failed: a repeated POST
# could start a second snapshot.
REPEATABLE = frozenset({"GET", "HEAD", "PUT", "DELETE"})
TIMEOUTS = (ServiceRequestTimeoutError, ServiceResponseTimeoutError)


class TransientRetryPolicy(HTTPPolicy[HttpRequest, HttpResponse]):
    """``tries`` in all; waits ``backoff`` x 2^n, or what ``Retry-After`` asks, up to
    ``max_wait`` seconds. A longer ``Retry-After`` is reported at once, not slept through."""

    def __init__(
        self,
        tries: int = 4,
        backoff: float = 0.5,
        max_wait: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.tries = max(1, tries)
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep

    def send(
        self, request: PipelineRequest[HttpRequest]
    ) -> PipelineResponse[HttpRequest, HttpResponse]:
        method = request.http_request.method.upper()
        for attempt in range(1, self.tries):
            try:
                response = self.next.send(request)
            except TIMEOUTS as exc:
                # A connect timeout never reached the API; a read timeout may have.
                if method not in REPEATABLE and not isinstance(exc, ServiceRequestTimeoutError):
                    raise
                self.sleep(self._backoff(attempt))
                continue
            wait = self._wait(response.http_response, method, attempt)
            if wait is None:
                return response
            self.sleep(wait)
        return self.next.send(request)

    def _wait(self, response: HttpResponse, method: str, attempt: int) -> float | None:
        if response.status_code == 429:
            asked = retry_after(response.headers)
            wait = self._backoff(attempt) if asked is None else asked
            return wait if wait <= self.max_wait else None
        if response.status_code >= 500 and method in REPEATABLE:
            return self._backoff(attempt)
        return None

    def _backoff(self, attempt: int) -> float:
        return float(min(self.max_wait, self.backoff * 2 ** (attempt - 1)))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """DigitalOcean writes ``Retry-After`` in seconds."""
    raw = headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def error_code(exc: AzureError) -> str:
    """The ``server_error`` code for whatever the pipeline raised."""
    if isinstance(exc, TIMEOUTS):
        return "timeout"
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return "unreachable"
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return status_code(exc.status_code, _body(exc))
    return "service_error"


def status_code(status: int, body: Mapping[str, Any]) -> str:
    """An answer's status (and error body, ``{"id", "message"}``) as a ``server_error`` code."""
    if status == 422 and "pending event" in str(body.get("message", "")).lower():
        return "locked"  # an action is still running on the droplet
    known = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
             429: "rate_limit_exceeded"}  # fmt: skip
    if status in known:
        return known[status]
    return "service_error" if status >= 500 else "invalid_input"


def _body(exc: HttpResponseError) -> Mapping[str, Any]:
    try:
        found = json.loads(exc.response.text()) if exc.response is not None else None
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
