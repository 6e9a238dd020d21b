"""The cloud commands end to end with STEWARD_SERVER_PROVIDER=scaleway: the settings, the
composition root's ``_cloud``, the real adapter and the official SDK, against a loopback fake
of the Scaleway APIs (the SDK takes an ``api_url``, so nothing is faked inside it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from bot.app import _cloud
from bot.config import ConfigError, load_settings
from bot.storage.database import Database
from tests.conftest import ADMIN2, OPERATOR, VIEWER, Harness, make_harness
from tests.support.fake_scaleway import ACCESS_KEY, PROJECT, SECRET_KEY, FakeScaleway
from tests.support.scaleway_harness import populated

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake() -> Iterator[FakeScaleway]:
    with FakeScaleway() as running:
        yield running


@pytest.fixture
def scaleway(sqlite_db: Database, fake: FakeScaleway) -> Harness:
    populated(fake)
    settings = load_settings(
        server_provider="scaleway",
        scaleway_access_key=ACCESS_KEY,
        scaleway_secret_key=SECRET_KEY,
        scaleway_project_id=PROJECT,
        scaleway_zone="fr-par-1",
        scaleway_server="steward",
        scaleway_api_url=fake.api_url,
    )
    provider: Any = _cloud(settings)
    provider._poll = 0.01  # the adapter's 2 s polls, shortened for the test
    harness = make_harness(sqlite_db)
    harness.engine.deps = replace(harness.engine.deps, cloud=provider)
    return harness


def _no_buttons(harness: Harness, since: int) -> bool:
    return all(not sent.reply.buttons for sent in harness.outbox.messages[since:])


async def test_server_shows_the_instance_its_paris_zone_and_price(scaleway: Harness) -> None:
    text = await scaleway.say("/server", VIEWER)
    assert "<b>steward</b>" in text
    assert "2 cores, 4 GB memory, 40 GB disk" in text
    assert "IPv4 203.0.113.10" in text
    assert "14.60 EUR" in text
    assert "fr-par-1" in text
    assert "traffic" not in text  # Scaleway counts no traffic: no line rather than a guess


async def test_a_snapshot_is_priced_then_taken_after_confirm(
    scaleway: Harness, fake: FakeScaleway
) -> None:
    prompt = await scaleway.say("/snapshot", OPERATOR)
    assert "at most 1.31 EUR a month" in prompt  # 40 GB x 0.000045 EUR/GB-hour x 730 h
    assert len(fake.snapshots) == 1
    await scaleway.press(1, OPERATOR)
    assert await scaleway.engine.wait_for_jobs(10)
    assert "taken" in scaleway.outbox.last.current.text
    assert sorted(s["status"] for s in fake.snapshots.values()) == ["available", "available"]
    listed = await scaleway.say("/snapshots", VIEWER)
    assert "before upgrade" in listed


async def test_a_snapshot_is_deleted_by_its_uuid(scaleway: Harness, fake: FakeScaleway) -> None:
    (snap_id,) = fake.snapshots
    prompt = await scaleway.say(f"/snapshots delete {snap_id}")
    assert "before upgrade" in prompt
    await scaleway.press(1)
    assert fake.snapshots == {}
    before = len(scaleway.outbox.messages)
    assert "There is no snapshot 42" in await scaleway.say("/snapshots delete 42")
    assert _no_buttons(scaleway, before)


async def test_volumes_list_the_data_volume_with_its_price(scaleway: Harness) -> None:
    text = await scaleway.say("/volumes", VIEWER)
    assert "data</b> 20 GB" in text
    assert "1.72 EUR" in text  # 20 GB x 0.000118 EUR/GB-hour x 730 h
    assert "steward-root" not in text  # the root disk is in /server, not a volume to grow


async def test_resize_grows_the_block_volume(scaleway: Harness, fake: FakeScaleway) -> None:
    prompt = await scaleway.say("/resize data 30")
    assert "It then costs 2.58 EUR a month" in prompt
    await scaleway.press(1)
    assert await scaleway.engine.wait_for_jobs(10)
    data = next(v for v in fake.volumes.values() if v["name"] == "data")
    assert data["size"] == 30 * 1000**3
    assert "data is 30 GB" in scaleway.outbox.last.current.text


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/resize data 10", "it cannot shrink to 10 GB, only grow"),
        ("/resize steward-root 80", "There is no volume steward-root. Volumes: data."),
        ("/power steward reset", "That is this server"),
    ],
)
async def test_what_scaleway_will_not_do_is_one_line_without_a_button(
    scaleway: Harness, fake: FakeScaleway, text: str, answer: str
) -> None:
    before_state, before = fake.state(), len(scaleway.outbox.messages)
    reply = await scaleway.say(text)
    assert answer in reply
    assert "\n" not in reply
    assert _no_buttons(scaleway, before)
    assert fake.state() == before_state


async def test_power_off_another_instance_with_a_second_admin(
    scaleway: Harness, fake: FakeScaleway
) -> None:
    scaleway.engine.settings = replace(scaleway.engine.settings, two_person=frozenset({"power"}))
    prompt = await scaleway.say("/power backup-box poweroff")
    assert "poweroff backup-box" in prompt
    await scaleway.press(1, ADMIN2)
    assert await scaleway.engine.wait_for_jobs(10)
    box = next(s for s in fake.servers.values() if s["name"] == "backup-box")
    assert box["state"] == "stopped"
    assert [r.method for r in fake.requests if r.path.endswith("/action")] == ["POST"]
    assert "backup-box: poweroff done" in scaleway.outbox.last.current.text


async def test_a_revoked_key_is_one_sentence_without_the_key(
    scaleway: Harness, fake: FakeScaleway
) -> None:
    fake.keys.clear()
    text = await scaleway.say("/server")
    assert "refused the API token" in text
    assert SECRET_KEY not in text


def test_missing_keys_are_one_config_line() -> None:
    settings = load_settings(server_provider="scaleway", scaleway_project_id=PROJECT)
    with pytest.raises(ConfigError, match="STEWARD_SCALEWAY_ACCESS_KEY") as caught:
        _cloud(settings)
    assert "\n" not in str(caught.value)


def test_a_malformed_secret_key_is_one_config_line_that_hides_it() -> None:
    settings = load_settings(
        server_provider="scaleway",
        scaleway_access_key=ACCESS_KEY,
        scaleway_secret_key="hunter2",
        scaleway_project_id=PROJECT,
        scaleway_server="steward",
    )
    with pytest.raises(ConfigError, match=r"^STEWARD_SCALEWAY_SECRET_KEY is not") as caught:
        _cloud(settings)
    assert "hunter2" not in str(caught.value)
