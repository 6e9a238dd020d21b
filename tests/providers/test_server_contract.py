"""One ServerProvider contract, run against the Hetzner adapter (official hcloud client on a
loopback fake of the Hetzner Cloud API), the DigitalOcean adapter (official pydo client on a
loopback fake of the DigitalOcean API v2), the Scaleway adapter (official scaleway SDK on a
loopback fake of the Scaleway APIs), the OVHcloud adapter (official ovh SDK on a loopback
fake of the OVHcloud API) and the in-memory provider of demo mode.

Every refusal is one clear ServerError sentence and leaves the cloud as it was.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from ipaddress import ip_interface
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from providers.server.base import ServerError
from providers.server.hetzner import HetznerServerProvider
from providers.server.memory import MemoryServerProvider, demo_server, demo_server_provider
from tests.support import fake_digitalocean
from tests.support.fake_digitalocean import FakeDigitalOcean, digitalocean_adapter
from tests.support.fake_hetzner import TOKEN, FakeHetzner
from tests.support.ovh_harness import ovh_contract_parts
from tests.support.scaleway_harness import scaleway_harness

if TYPE_CHECKING:
    from providers.server.base import ServerProvider

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
IPV4 = "203.0.113.10"

SENTENCES = {
    "read_only": "The API token may not do this: it needs Read & Write permission.",
    "down": "Cannot reach the cloud API.",
    "rate_limited": "The cloud API's rate limit is used up; try again in a few minutes.",
    "unauthorized": "The cloud provider refused the API token: it is unknown or revoked.",
    "locked": "The server is busy with another action; try again when it has finished.",
    "service_error": "The cloud API has a problem right now; try again later.",
}


@dataclass(frozen=True)
class Facts:
    """What this server is and what its provider reports, where providers truly differ.
    The defaults are Hetzner's (and the demo's)."""

    location: tuple[str, str] = ("fsn1", "Falkenstein")
    currency: str = "EUR"
    disk_gb: int = 40
    ipv6_network: bool = True  # Hetzner routes a /64; DigitalOcean reports one address
    traffic_included: int | None = 20 * 1000**4
    traffic_used_reported: bool = True
    protection: tuple[bool, bool] = (True, True)  # delete, rebuild; DigitalOcean has neither
    volume_device: str = "/dev/disk/by-id/scsi-0HC_Volume_"


DIGITALOCEAN_FACTS = Facts(
    location=("fra1", "Frankfurt"),
    currency="USD",
    disk_gb=80,  # s-2vcpu-4gb
    ipv6_network=False,
    traffic_included=4 * 1000**4,
    traffic_used_reported=False,
    protection=(False, False),
    volume_device="/dev/disk/by-id/scsi-0DO_Volume_",
)

# Scaleway: no traffic allowance, one protection flag (deletion), its own device names.
SCALEWAY_FACTS = Facts(
    location=("fr-par-1", "Paris"),
    traffic_included=None,
    traffic_used_reported=False,
    protection=(True, False),
    volume_device="/dev/disk/by-id/scsi-0SCW_sbs_volume-",
)

# OVHcloud: one IPv6 address, regions such as GRA11, no traffic counters, no protection flags,
# and virtio volumes named by the start of their id.
OVH_FACTS = Facts(
    location=("GRA11", "Gravelines"),
    ipv6_network=False,
    traffic_included=None,
    traffic_used_reported=False,
    protection=(False, False),
    volume_device="/dev/disk/by-id/virtio-",
)


@dataclass
class Harness:
    """A provider with: this server ``steward`` (2 cores, 4 GB memory; cx22 with 40 GB at
    Falkenstein, s-2vcpu-4gb with 80 GB at DigitalOcean's fra1), a second server ``backup-box``
    without IPv4, a 20 GB volume ``data`` and a 1.5 GB snapshot."""

    kind: str
    provider: ServerProvider
    state: Callable[[], Any]
    fail: Callable[[str], None]
    snapshot_id: str
    facts: Facts = field(default_factory=Facts)
    # The state a failed long operation leaves, from the state before and the write.
    after_failure: Callable[[Any, str], Any] = lambda before, write: before


def hetzner_provider(fake: FakeHetzner, **kwargs: Any) -> HetznerServerProvider:
    options: dict[str, Any] = {"server": "steward"} | kwargs
    return HetznerServerProvider(
        options.pop("token", TOKEN),
        api_url=fake.api_url,
        poll_interval=0.01,
        action_timeout=options.pop("action_timeout", 5.0),
        **options,
    )


def fast_retries(provider: HetznerServerProvider) -> None:
    """Keep hcloud's retry policy (which errors, how many tries) but not its waits of up to a
    minute. This reaches into hcloud's private request seam, for tests only."""
    provider._client._client._retry_interval_func = lambda retries: 0.0


def _hetzner_harness() -> Iterator[Harness]:
    with FakeHetzner() as fake:
        this = fake.add_server("steward")
        fake.add_server("backup-box", ipv4=None, ipv6="2001:db8:beef::/64", location="hel1")
        fake.add_volume("data", 20, this["id"])
        snap = fake.add_snapshot("before upgrade", 1.5, this["id"])
        provider = hetzner_provider(fake)
        fast_retries(provider)

        def fail(kind: str) -> None:
            if kind == "read_only":
                fake.tokens[TOKEN] = "read"
            elif kind == "action_error":
                fake.fail_commands.update({"resize_volume", "create_image", "stop_server"})
            else:
                code = {"down": "drop", "rate_limited": "rate_limit_exceeded"}.get(kind, kind)
                for method in ("POST", "DELETE") if kind == "locked" else (None,):
                    fake.inject(code, times=None, method=method)

        yield Harness("hetzner", provider, fake.state, fail, str(snap["id"]))


def _digitalocean_harness() -> Iterator[Harness]:
    with FakeDigitalOcean() as fake:
        fake.retry_after = 0  # the policy's waits are tested on their own
        this = fake.add_droplet("steward")
        fake.add_droplet("backup-box", ipv4=None, ipv6="2a03:b0c0:3:d0::beef:1", region="ams3")
        fake.add_volume("data", 20, this["id"])
        snap = fake.add_snapshot("before upgrade", 1.5, this["id"])

        def fail(kind: str) -> None:
            if kind == "read_only":
                fake.tokens[fake_digitalocean.TOKEN] = "read"
            elif kind == "action_error":
                fake.fail_types.update({"resize", "snapshot", "power_off"})
            else:
                aliases = {"down": "drop", "rate_limited": "too_many_requests",
                           "service_error": "service_unavailable"}  # fmt: skip
                for method in ("POST", "DELETE") if kind == "locked" else (None,):
                    fake.inject(aliases.get(kind, kind), times=None, method=method)

        provider = digitalocean_adapter(fake)
        yield Harness("digitalocean", provider, fake.state, fail, snap["id"], DIGITALOCEAN_FACTS)


def _memory_harness() -> Iterator[Harness]:
    provider = MemoryServerProvider(servers={"1": demo_server("1", "steward")}, this_server_id="1")
    provider.servers["2"] = demo_server("2", "backup-box")
    provider.add_volume("data", 20, server_id="1")
    snap = provider.add_snapshot("before upgrade", 1.5, datetime.now(UTC) - timedelta(days=1))

    def state() -> Any:
        return (dict(provider.servers), dict(provider.volume_list), dict(provider.snapshot_list))

    def fail(kind: str) -> None:
        if kind == "read_only":
            provider.read_only = True
        elif kind == "down":
            provider.down = True
        elif kind == "action_error":
            provider.fail_actions = True
        else:
            provider.failure = {"rate_limited": "rate_limit_exceeded"}.get(kind, kind)

    yield Harness("memory", provider, state, fail, snap.id)


def _ovh_harness() -> Iterator[Harness]:
    for parts in ovh_contract_parts():
        yield Harness("ovh", **parts, facts=OVH_FACTS)


HARNESSES = {
    "hetzner": _hetzner_harness,
    "digitalocean": _digitalocean_harness,
    "scaleway": lambda: scaleway_harness(partial(Harness, facts=SCALEWAY_FACTS)),
    "ovh": _ovh_harness,
    "memory": _memory_harness,
}


@pytest.fixture(params=list(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    yield from HARNESSES[request.param]()


# --- reading -----------------------------------------------------------------------------------


async def test_this_server_has_its_facts_and_price(harness: Harness) -> None:
    facts = harness.facts
    info = await harness.provider.this_server()
    assert (info.name, info.status, info.ipv4) == ("steward", "running", IPV4)
    assert info.ipv6 is not None
    assert ip_interface(info.ipv6).version == 6
    assert info.ipv6.endswith("/64") == facts.ipv6_network
    assert (info.cores, info.memory_gb, info.disk_gb) == (2, 4.0, facts.disk_gb)
    assert (info.location, info.city) == facts.location
    assert info.price_monthly is not None
    assert info.price_monthly.currency == facts.currency
    assert Decimal("1") < info.price_monthly.gross < Decimal("50")
    assert info.traffic_included_bytes == facts.traffic_included
    if facts.traffic_used_reported:
        assert info.traffic_used_bytes is not None
        assert info.traffic_used_bytes > 0
    else:
        assert info.traffic_used_bytes is None
    assert (info.delete_protection, info.rebuild_protection) == facts.protection
    assert not info.backups_enabled


async def test_another_server_by_name_and_by_id(harness: Harness) -> None:
    other = await harness.provider.server("backup-box")
    assert other.name == "backup-box"
    assert (await harness.provider.server(str(other.id))).name == "backup-box"
    with pytest.raises(ServerError, match=r"^There is no server 'nosuch' in this") as caught:
        await harness.provider.server("nosuch")
    assert caught.value.code == "not_found"


async def test_volumes_with_their_monthly_price(harness: Harness) -> None:
    this = await harness.provider.this_server()
    [volume] = await harness.provider.volumes()
    assert (volume.name, volume.size_gb, volume.server_id) == ("data", 20, this.id)
    assert volume.linux_device.startswith(harness.facts.volume_device)
    assert volume.price_monthly == await harness.provider.volume_price(20)
    forty = await harness.provider.volume_price(40)
    assert forty.gross == 2 * volume.price_monthly.gross > 0


async def test_snapshots_are_priced_per_gb_month(harness: Harness) -> None:
    [snap] = await harness.provider.snapshots()
    estimate = await harness.provider.snapshot_cost_estimate()
    assert (snap.id, snap.description, snap.size_gb) == (harness.snapshot_id, "before upgrade", 1.5)
    assert snap.monthly_cost is not None
    assert snap.monthly_cost.gross == Decimal("1.5") * estimate.price_per_gb_month.gross
    assert estimate.existing_count == 1
    assert estimate.existing_monthly == snap.monthly_cost
    assert estimate.new_snapshot_max_monthly.gross == (
        harness.facts.disk_gb * estimate.price_per_gb_month.gross
    )


# --- changing ------------------------------------------------------------------------------------


async def test_a_volume_grows_and_its_price_with_it(harness: Harness) -> None:
    grown = await harness.provider.resize_volume("data", 30)
    assert grown.size_gb == 30
    assert grown.price_monthly == await harness.provider.volume_price(30)
    [listed] = await harness.provider.volumes()
    assert listed.size_gb == 30
    assert (await harness.provider.resize_volume(str(listed.id), 31)).size_gb == 31


async def test_a_snapshot_is_made_listed_newest_first_and_deleted(harness: Harness) -> None:
    made = await harness.provider.create_snapshot("steward: before nextcloud 31")
    assert made.description == "steward: before nextcloud 31"
    assert made.size_gb is not None
    assert made.monthly_cost is not None
    listed = await harness.provider.snapshots()
    assert [s.id for s in listed] == [made.id, harness.snapshot_id]
    await harness.provider.delete_snapshot(harness.snapshot_id)
    assert [s.id for s in await harness.provider.snapshots()] == [made.id]


async def test_power_off_and_on(harness: Harness) -> None:
    await harness.provider.power("steward", "poweroff")
    assert (await harness.provider.this_server()).status == "off"
    await harness.provider.power("steward", "poweron")
    assert (await harness.provider.this_server()).status == "running"
    await harness.provider.power("steward", "reset")
    assert (await harness.provider.this_server()).status == "running"


# --- refusals: one sentence, nothing changed ------------------------------------------------------


async def test_an_unknown_volume_is_refused(harness: Harness) -> None:
    before = harness.state()
    with pytest.raises(
        ServerError, match=r"^There is no volume 'nosuch' in this (\w+ )?(project|account)\.$"
    ) as caught:
        await harness.provider.resize_volume("nosuch", 50)
    assert caught.value.code == "not_found"
    assert harness.state() == before


@pytest.mark.parametrize("size", [10, 20])
async def test_a_volume_never_shrinks_or_stays(harness: Harness, size: int) -> None:
    before = harness.state()
    with pytest.raises(ServerError, match=r"^Volume data is (already )?20 GB") as caught:
        await harness.provider.resize_volume("data", size)
    assert caught.value.code == "invalid_input"
    assert harness.state() == before


async def test_unknown_snapshot_and_bad_inputs_are_refused(harness: Harness) -> None:
    before = harness.state()
    with pytest.raises(ServerError, match=r"^There is no snapshot 999999\.$"):
        await harness.provider.delete_snapshot("999999")
    with pytest.raises(ServerError, match=r"^Unknown power action 'shutdown'; use one of"):
        await harness.provider.power("steward", "shutdown")  # type: ignore[arg-type]
    with pytest.raises(ServerError, match=r"^There is no server 'ghost'"):
        await harness.provider.power("ghost", "reset")
    with pytest.raises(ServerError, match="at least 1"):
        await harness.provider.volume_price(0)
    assert harness.state() == before


WRITES: dict[str, Callable[[ServerProvider, str], Any]] = {
    "resize": lambda p, snap: p.resize_volume("data", 40),
    "snapshot": lambda p, snap: p.create_snapshot("x"),
    "delete": lambda p, snap: p.delete_snapshot(snap),
    "power": lambda p, snap: p.power("steward", "poweroff"),
}


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize(
    "kind", ["read_only", "down", "rate_limited", "unauthorized", "locked", "service_error"]
)
async def test_a_failing_cloud_changes_nothing(harness: Harness, kind: str, write: str) -> None:
    before = harness.state()
    harness.fail(kind)
    with pytest.raises(ServerError) as caught:
        await WRITES[write](harness.provider, harness.snapshot_id)
    assert str(caught.value) == SENTENCES[kind]
    assert "\n" not in str(caught.value)
    assert "Traceback" not in str(caught.value)
    assert harness.state() == before


@pytest.mark.parametrize("kind", ["down", "rate_limited", "unauthorized", "service_error"])
async def test_reads_fail_with_the_same_sentence(harness: Harness, kind: str) -> None:
    harness.fail(kind)
    for read in (harness.provider.this_server, harness.provider.volumes):
        with pytest.raises(ServerError) as caught:
            await read()
        assert str(caught.value) == SENTENCES[kind]


async def test_a_read_only_token_still_reads(harness: Harness) -> None:
    harness.fail("read_only")
    assert (await harness.provider.this_server()).name == "steward"
    assert len(await harness.provider.snapshots()) == 1


@pytest.mark.parametrize("write", ["resize", "snapshot", "power"])
async def test_a_failed_action_is_reported_and_changes_nothing(
    harness: Harness, write: str
) -> None:
    before = harness.state()
    harness.fail("action_error")
    with pytest.raises(ServerError, match="failed") as caught:
        await WRITES[write](harness.provider, harness.snapshot_id)
    assert caught.value.code == "action_failed"
    assert harness.state() == harness.after_failure(before, write)


# --- Hetzner only ---------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeHetzner]:
    with FakeHetzner() as running:
        yield running


async def test_this_server_is_found_by_its_public_ipv4_across_pages(fake: FakeHetzner) -> None:
    for n in range(60):  # more than one page of 50
        fake.add_server(f"web{n}", ipv4=f"198.51.100.{n + 1}", ipv6=None)
    fake.add_server("steward", ipv4=IPV4)
    provider = hetzner_provider(fake, server=None, public_ip=IPV4)
    assert (await provider.this_server()).name == "steward"
    pages = [r for r in fake.requests if r.path == "/servers"]
    assert len(pages) == 2


async def test_this_server_is_found_by_an_address_in_its_ipv6_network(fake: FakeHetzner) -> None:
    fake.add_server("v6only", ipv4=None, ipv6="2001:db8:42::/64")
    provider = hetzner_provider(fake, server=None, public_ip="2001:db8:42::1")
    info = await provider.this_server()
    assert (info.name, info.ipv4) == ("v6only", None)


async def test_an_unknown_address_or_no_setting_says_what_to_set(fake: FakeHetzner) -> None:
    fake.add_server("steward")
    lost = hetzner_provider(fake, server=None, public_ip="192.0.2.99")
    with pytest.raises(ServerError, match=r"192\.0\.2\.99; set STEWARD_HCLOUD_SERVER"):
        await lost.this_server()
    with pytest.raises(ServerError, match="set STEWARD_HCLOUD_SERVER to its id or name"):
        await hetzner_provider(fake, server=None).this_server()


async def test_a_location_without_a_listed_price_has_no_price(fake: FakeHetzner) -> None:
    fake.add_server("steward", location="hel1")
    assert (await hetzner_provider(fake).this_server()).price_monthly is None


async def test_the_price_is_the_gross_monthly_price_of_the_servers_location(
    fake: FakeHetzner,
) -> None:
    fake.add_server("steward", server_type="cx32", location="nbg1")
    info = await hetzner_provider(fake).this_server()
    assert info.price_monthly is not None
    assert str(info.price_monthly) == "8.09 EUR"  # 6.80 net + 19% VAT
    assert (info.server_type, info.cores, info.city) == ("cx32", 4, "Nuremberg")


async def test_the_clients_own_retry_policy_rides_out_one_rate_limit(fake: FakeHetzner) -> None:
    fake.add_server("steward")
    fake.inject("rate_limit_exceeded", times=1)
    started = time.monotonic()
    assert (await hetzner_provider(fake).this_server()).name == "steward"
    assert [r.status for r in fake.requests][:2] == [429, 200]
    assert time.monotonic() - started >= 0.9  # hcloud's first backoff is one second


async def test_a_persistent_rate_limit_is_tried_six_times_then_reported(fake: FakeHetzner) -> None:
    fake.add_server("steward")
    provider = hetzner_provider(fake)
    fast_retries(provider)
    fake.inject("rate_limit_exceeded", times=None)
    with pytest.raises(ServerError, match="rate limit"):
        await provider.volumes()
    assert [r.status for r in fake.requests] == [429] * 6


async def test_a_dropped_connection_is_not_retried(fake: FakeHetzner) -> None:
    fake.add_server("steward")
    fake.inject("drop", times=1)
    with pytest.raises(ServerError, match=r"^Cannot reach the cloud API\.$"):
        await hetzner_provider(fake).this_server()
    assert [r.status for r in fake.requests] == [0]


async def test_an_action_that_never_ends_times_out_and_locks_the_server(
    fake: FakeHetzner,
) -> None:
    fake.add_server("steward")
    provider = hetzner_provider(fake, action_timeout=0.2)
    fake.hold_actions = True
    with pytest.raises(ServerError, match=r"did not finish the poweroff within 0\.2 s"):
        await provider.power("steward", "poweroff")
    with pytest.raises(ServerError, match="busy with another action") as caught:
        await provider.power("steward", "poweron")
    assert caught.value.code == "locked"


async def test_an_unknown_token_is_refused(fake: FakeHetzner) -> None:
    fake.add_server("steward")
    with pytest.raises(ServerError, match="refused the API token") as caught:
        await hetzner_provider(fake, token="wrong").this_server()
    assert caught.value.code == "unauthorized"


async def test_a_missing_snapshot_is_not_deleted_twice(fake: FakeHetzner) -> None:
    server = fake.add_server("steward")
    snap = fake.add_snapshot("old", 2.0, server["id"])
    provider = hetzner_provider(fake)
    await provider.delete_snapshot(str(snap["id"]))
    with pytest.raises(ServerError, match=rf"^There is no snapshot {snap['id']}\.$"):
        await provider.delete_snapshot(str(snap["id"]))
    assert [r.status for r in fake.requests if r.method == "DELETE"] == [204]


def test_importing_the_adapter_does_not_import_hcloud() -> None:
    code = "import sys, providers.server.hetzner; print('hcloud' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


async def test_the_demo_provider_has_a_volume_and_snapshots_to_show() -> None:
    demo = demo_server_provider(step_seconds=0)
    assert [v.name for v in await demo.volumes()] == ["steward-data"]
    assert [s.description for s in await demo.snapshots()] == [
        "weekly",
        "before nixos 25.05 upgrade",
    ]
    assert (await demo.snapshot_cost_estimate()).existing_count == 2
