"""What only the OVHcloud adapter does: signed requests, the API's clock, its retry policy,
lookups by address, prices from the public catalogue. On the loopback fake, through the SDK.

``ovh.Client`` takes only endpoint names (``ovh-eu``...): ``endpoint=URL`` raises InvalidRegion.
The adapter sets the URL on the client it built, so the SDK's own signing and HTTP run here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.server.base import ServerError
from tests.support.fake_ovh import READ_CONSUMER_KEY, FakeOvh
from tests.support.ovh_harness import ovh_provider

pytestmark = pytest.mark.timeout(30)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeOvh]:
    with FakeOvh() as running:
        running.add_instance("steward")
        yield running


def statuses(fake: FakeOvh, path_end: str = "") -> list[int]:
    return [r.status for r in fake.requests if r.path.endswith(path_end) and r.path != "/auth/time"]


async def test_a_wrong_application_secret_is_refused_as_a_bad_signature(fake: FakeOvh) -> None:
    with pytest.raises(ServerError, match="refused the API token") as caught:
        await ovh_provider(fake, application_secret="wrong").this_server()
    assert caught.value.code == "unauthorized"
    assert statuses(fake) == [400]  # INVALID_SIGNATURE, and not retried


async def test_the_apis_clock_is_read_once_and_used_for_every_signature(fake: FakeOvh) -> None:
    fake.skew = 3600  # this machine's clock is an hour behind the API's
    provider = ovh_provider(fake)
    assert (await provider.this_server()).name == "steward"
    assert len(await provider.volumes()) == 0
    assert [r.path for r in fake.requests].count("/auth/time") == 1
    assert set(statuses(fake)) == {200}


async def test_a_clock_that_moves_after_the_first_call_is_refused(fake: FakeOvh) -> None:
    provider = ovh_provider(fake)
    await provider.this_server()
    fake.skew = -600
    with pytest.raises(ServerError) as caught:
        await provider.volumes()
    assert caught.value.code == "unauthorized"
    assert statuses(fake)[-1] == 400  # QUERY_TIME_OUT


async def test_an_unknown_application_key_and_a_401_are_unauthorized(fake: FakeOvh) -> None:
    with pytest.raises(ServerError) as caught:
        await ovh_provider(fake, application_key="nobody").this_server()
    assert caught.value.code == "unauthorized"
    fake.inject("unauthorized")
    with pytest.raises(ServerError, match="refused the API token"):
        await ovh_provider(fake).this_server()


async def test_a_read_only_consumer_key_reads_but_may_not_write(fake: FakeOvh) -> None:
    provider = ovh_provider(fake, consumer_key=READ_CONSUMER_KEY)
    assert (await provider.this_server()).status == "running"
    with pytest.raises(ServerError, match="needs Read & Write permission") as caught:
        await provider.create_snapshot("x")
    assert caught.value.code == "forbidden"
    assert fake.images == {}


async def test_a_rate_limit_is_waited_out_as_retry_after_says(fake: FakeOvh) -> None:
    provider = ovh_provider(fake, max_retry_wait=5.0)
    await provider.this_server()
    fake.inject("rate_limited", times=1)
    started = time.monotonic()
    assert len(await provider.volumes()) == 0
    assert time.monotonic() - started >= 0.9  # Retry-After: 1
    assert statuses(fake, "/volume") == [429, 200]


async def test_a_persistent_rate_limit_is_tried_four_times_then_reported(fake: FakeOvh) -> None:
    provider = ovh_provider(fake)
    await provider.this_server()
    fake.inject("rate_limited", times=None)
    with pytest.raises(ServerError, match="rate limit"):
        await provider.volumes()
    assert statuses(fake, "/volume") == [429] * 4


async def test_a_server_error_is_retried_for_reads_but_not_for_writes(fake: FakeOvh) -> None:
    provider = ovh_provider(fake)
    await provider.this_server()
    fake.inject("service_error", times=2)
    assert (await provider.this_server()).name == "steward"
    fake.inject("service_error", times=1, method="POST")
    with pytest.raises(ServerError, match="has a problem right now"):
        await provider.power("steward", "poweroff")
    assert statuses(fake, "/stop") == [503]
    assert fake.state()["instances"][next(iter(fake.instances))]["status"] == "ACTIVE"


async def test_a_slow_answer_is_a_timeout_and_a_read_is_tried_again(fake: FakeOvh) -> None:
    fake.slow_seconds = 1.0
    provider = ovh_provider(fake, request_timeout=0.3)
    await provider.this_server()
    fake.inject("slow", times=1)
    assert (await provider.this_server()).name == "steward"
    fake.inject("slow", times=None)
    with pytest.raises(ServerError, match="did not answer in time") as caught:
        await provider.volumes()
    assert caught.value.code == "timeout"


async def test_a_dropped_connection_is_not_retried(fake: FakeOvh) -> None:
    provider = ovh_provider(fake)
    await provider.this_server()
    fake.inject("drop", times=1)
    with pytest.raises(ServerError, match=r"^Cannot reach the cloud API\.$"):
        await provider.volumes()
    assert statuses(fake, "/volume") == [0]


async def test_nothing_listening_is_unreachable() -> None:
    with FakeOvh() as gone:
        provider = ovh_provider(gone)
    with pytest.raises(ServerError) as caught:
        await provider.this_server()
    assert caught.value.code == "unreachable"


async def test_this_instance_is_found_by_its_public_address(fake: FakeOvh) -> None:
    fake.add_instance("web", ipv4="198.51.100.7", ipv6="2001:db8:77::1", region="BHS5")
    for address, name in (("198.51.100.7", "web"), ("2001:db8:1234::1", "steward")):
        info = await ovh_provider(fake, instance=None, public_ip=address).this_server()
        assert info.name == name
    web = await ovh_provider(fake, instance=None, public_ip="198.51.100.7").this_server()
    assert (web.location, web.city) == ("BHS5", "Beauharnois")
    with pytest.raises(ServerError, match=r"192\.0\.2\.9; set STEWARD_OVH_INSTANCE"):
        await ovh_provider(fake, instance=None, public_ip="192.0.2.9").this_server()
    with pytest.raises(ServerError, match="set STEWARD_OVH_INSTANCE to its id or name"):
        await ovh_provider(fake, instance=None).this_server()


async def test_monthly_billing_takes_the_monthly_plan_else_730_hours(fake: FakeOvh) -> None:
    hourly = await ovh_provider(fake).this_server()
    assert str(hourly.price_monthly) == "8.76 EUR"  # 0.01 net + 20% VAT, x 730 hours
    fake.add_instance("monthly", monthly=True)
    monthly = await ovh_provider(fake, instance="monthly").this_server()
    assert str(monthly.price_monthly) == "6.60 EUR"  # the monthly plan: 5.50 net + 20% VAT
    fake.add_instance("big", flavor="b3-8")
    big = await ovh_provider(fake, instance="big").this_server()
    assert (big.server_type, big.memory_gb, str(big.price_monthly)) == ("b3-8", 8.0, "39.42 EUR")


async def test_an_operation_that_never_settles_times_out(fake: FakeOvh) -> None:
    fake.hold_operations = True
    with pytest.raises(ServerError, match=r"did not finish the poweroff within 0\.2 s") as caught:
        await ovh_provider(fake, operation_timeout=0.2).power("steward", "poweroff")
    assert caught.value.code == "action_timeout"
    with pytest.raises(ServerError, match="busy with another action"):
        await ovh_provider(fake).power("steward", "poweron")


async def test_a_snapshot_that_ends_in_error_is_deleted_again(fake: FakeOvh) -> None:
    fake.fail_operations = True
    with pytest.raises(ServerError, match="reports that the snapshot failed"):
        await ovh_provider(fake).create_snapshot("doomed")
    assert fake.images == {}
    deletes = [r for r in fake.requests if r.method == "DELETE"]
    assert [r.status for r in deletes] == [200]


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = "import sys, providers.server.ovh; print('ovh' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True,
        timeout=20,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
