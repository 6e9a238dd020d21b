"""What is DigitalOcean's own, beyond the shared contract: the retry policy (Retry-After,
5xx, timeouts), action polling, pagination, and finding this droplet. The official pydo client
is pointed at the loopback fake with ``Client(token, endpoint=...)``."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.server.base import ServerError
from tests.support.fake_digitalocean import TOKEN, FakeDigitalOcean, digitalocean_adapter

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
IPV4 = "203.0.113.10"


@pytest.fixture
def fake() -> Iterator[FakeDigitalOcean]:
    with FakeDigitalOcean() as running:
        running.add_droplet("steward")
        yield running


# --- finding this droplet ---------------------------------------------------------------------


async def test_this_droplet_is_found_by_its_public_ipv4_across_pages(
    fake: FakeDigitalOcean,
) -> None:
    fake.droplets.clear()
    for n in range(45):
        fake.add_droplet(f"web{n}", ipv4=f"198.51.100.{n + 1}", ipv6=None)
    fake.add_droplet("steward", ipv4=IPV4)
    provider = digitalocean_adapter(fake, droplet=None, public_ip=IPV4, page_size=20)
    assert (await provider.this_server()).name == "steward"
    assert [r.path for r in fake.requests] == ["/v2/droplets"] * 3


async def test_this_droplet_is_found_by_its_ipv6_address(fake: FakeDigitalOcean) -> None:
    fake.add_droplet("v6only", ipv4=None, ipv6="2a03:b0c0:3:d0::42:1")
    provider = digitalocean_adapter(fake, droplet=None, public_ip="2a03:b0c0:3:d0::42:1")
    info = await provider.this_server()
    assert (info.name, info.ipv4) == ("v6only", None)


async def test_an_unknown_address_or_no_setting_says_what_to_set(fake: FakeDigitalOcean) -> None:
    lost = digitalocean_adapter(fake, droplet=None, public_ip="192.0.2.99")
    with pytest.raises(ServerError, match=r"192\.0\.2\.99; set STEWARD_DIGITALOCEAN_DROPLET"):
        await lost.this_server()
    with pytest.raises(ServerError, match="set STEWARD_DIGITALOCEAN_DROPLET to its id or name"):
        await digitalocean_adapter(fake, droplet=None).this_server()


async def test_two_droplets_with_one_name_need_the_id(fake: FakeDigitalOcean) -> None:
    twin = fake.add_droplet("steward", ipv4="198.51.100.7")
    with pytest.raises(ServerError, match="Several droplets are named 'steward'; use its id"):
        await digitalocean_adapter(fake).this_server()
    by_id = digitalocean_adapter(fake, droplet=str(twin["id"]))
    assert (await by_id.this_server()).ipv4 == "198.51.100.7"


async def test_the_price_is_the_sizes_monthly_price_in_usd(fake: FakeDigitalOcean) -> None:
    fake.add_droplet("small", size="s-1vcpu-1gb", region="ams3", backups=True)
    info = await digitalocean_adapter(fake).server("small")
    assert str(info.price_monthly) == "6.00 USD"
    assert (info.server_type, info.cores, info.memory_gb, info.disk_gb) == (
        "s-1vcpu-1gb", 1, 1.0, 25,
    )  # fmt: skip
    assert (info.location, info.city, info.backups_enabled) == ("ams3", "Amsterdam", True)


# --- pagination -------------------------------------------------------------------------------


async def test_an_api_that_always_offers_a_next_page_is_not_followed_forever(
    fake: FakeDigitalOcean,
) -> None:
    fake.always_next = True
    for n in range(3):
        fake.add_volume(f"v{n}", 10, None)
    provider = digitalocean_adapter(fake, page_size=2)
    assert sorted(v.name for v in await provider.volumes()) == ["v0", "v1", "v2"]
    assert len([r for r in fake.requests if r.path == "/v2/volumes"]) == 2  # meta.total reached


# --- the retry policy -------------------------------------------------------------------------


async def test_a_rate_limit_is_ridden_out_after_its_retry_after(fake: FakeDigitalOcean) -> None:
    fake.retry_after = 1
    fake.inject("too_many_requests", times=1)
    started = time.monotonic()
    assert (await digitalocean_adapter(fake).this_server()).name == "steward"
    assert time.monotonic() - started >= 0.9
    assert [r.status for r in fake.requests][:2] == [429, 200]


async def test_a_long_retry_after_is_reported_at_once(fake: FakeDigitalOcean) -> None:
    fake.retry_after = 3600
    fake.inject("too_many_requests", times=None)
    started = time.monotonic()
    with pytest.raises(ServerError, match="rate limit is used up") as caught:
        await digitalocean_adapter(fake).volumes()
    assert caught.value.code == "rate_limit_exceeded"
    assert time.monotonic() - started < 5
    assert [r.status for r in fake.requests] == [429]


async def test_a_persistent_rate_limit_is_tried_four_times_even_for_a_post(
    fake: FakeDigitalOcean,
) -> None:
    fake.retry_after = 0
    provider = digitalocean_adapter(fake)
    await provider.this_server()
    fake.requests.clear()
    fake.inject("too_many_requests", times=None, method="POST")
    with pytest.raises(ServerError, match="rate limit"):
        await provider.power("steward", "reset")
    assert [(r.method, r.status) for r in fake.requests if r.method == "POST"] == [
        ("POST", 429)
    ] * 4


async def test_a_server_error_is_retried_for_a_read_but_not_for_a_post(
    fake: FakeDigitalOcean,
) -> None:
    provider = digitalocean_adapter(fake)
    fake.inject("server_error", times=2, method="GET")
    assert (await provider.this_server()).name == "steward"
    assert [r.status for r in fake.requests][:3] == [500, 500, 200]
    fake.inject("service_unavailable", times=1, method="POST")
    with pytest.raises(ServerError, match="has a problem right now") as caught:
        await provider.power("steward", "poweroff")
    assert caught.value.code == "service_error"
    assert [r.status for r in fake.requests if r.method == "POST"] == [503]
    assert fake.droplets[next(iter(fake.droplets))]["status"] == "active"


async def test_a_slow_api_is_a_timeout_after_four_tries(fake: FakeDigitalOcean) -> None:
    fake.slow_seconds = 0.6
    fake.inject("slow", times=None, method="GET")
    provider = digitalocean_adapter(fake, request_timeout=0.2)
    with pytest.raises(ServerError, match="did not answer in time") as caught:
        await provider.this_server()
    assert caught.value.code == "timeout"
    await asyncio.sleep(0.7)  # the fake records the last slow request after the client left
    assert len([r for r in fake.requests if r.method == "GET"]) == 4


async def test_a_dropped_connection_is_not_retried(fake: FakeDigitalOcean) -> None:
    fake.inject("drop", times=1)
    with pytest.raises(ServerError, match=r"^Cannot reach the cloud API\.$") as caught:
        await digitalocean_adapter(fake).this_server()
    assert caught.value.code == "unreachable"
    assert [r.status for r in fake.requests] == [0]


async def test_a_refused_connection_is_unreachable() -> None:
    with FakeDigitalOcean() as gone:
        provider = digitalocean_adapter(gone)
    with pytest.raises(ServerError, match=r"^Cannot reach the cloud API\.$"):
        await provider.this_server()


# --- actions ------------------------------------------------------------------------------------


async def test_an_action_is_polled_until_it_completes(fake: FakeDigitalOcean) -> None:
    fake.action_polls = 3
    await digitalocean_adapter(fake).power("steward", "poweroff")
    polls = [r for r in fake.requests if r.path.startswith("/v2/actions/")]
    assert len(polls) == 4
    [action] = fake.actions.values()
    assert (action["type"], action["status"]) == ("power_off", "completed")


async def test_an_action_that_never_ends_times_out_and_locks_the_droplet(
    fake: FakeDigitalOcean,
) -> None:
    provider = digitalocean_adapter(fake, action_timeout=0.2)
    fake.hold_actions = True
    with pytest.raises(ServerError, match=r"did not finish the poweroff within 0\.2 s"):
        await provider.power("steward", "poweroff")
    with pytest.raises(ServerError, match="busy with another action") as caught:
        await provider.power("steward", "poweron")
    assert caught.value.code == "locked"


async def test_power_actions_use_digitaloceans_names(fake: FakeDigitalOcean) -> None:
    provider = digitalocean_adapter(fake)
    for action in ("poweroff", "poweron", "reset"):
        await provider.power("steward", action)
    assert [a["type"] for a in fake.actions.values()] == ["power_off", "power_on", "power_cycle"]


# --- refusals -----------------------------------------------------------------------------------


async def test_a_volume_snapshot_is_not_deleted_as_a_droplet_snapshot(
    fake: FakeDigitalOcean,
) -> None:
    droplet_id = next(iter(fake.droplets))
    volume_snap = fake.add_snapshot("volume copy", 3.0, droplet_id, resource_type="volume")
    before = fake.state()
    with pytest.raises(ServerError, match="is a volume snapshot; only droplet snapshots"):
        await digitalocean_adapter(fake).delete_snapshot(volume_snap["id"])
    assert fake.state() == before
    assert [s.id for s in await digitalocean_adapter(fake).snapshots()] == []


async def test_a_volume_grows_to_at_most_16_tib(fake: FakeDigitalOcean) -> None:
    fake.add_volume("data", 20, None)
    with pytest.raises(ServerError, match="at most 16384 GB"):
        await digitalocean_adapter(fake).resize_volume("data", 16385)
    assert [r.method for r in fake.requests] == ["GET"]


async def test_an_unknown_token_is_refused(fake: FakeDigitalOcean) -> None:
    with pytest.raises(ServerError, match="refused the API token") as caught:
        await digitalocean_adapter(fake, token="dop_v1_revoked").this_server()
    assert caught.value.code == "unauthorized"


async def test_the_token_never_reaches_the_log(
    fake: FakeDigitalOcean, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await digitalocean_adapter(fake).this_server()
    assert "/v2/droplets" in caplog.text  # the requests are logged...
    assert TOKEN not in caplog.text  # ...without the token


def test_importing_the_adapter_does_not_import_pydo() -> None:
    code = (
        "import sys, providers.server.digitalocean; "
        "print(sorted({'pydo', 'azure'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
