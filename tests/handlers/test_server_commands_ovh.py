"""/server, /snapshot, /snapshots, /volumes, /resize and /power through the engine, with
STEWARD_SERVER_PROVIDER=ovh: the real OVHcloud adapter (official ovh SDK) on the loopback fake."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import _cloud
from bot.config import load_settings
from providers.host.base import DiskUsage
from tests.conftest import ADMIN2, OPERATOR, VIEWER, Harness
from tests.support.fake_ovh import APP_KEY, APP_SECRET, CONSUMER_KEY, PROJECT, FakeOvh

pytestmark = pytest.mark.timeout(30)
GB = 1000**3


@pytest.fixture
def fake() -> Iterator[FakeOvh]:
    with FakeOvh() as running:
        this = running.add_instance("steward")
        running.add_instance("backup-box", ipv4="198.51.100.20", region="SBG5")
        running.add_volume("steward-data", 50, this["id"])
        old = datetime.now(UTC) - timedelta(days=2)
        running.add_snapshot("weekly", 2.5, this["id"], created=old)
        yield running


@pytest.fixture
def ovh(harness: Harness, fake: FakeOvh) -> Harness:
    """The engine of the handler tests, with the cloud that the settings build."""
    settings = load_settings(
        server_provider="ovh", ovh_endpoint=fake.api_url, ovh_application_key=APP_KEY,
        ovh_application_secret=APP_SECRET, ovh_consumer_key=CONSUMER_KEY,
        ovh_project_id=PROJECT, ovh_instance="steward",
    )  # fmt: skip
    cloud = _cloud(settings)
    assert cloud is not None
    # Work is done by the first read, so the adapter's 2 s between reads never comes into play.
    fake.operation_polls = 0
    harness.engine.deps = replace(harness.engine.deps, cloud=cloud)
    return harness


def volume_id(fake: FakeOvh) -> str:
    return next(iter(fake.volumes))


async def test_server_shows_the_instance_without_traffic_it_does_not_count(
    ovh: Harness, fake: FakeOvh
) -> None:
    text = await ovh.say("/server", VIEWER)
    this = next(i for i in fake.instances.values() if i["name"] == "steward")
    assert f"<b>steward</b> ({this['id']}) running" in text
    assert "d2-4: 2 cores, 4 GB memory, 40 GB disk" in text
    assert "Gravelines (GRA11)" in text
    assert "IPv4 203.0.113.10, IPv6 2001:db8:1234::1/128" in text
    assert "8.76 EUR a month" in text
    assert "traffic" not in text
    assert "protection: none" in text


async def test_a_snapshot_shows_its_cost_then_is_taken_after_confirm(
    ovh: Harness, fake: FakeOvh
) -> None:
    prompt = await ovh.say("/snapshot", OPERATOR)
    assert "costs at most 0.48 EUR a month (0.01 EUR per GB)" in prompt
    assert "1 snapshots cost 0.03 EUR a month today" in prompt
    assert len(fake.images) == 1
    await ovh.press(1, OPERATOR)
    assert await ovh.engine.wait_for_jobs(10)
    done = ovh.outbox.last.current.text
    assert "Snapshot" in done
    assert "taken" in done
    [made] = [i for i in fake.images.values() if i["name"] != "weekly"]
    assert made["status"] == "active"
    assert made["id"] in done


async def test_snapshots_are_listed_and_one_is_deleted_by_its_uuid(
    ovh: Harness, fake: FakeOvh
) -> None:
    [weekly] = fake.images
    listing = await ovh.say("/snapshots", VIEWER)
    assert f"<code>{weekly}</code>" in listing
    assert "weekly — 2.5 GB 0.03 EUR a month" in listing
    prompt = await ovh.say(f"/snapshots delete {weekly}")
    assert "weekly" in prompt
    await ovh.press(1)
    assert fake.images == {}
    assert "There is no snapshot 42" in await ovh.say("/snapshots delete 42")


async def test_volumes_show_size_mount_and_price(ovh: Harness, fake: FakeOvh) -> None:
    device = f"/dev/disk/by-id/virtio-{volume_id(fake)[:20]}"
    ovh.server.host.devices[device] = DiskUsage("/data", 50 * GB, 20 * GB)
    text = await ovh.say("/volumes", VIEWER)
    assert "steward-data</b> 50 GB, <code>/data</code> 40% full, 2.40 EUR a month" in text


async def test_resize_grows_the_volume_at_ovh_then_its_filesystem(
    ovh: Harness, fake: FakeOvh
) -> None:
    prompt = await ovh.say("/resize steward-data 80")
    assert "It then costs 3.84 EUR a month (now 2.40 EUR)" in prompt
    assert fake.volumes[volume_id(fake)]["size"] == 50
    await ovh.press(1)
    assert await ovh.engine.wait_for_jobs(10)
    assert fake.volumes[volume_id(fake)]["size"] == 80
    assert ovh.server.host.grown == [f"/dev/disk/by-id/virtio-{volume_id(fake)[:20]}"]
    assert "steward-data is 80 GB" in ovh.outbox.last.current.text


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/resize steward-data 20", "it cannot shrink to 20 GB, only grow"),
        ("/resize backups 100", "There is no volume backups"),
        ("/power steward reset", "That is this server"),
        ("/power nowhere reset", "There is no server &#x27;nowhere&#x27; in this OVHcloud"),
    ],
)
async def test_bad_requests_get_one_line_no_button_and_send_nothing(
    ovh: Harness, fake: FakeOvh, text: str, answer: str
) -> None:
    before = fake.state()
    reply = await ovh.say(text)
    assert answer in reply
    assert "\n" not in reply
    assert all(not sent.reply.buttons for sent in ovh.outbox.messages)
    assert [r for r in fake.requests if r.method != "GET"] == []
    assert fake.state() == before


async def test_power_off_another_instance_with_a_second_admin(ovh: Harness, fake: FakeOvh) -> None:
    box = next(i for i in fake.instances.values() if i["name"] == "backup-box")
    prompt = await ovh.say("/power backup-box poweroff")
    assert f"poweroff backup-box ({box['id']}, now running)" in prompt
    assert await ovh.press(1) == "This needs a second admin to confirm."
    await ovh.press(1, ADMIN2)
    assert await ovh.engine.wait_for_jobs(10)
    assert box["status"] == "SHUTOFF"
    assert "backup-box: poweroff done" in ovh.outbox.last.current.text


async def test_a_revoked_consumer_key_is_one_clear_sentence(ovh: Harness, fake: FakeOvh) -> None:
    del fake.consumers[CONSUMER_KEY]
    reply = await ovh.say("/volumes")
    assert reply.endswith("The cloud provider refused the API token: it is unknown or revoked.")
    assert CONSUMER_KEY not in reply
    assert APP_SECRET not in reply
