"""How OVHcloud's answers become ServerError codes, and which are worth another try.

The retry policy itself is written in providers/server/ovh.py, which applies what ``classify`` says.
"""

from __future__ import annotations

from typing import Any

_TRANSIENT = {500, 502, 503, 504}
_UNAUTHORIZED = {"INVALID_CREDENTIAL", "INVALID_KEY", "NOT_CREDENTIAL", "INVALID_SIGNATURE",
                 "QUERY_TIME_OUT"}  # fmt: skip
_BY_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "locked",
              429: "rate_limit_exceeded", 400: "invalid_input"}  # fmt: skip


def classify(exc: Exception, method: str) -> tuple[str, float | None]:
    """(error code, seconds to wait before a retry: -1 for the backoff, None for no retry)."""
    import requests  # noqa: PLC0415 - comes with ovh
    from ovh.exceptions import HTTPError, InvalidResponse  # noqa: PLC0415

    server_side = -1.0 if method == "GET" else None
    if isinstance(exc, HTTPError):
        cause = exc.args[1] if len(exc.args) > 1 else None
        timed_out = isinstance(cause, requests.Timeout)
        return ("timeout", server_side) if timed_out else ("unreachable", None)
    response = getattr(exc, "response", None)
    if isinstance(exc, InvalidResponse) or response is None:
        return "service_error", server_side  # a proxy's HTML page, not the API's JSON
    status = response.status_code
    if status == 429:
        return "rate_limit_exceeded", _retry_after(response.headers.get("Retry-After"))
    if status >= 500:
        return "service_error", server_side if status in _TRANSIENT else None
    code = "unauthorized" if _error_code(response) in _UNAUTHORIZED else None
    return code or _BY_STATUS.get(status, "invalid_input"), None


def _error_code(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("errorCode") or "") if isinstance(body, dict) else ""


def _retry_after(header: str | None) -> float:
    try:
        return max(0.0, float(header)) if header else -1.0
    except ValueError:
        return -1.0
