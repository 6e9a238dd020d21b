"""The cloud commands through the engine with STEWARD_SERVER_PROVIDER=digitalocean: the cloud is
built by the composition root from the settings, and it is the real pydo adapter on the
loopback fake of the DigitalOcean API v2. The rest of the server is the demo's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from bot.app import _cloud
from bot.config import load_settings
from bot.storage.database import Database
from tests.conftest import ADMIN2, OPERATOR, VIEWER, Harness, make_harness
from tests.support.fake_digitalocean import TOKEN, FakeDigitalOcean

pytestmark = pytest.mark.timeout(60)


@dataclass
class Cloud:
    harness: Harness
    fake: FakeDigitalOcean
    droplet_id: int
    snapshot_id: str

    def no_buttons_since(self, count: int) -> bool:
        return all(not sent.reply.buttons for sent in self.harness.outbox.messages[count:])


@pytest.fixture
def cloud(sqlite_db: Database) -> Iterator[Cloud]:
    with FakeDigitalOcean() as fake:
        this = fake.add_droplet("steward")
        fake.add_droplet("backup-box", ipv4="203.0.113.20", region="ams3")
        fake.add_volume("data", 20, this["id"])
        snap = fake.add_snapshot("before upgrade", 1.5, this["id"])
        settings = load_settings(
            server_provider="digitalocean",
            digitalocean_token=TOKEN,
            digitalocean_api_url=fake.api_url,
            digitalocean_droplet="steward",
        )
        harness = make_harness(sqlite_db)
        harness.engine.deps = replace(harness.engine.deps, cloud=_cloud(settings))
        yield Cloud(harness, fake, this["id"], snap["id"])


async def test_server_shows_the_droplet_its_size_and_price(cloud: Cloud) -> None:
    text = await cloud.harness.say("/server", VIEWER)
    assert f"<b>steward</b> ({cloud.droplet_id}) running" in text
    assert "s-2vcpu-4gb: 2 cores, 4 GB memory, 80 GB disk" in text
    assert "Frankfurt (fra1)" in text
    assert "IPv4 203.0.113.10" in text
    assert "24.00 USD a month" in text
    assert "protection: none" in text
    assert "traffic" not in text  # DigitalOcean does not report the transfer used


async def test_a_snapshot_shows_its_cost_then_is_taken_after_confirm(cloud: Cloud) -> None:
    prompt = await cloud.harness.say("/snapshot", OPERATOR)
    assert "at most 4.80 USD a month (0.06 USD per GB)" in prompt
    assert len(cloud.fake.snapshots) == 1
    await cloud.harness.press(1, OPERATOR)
    assert await cloud.harness.engine.wait_for_jobs(20)
    done = cloud.harness.outbox.last.current.text
    made = [s for s in cloud.fake.snapshots.values() if s["name"].startswith("steward ")]
    assert len(made) == 1
    assert f"Snapshot {made[0]['id']} taken" in done
    assert "0.24 USD a month" in done  # 4 GB stored x 0.06


async def test_snapshots_are_listed_and_one_is_deleted(cloud: Cloud) -> None:
    listed = await cloud.harness.say("/snapshots", VIEWER)
    assert f"<code>{cloud.snapshot_id}</code>" in listed
    assert "before upgrade — 1.5 GB 0.09 USD a month" in listed
    prompt = await cloud.harness.say(f"/snapshots delete {cloud.snapshot_id}")
    assert "before upgrade" in prompt
    await cloud.harness.press(1)
    assert cloud.fake.snapshots == {}


async def test_volumes_and_a_resize_with_its_new_price(cloud: Cloud) -> None:
    listed = await cloud.harness.say("/volumes", VIEWER)
    assert "data</b> 20 GB, not mounted here, 2.00 USD a month" in listed
    prompt = await cloud.harness.say("/resize data 30")
    assert "It then costs 3.00 USD a month (now 2.00 USD)" in prompt
    await cloud.harness.press(1)
    assert await cloud.harness.engine.wait_for_jobs(20)
    [volume] = cloud.fake.volumes.values()
    assert volume["size_gigabytes"] == 30
    assert cloud.harness.server.host.grown == ["/dev/disk/by-id/scsi-0DO_Volume_data"]
    assert "data is 30 GB" in cloud.harness.outbox.last.current.text


async def test_power_off_another_droplet_with_a_second_admin(cloud: Cloud) -> None:
    prompt = await cloud.harness.say("/power backup-box poweroff")
    assert "poweroff backup-box" in prompt
    await cloud.harness.press(1, ADMIN2)
    assert await cloud.harness.engine.wait_for_jobs(20)
    other = next(d for d in cloud.fake.droplets.values() if d["name"] == "backup-box")
    assert other["status"] == "off"
    assert [a["type"] for a in cloud.fake.actions.values()] == ["power_off"]
    assert "backup-box: poweroff done" in cloud.harness.outbox.last.current.text


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/resize data 10", "it cannot shrink to 10 GB, only grow"),
        ("/resize nosuch 50", "There is no volume nosuch. Volumes: data."),
        ("/power steward reset", "That is this server"),
        ("/power ghost reset", "There is no server &#x27;ghost&#x27; in this DigitalOcean"),
    ],
)
async def test_bad_requests_get_one_line_and_no_button(
    cloud: Cloud, text: str, answer: str
) -> None:
    before, sent = cloud.fake.state(), len(cloud.harness.outbox.messages)
    reply = await cloud.harness.say(text)
    assert answer in reply
    assert "\n" not in reply
    assert cloud.no_buttons_since(sent)
    assert cloud.fake.state() == before
    assert cloud.fake.actions == {}


async def test_a_volume_snapshot_is_not_offered_for_deletion(cloud: Cloud) -> None:
    """DigitalOcean keeps volume snapshots apart; Steward lists and deletes droplet snapshots."""
    volume_snap = cloud.fake.add_snapshot("volume copy", 3.0, cloud.droplet_id, "volume")
    before, sent = cloud.fake.state(), len(cloud.harness.outbox.messages)
    reply = await cloud.harness.say(f"/snapshots delete {volume_snap['id']}")
    assert reply == f"❌ There is no snapshot {volume_snap['id']}; /snapshots lists them."
    assert cloud.no_buttons_since(sent)
    assert cloud.fake.state() == before


@pytest.mark.parametrize(
    ("fault", "sentence"),
    [
        ("unauthorized", "refused the API token"),
        ("forbidden", "needs Read &amp; Write permission"),
        ("drop", "Cannot reach the cloud API"),
    ],
)
async def test_provider_errors_become_one_clear_line(
    cloud: Cloud, fault: str, sentence: str
) -> None:
    cloud.fake.inject(fault, times=None)
    reply = await cloud.harness.say("/server")
    assert sentence in reply
    assert "\n" not in reply


async def test_a_long_rate_limit_is_said_at_once(cloud: Cloud) -> None:
    cloud.fake.retry_after = 600
    cloud.fake.inject("too_many_requests", times=None)
    assert "rate limit is used up" in await cloud.harness.say("/volumes")
    assert len(cloud.fake.requests) == 1
