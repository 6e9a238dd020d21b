"""The Scaleway side of the ServerProvider contract (tests/providers/test_server_contract.py):
the real adapter, through its real I/O seam, on a loopback fake of the Scaleway APIs.

Kept apart so that the shared contract module only names it; the other providers' harnesses
live beside the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from providers.server.scaleway import ScalewayServerProvider
from providers.server.scaleway_transport import ScalewayTransport
from tests.support.fake_scaleway import ACCESS_KEY, PROJECT, SECRET_KEY, FakeScaleway


def scaleway_provider(fake: FakeScaleway, **options: Any) -> ScalewayServerProvider:
    """The adapter as the bot builds it, with short polls; its retry policy (which errors,
    how many tries) is kept, its waits are not."""
    settings: dict[str, Any] = {"server": "steward", "action_timeout": 5.0} | options
    transport = settings.pop("transport", None) or ScalewayTransport(backoff=0.0, timeout=5.0)
    return ScalewayServerProvider(
        settings.pop("access_key", ACCESS_KEY),
        settings.pop("secret_key", SECRET_KEY),
        project_id=PROJECT,
        zone="fr-par-1",
        api_url=fake.api_url,
        poll_interval=0.01,
        transport=transport,
        **settings,
    )


def populated(fake: FakeScaleway) -> tuple[dict[str, Any], dict[str, Any]]:
    """This instance ``steward`` (2 vCPU, 4 GB, 40 GB root volume, 203.0.113.10), a second
    instance ``backup-box`` without IPv4, a 20 GB volume ``data`` and a 1.5 GB snapshot of the
    root volume. Returns (this server, the snapshot)."""
    this = fake.add_server("steward")
    fake.add_server("backup-box", ipv4=None, ipv6="2001:db8:beef::1")
    fake.add_volume("data", 20, this["id"])
    snap = fake.add_snapshot("before upgrade", 1.5, fake.root_volume(this)["id"])
    return this, snap


def scaleway_harness(harness: Callable[..., Any]) -> Iterator[Any]:
    with FakeScaleway() as fake:
        fake.retry_after = 0  # the contract's persistent 429s are retried without a wait
        _, snap = populated(fake)

        def fail(kind: str) -> None:
            if kind == "read_only":
                fake.keys[SECRET_KEY] = "read"
            elif kind == "action_error":
                fake.fail_actions = True
            elif kind == "locked":
                for method in ("POST", "PATCH", "DELETE"):
                    fake.inject("locked", times=None, method=method)
            else:
                code = {"down": "drop", "rate_limited": "rate_limit_exceeded"}.get(kind, kind)
                fake.inject(code, times=None)

        yield harness("scaleway", scaleway_provider(fake), fake.state, fail, snap["id"])
