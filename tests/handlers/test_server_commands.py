"""The cloud and bucket commands through the engine, on the in-memory providers of the demo:
what they show, what they change after Confirm, and one sentence for every kind of failure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from providers.server.memory import demo_server
from providers.storage.memory import ALL_CAPABILITIES, MemoryBackupStorage
from tests.conftest import ADMIN2, OPERATOR, VIEWER, Harness


async def test_server_shows_type_addresses_traffic_price_and_protection(harness: Harness) -> None:
    text = await harness.say("/server", VIEWER)
    info = await harness.server.cloud.this_server()
    assert f"<b>{info.name}</b> ({info.id}) {info.status}" in text
    assert f"{info.cores} cores, {info.memory_gb:g} GB memory, {info.disk_gb} GB disk" in text
    assert f"IPv4 {info.ipv4}" in text
    assert str(info.price_monthly) in text
    assert "provider backups" in text


async def test_without_a_cloud_each_command_says_what_turns_it_on(harness: Harness) -> None:
    harness.engine.deps = replace(harness.engine.deps, cloud=None, storage=None)
    for command in ("/server", "/volumes", "/snapshots"):
        text = await harness.say(command)
        assert f"{command} needs a cloud provider" in text
        assert "STEWARD_SERVER_PROVIDER=hetzner" in text
    assert "STEWARD_B2_KEY_ID" in await harness.say("/storage")
    # Everything else still works.
    assert "Services" in await harness.say("/services")


async def test_a_snapshot_shows_its_cost_first_and_is_taken_after_confirm(
    harness: Harness,
) -> None:
    cloud = harness.server.cloud
    before = len(await cloud.snapshots())
    prompt = await harness.say("/snapshot", OPERATOR)
    estimate = await cloud.snapshot_cost_estimate()
    assert f"at most {estimate.new_snapshot_max_monthly} a month" in prompt
    assert len(await cloud.snapshots()) == before
    await harness.press(1, OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    assert "Snapshot" in harness.outbox.last.current.text
    assert "taken" in harness.outbox.last.current.text
    assert len(await cloud.snapshots()) == before + 1


async def test_deleting_a_snapshot_names_it_and_needs_an_admin(harness: Harness) -> None:
    cloud = harness.server.cloud
    newest = (await cloud.snapshots())[0]
    assert "needs the admin role" in await harness.say(f"/snapshots delete {newest.id}", OPERATOR)
    prompt = await harness.say(f"/snapshots delete {newest.id}")
    assert newest.description in prompt
    await harness.press(1)
    assert [s.id for s in await cloud.snapshots()].count(newest.id) == 0
    assert "There is no snapshot 42" in await harness.say("/snapshots delete 42")


async def test_volumes_show_size_usage_and_price(harness: Harness) -> None:
    text = await harness.say("/volumes", VIEWER)
    assert "steward-data</b> 50 GB, <code>/data</code> 71% full" in text


async def test_resize_grows_the_volume_then_its_filesystem(harness: Harness) -> None:
    cloud = harness.server.cloud
    prompt = await harness.say("/resize steward-data 80")
    price = await cloud.volume_price(80)
    assert f"It then costs {price} a month" in prompt
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    (volume,) = await cloud.volumes()
    assert volume.size_gb == 80
    assert harness.server.host.grown == [volume.linux_device]
    assert "steward-data is 80 GB" in harness.outbox.last.current.text


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/resize steward-data 20", "it cannot shrink to 20 GB, only grow"),
        ("/resize steward-data 50", "is already 50 GB"),
        ("/resize backups 100", "There is no volume backups"),
        ("/power steward-demo reset", "That is this server"),
        ("/power nowhere reset", "There is no server &#x27;nowhere&#x27; in this project"),
    ],
)
async def test_bad_requests_get_one_sentence_and_change_nothing(
    harness: Harness, text: str, answer: str
) -> None:
    cloud = harness.server.cloud
    calls = len(cloud.calls)
    reply = await harness.say(text)
    assert answer in reply
    assert all(not sent.reply.buttons for sent in harness.outbox.messages)
    writes = [c for c in cloud.calls[calls:] if c[0] in {"resize_volume", "power"}]
    assert writes == []
    (volume,) = await cloud.volumes()
    assert volume.size_gb == 50


@pytest.mark.parametrize(
    ("failure", "sentence"),
    [
        ("rate_limit_exceeded", "rate limit is used up"),
        ("unauthorized", "refused the API token"),
        ("forbidden", "needs Read &amp; Write permission"),
    ],
)
async def test_provider_errors_become_clear_replies(
    harness: Harness, failure: str, sentence: str
) -> None:
    harness.server.cloud.failure = failure
    assert sentence in await harness.say("/server")


async def test_a_cloud_that_is_down_is_said_plainly(harness: Harness) -> None:
    harness.server.cloud.down = True
    assert "Cannot reach the cloud API" in await harness.say("/volumes")


async def test_power_needs_a_second_admin(harness: Harness) -> None:
    cloud = harness.server.cloud
    other = demo_server("4712", "backup-box")
    cloud.servers[other.id] = other
    prompt = await harness.say("/power backup-box poweroff")
    assert "poweroff backup-box" in prompt
    assert "a second admin" in prompt
    assert await harness.press(1) == "This needs a second admin to confirm."
    await harness.press(1, ADMIN2)
    assert await harness.engine.wait_for_jobs(10)
    assert ("power", "4712", "poweroff") in [c[:3] for c in cloud.calls]
    assert "backup-box: poweroff done" in harness.outbox.last.current.text


async def test_storage_shows_size_cost_and_a_key_that_is_fine(harness: Harness) -> None:
    info = await harness.server.storage.bucket_info()
    text = await harness.say("/storage", VIEWER)
    assert f"{info.file_count} files" in text
    assert f"about {info.monthly_cost:.2f} USD a month" in text
    assert "limited to this bucket and cannot delete" in text


async def test_storage_warns_about_an_all_powerful_key(harness: Harness) -> None:
    demo = harness.server.storage
    master = demo.account.add_key(ALL_CAPABILITIES)
    harness.engine.deps = replace(
        harness.engine.deps,
        storage=MemoryBackupStorage(demo.account, master.key_id, master.secret, demo.bucket),
    )
    text = await harness.say("/storage")
    assert "too powerful" in text
    assert "delete" in text
