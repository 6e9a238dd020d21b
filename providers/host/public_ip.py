"""This network's public address, as a service on the internet sees it (a home server behind
a router with a dynamic address). The URL must answer with the bare address, as
``https://api.ipify.org`` and ``https://ifconfig.me/ip`` do."""

from __future__ import annotations

import asyncio
import ipaddress
import urllib.error
import urllib.request

MAX_BYTES = 256


def parse_address(text: str) -> str:
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError:
        raise OSError(f"the answer is not an IP address: {text.strip()[:40]!r}") from None


class HttpPublicAddress:
    """One GET, no retries (the next check comes soon), a time limit; urllib in a thread, so
    a Matrix-only bot does not load an HTTP client for it."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the public IP URL must be http(s)")
        self.url = url
        self._timeout = timeout

    async def address(self) -> str:
        return parse_address(await asyncio.to_thread(self._get))

    def _get(self) -> str:
        request = urllib.request.Request(self.url, headers={"User-Agent": "steward"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                body: bytes = response.read(MAX_BYTES)
        except (urllib.error.URLError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OSError(f"{self.url} did not answer: {reason}") from None
        return body.decode(errors="replace")
