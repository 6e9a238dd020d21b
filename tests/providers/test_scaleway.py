"""What is Scaleway's own, beyond the shared contract (tests/providers/test_server_contract.py):
the retry policy of the adapter's I/O seam, finding this instance, long work that never ends,
and settings that never echo a key. Real SDK, real adapter, loopback fake of the API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.server.base import ServerError
from providers.server.scaleway_transport import ScalewayTransport
from tests.support.fake_scaleway import ACCESS_KEY, PROJECT, SECRET_KEY, FakeScaleway
from tests.support.scaleway_harness import scaleway_provider

pytestmark = pytest.mark.timeout(30)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeScaleway]:
    with FakeScaleway() as running:
        running.add_server("steward")
        yield running


def statuses(fake: FakeScaleway) -> list[int]:
    return [r.status for r in fake.requests]


async def test_a_rate_limit_is_waited_out_as_retry_after_says(fake: FakeScaleway) -> None:
    fake.inject("rate_limit_exceeded", times=1)
    started = time.monotonic()
    assert (await scaleway_provider(fake).this_server()).name == "steward"
    assert statuses(fake)[:2] == [429, 200]
    assert time.monotonic() - started >= 0.9  # Retry-After: 1


async def test_a_persistent_rate_limit_is_tried_three_times(fake: FakeScaleway) -> None:
    fake.retry_after = 0
    fake.inject("rate_limit_exceeded", times=None)
    with pytest.raises(ServerError, match="rate limit") as caught:
        await scaleway_provider(fake).volumes()
    assert caught.value.code == "rate_limit_exceeded"
    assert statuses(fake) == [429] * 3


async def test_a_long_retry_after_is_reported_not_waited(fake: FakeScaleway) -> None:
    fake.retry_after = 3600
    fake.inject("rate_limit_exceeded", times=None)
    with pytest.raises(ServerError, match="rate limit"):
        await scaleway_provider(fake).this_server()
    assert statuses(fake) == [429]


async def test_a_5xx_is_retried_for_reads_but_not_for_writes(fake: FakeScaleway) -> None:
    fake.inject("service_error", times=1)
    assert (await scaleway_provider(fake).this_server()).status == "running"
    assert statuses(fake)[:2] == [503, 200]
    fake.inject("service_error", times=1, method="POST")
    before = len(fake.requests)
    with pytest.raises(ServerError, match="has a problem right now"):
        await scaleway_provider(fake).create_snapshot("x")
    posts = [r.status for r in fake.requests[before:] if r.method == "POST"]
    assert posts == [503]


async def test_a_dropped_connection_is_not_retried(fake: FakeScaleway) -> None:
    fake.inject("drop", times=1)
    with pytest.raises(ServerError, match=r"^Cannot reach the cloud API\.$"):
        await scaleway_provider(fake).this_server()
    assert statuses(fake) == [0]


async def test_a_slow_answer_times_out_and_a_read_is_tried_again(fake: FakeScaleway) -> None:
    fake.slow_seconds = 0.5
    fake.inject("slow", times=None)
    seam = ScalewayTransport(timeout=0.1, backoff=0.0)
    with pytest.raises(ServerError, match="did not answer in time") as caught:
        await scaleway_provider(fake, transport=seam).this_server()
    assert caught.value.code == "timeout"
    await asyncio.sleep(0.6)  # the fake's slow answers finish before the count
    assert len(fake.requests) == 3


async def test_this_instance_is_found_by_its_ipv4_across_pages(fake: FakeScaleway) -> None:
    for n in range(60):  # more than one page of 50
        fake.add_server(f"web{n}", ipv4=f"198.51.100.{n + 1}", ipv6=None)
    fake.servers = dict(reversed(list(fake.servers.items())))  # steward on the second page
    provider = scaleway_provider(fake, server=None, public_ip="203.0.113.10")
    assert (await provider.this_server()).name == "steward"
    pages = [r.query.get("page") for r in fake.requests if r.path.endswith("fr-par-1/servers")]
    assert pages == [["1"], ["2"], ["3"]]  # the SDK pages until the fake's empty third page


async def test_an_unknown_address_or_no_setting_says_what_to_set(fake: FakeScaleway) -> None:
    lost = scaleway_provider(fake, server=None, public_ip="192.0.2.99")
    with pytest.raises(ServerError, match=r"192\.0\.2\.99; set STEWARD_SCALEWAY_SERVER"):
        await lost.this_server()
    with pytest.raises(ServerError, match="set STEWARD_SCALEWAY_SERVER to its id or name"):
        await scaleway_provider(fake, server=None).this_server()


async def test_a_name_is_matched_exactly_not_as_the_api_filters(fake: FakeScaleway) -> None:
    fake.add_server("steward-old", ipv4="198.51.100.7")
    assert (await scaleway_provider(fake).server("steward")).ipv4 == "203.0.113.10"
    with pytest.raises(ServerError, match="no server 'stew'"):
        await scaleway_provider(fake).server("stew")


async def test_a_power_action_that_never_settles_times_out_then_is_busy(
    fake: FakeScaleway,
) -> None:
    fake.hold = True
    provider = scaleway_provider(fake, action_timeout=0.2)
    with pytest.raises(ServerError, match=r"did not finish the poweroff within 0\.2 s"):
        await provider.power("steward", "poweroff")
    with pytest.raises(ServerError, match="busy with another action") as caught:
        await provider.power("steward", "poweron")
    assert caught.value.code == "locked"


async def test_a_failed_snapshot_is_removed_and_reported(fake: FakeScaleway) -> None:
    fake.fail_actions = True
    with pytest.raises(ServerError, match="snapshot failed") as caught:
        await scaleway_provider(fake).create_snapshot("x")
    assert caught.value.code == "action_failed"
    assert fake.snapshots == {}
    assert [r.method for r in fake.requests if "/snapshots" in r.path][-1] == "DELETE"


async def test_power_maps_reset_to_scaleways_reboot(fake: FakeScaleway) -> None:
    await scaleway_provider(fake).power("steward", "reset")
    (task,) = fake.tasks.values()
    assert (task["description"], task["status"]) == ("server_reboot", "success")


@pytest.mark.parametrize(
    ("access", "secret", "named"),
    [
        ("not-a-key", SECRET_KEY, "STEWARD_SCALEWAY_ACCESS_KEY"),
        (ACCESS_KEY, "hunter2-not-a-uuid", "STEWARD_SCALEWAY_SECRET_KEY"),
    ],
)
def test_a_malformed_key_is_named_never_echoed(
    fake: FakeScaleway, access: str, secret: str, named: str
) -> None:
    with pytest.raises(ValueError, match=named) as caught:
        scaleway_provider(fake, access_key=access, secret_key=secret)
    assert secret not in str(caught.value)
    assert access not in str(caught.value)
    assert PROJECT not in str(caught.value)


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = "import sys, providers.server.scaleway; print('scaleway' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True,
        timeout=20,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
