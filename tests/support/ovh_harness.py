"""The OVHcloud adapter on the loopback fake, as the server contract suite uses it.

The ``ovh`` SDK knows endpoints only by name; the adapter sets a URL on the client itself, so
the SDK's real signing and HTTP run against the fake (no faking at the SDK's Session).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from providers.server.ovh import OvhServerProvider
from tests.support.fake_ovh import APP_KEY, APP_SECRET, CONSUMER_KEY, PROJECT, FakeOvh


def ovh_provider(fake: FakeOvh, **kwargs: Any) -> OvhServerProvider:
    """Polls every 10 ms and, unless told otherwise, retries without waiting."""
    options: dict[str, Any] = {
        "application_key": APP_KEY,
        "application_secret": APP_SECRET,
        "consumer_key": CONSUMER_KEY,
        "project_id": PROJECT,
        "instance": "steward",
        "poll_interval": 0.01,
        "operation_timeout": 5.0,
        "backoff": 0.0,
        "max_retry_wait": 0.0,
    }
    return OvhServerProvider(endpoint=fake.api_url, **(options | kwargs))


def ovh_contract_parts() -> Iterator[dict[str, Any]]:
    """The contract's world at OVHcloud: ``steward`` (d2-4, 2 vCPU, 4 GB, 40 GB, GRA11),
    ``backup-box`` without IPv4, a 20 GB volume ``data`` and a 1.5 GB snapshot."""
    with FakeOvh() as fake:
        this = fake.add_instance("steward")
        fake.add_instance("backup-box", ipv4=None, ipv6="2001:db8:beef::1", region="SBG5")
        volume = fake.add_volume("data", 20, this["id"])
        yesterday = datetime.now(UTC) - timedelta(days=1)
        snap = fake.add_snapshot("before upgrade", 1.5, this["id"], created=yesterday)

        def fail(kind: str) -> None:
            if kind == "read_only":
                fake.consumers[CONSUMER_KEY] = {"GET"}
            elif kind == "unauthorized":
                del fake.consumers[CONSUMER_KEY]  # a revoked consumer key: INVALID_CREDENTIAL
            elif kind == "action_error":
                fake.fail_operations = True
            else:
                fault = {"down": "drop"}.get(kind, kind)
                for method in ("POST", "DELETE") if kind == "locked" else (None,):
                    fake.inject(fault, times=None, method=method)

        def after_failure(before: dict[str, Any], write: str) -> dict[str, Any]:
            """OpenStack marks what failed: the volume ``error_extending``, the instance
            ``ERROR``; a failed snapshot image is deleted again by the adapter."""
            if write == "resize":
                before["volumes"][volume["id"]]["status"] = "error_extending"
            if write == "power":
                before["instances"][this["id"]]["status"] = "ERROR"
            return before

        marks: Callable[[dict[str, Any], str], dict[str, Any]] = after_failure
        yield {
            "provider": ovh_provider(fake),
            "state": fake.state,
            "fail": fail,
            "snapshot_id": snap["id"],
            "after_failure": marks,
        }
