"""The loopback DigitalOcean API v2 fake, spoken to over plain HTTP as the reference describes."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.fake_digitalocean import READ_TOKEN, TOKEN, FakeDigitalOcean

pytestmark = pytest.mark.timeout(20)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def fake() -> Iterator[FakeDigitalOcean]:
    with FakeDigitalOcean() as running:
        yield running


def call(
    fake: FakeDigitalOcean,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = TOKEN,
    timeout: float = 5,
) -> Reply:
    url = urlsplit(fake.api_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    raw = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    if raw is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, "/v2" + path, body=raw, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def test_every_answer_needs_a_known_bearer_token(fake: FakeDigitalOcean) -> None:
    for token in (None, "dop_v1_wrong"):
        refused = call(fake, "GET", "/droplets", token=token)
        assert refused.status == 401
        assert refused.json == {"id": "unauthorized", "message": "Unable to authenticate you."}
    answer = call(fake, "GET", "/droplets")
    assert answer.status == 200
    assert answer.headers["ratelimit-limit"] == "5000"
    assert int(answer.headers["ratelimit-remaining"]) > 0


def test_lists_carry_page_links_and_the_total(fake: FakeDigitalOcean) -> None:
    for n in range(45):
        fake.add_droplet(f"d{n}")
    first = call(fake, "GET", "/droplets").json
    assert len(first["droplets"]) == 20
    assert first["meta"] == {"total": 45}
    assert set(first["links"]["pages"]) == {"next", "last"}
    assert first["links"]["pages"]["next"].endswith("/v2/droplets?page=2&per_page=20")
    third = call(fake, "GET", "/droplets?page=3&per_page=20").json
    assert [d["name"] for d in third["droplets"]] == [f"d{n}" for n in range(40, 45)]
    assert set(third["links"]["pages"]) == {"first", "prev"}
    past_the_end = call(fake, "GET", "/droplets?page=9").json
    assert past_the_end["droplets"] == []
    assert "next" not in past_the_end["links"]["pages"]
    assert past_the_end["meta"]["total"] == 45
    assert len(call(fake, "GET", "/droplets?per_page=500").json["droplets"]) == 45
    named = call(fake, "GET", "/droplets?name=d7").json
    assert [d["name"] for d in named["droplets"]] == ["d7"]
    assert call(fake, "GET", "/droplets?page=0").json["id"] == "bad_request"


def test_a_droplet_has_its_size_with_price_and_its_networks(fake: FakeDigitalOcean) -> None:
    droplet = fake.add_droplet("steward", ipv4=None)
    got = call(fake, "GET", f"/droplets/{droplet['id']}").json["droplet"]
    assert got["networks"]["v4"] == []
    assert got["networks"]["v6"][0]["type"] == "public"
    assert (got["size"]["price_monthly"], got["size"]["transfer"]) == (24.0, 4.0)
    assert got["region"]["name"] == "Frankfurt 1"
    missing = call(fake, "GET", "/droplets/999")
    assert (missing.status, missing.json["id"]) == (404, "not_found")


def test_an_action_is_in_progress_then_completed_and_locks_the_droplet(
    fake: FakeDigitalOcean,
) -> None:
    droplet = fake.add_droplet("steward")
    started = call(fake, "POST", f"/droplets/{droplet['id']}/actions", {"type": "power_off"})
    assert started.status == 201
    action = started.json["action"]
    assert (action["type"], action["status"], action["resource_type"]) == (
        "power_off", "in-progress", "droplet",
    )  # fmt: skip
    again = call(fake, "POST", f"/droplets/{droplet['id']}/actions", {"type": "power_on"})
    assert (again.status, again.json["message"]) == (422, "Droplet already has a pending event.")
    assert call(fake, "GET", f"/actions/{action['id']}").json["action"]["status"] == "in-progress"
    done = call(fake, "GET", f"/actions/{action['id']}").json["action"]
    assert done["status"] == "completed"
    assert done["completed_at"] is not None
    assert fake.droplets[droplet["id"]]["status"] == "off"
    assert fake.droplets[droplet["id"]]["locked"] is False


def test_an_errored_action_has_no_effect(fake: FakeDigitalOcean) -> None:
    droplet = fake.add_droplet("steward")
    volume = fake.add_volume("data", 20, droplet["id"])
    fake.fail_types.add("resize")
    fake.action_polls = 0
    body = {"type": "resize", "size_gigabytes": 30, "region": "fra1"}
    started = call(fake, "POST", f"/volumes/{volume['id']}/actions", body)
    assert started.status == 202
    done = call(fake, "GET", f"/actions/{started.json['action']['id']}").json["action"]
    assert done["status"] == "errored"
    assert fake.volumes[volume["id"]]["size_gigabytes"] == 20


def test_a_volume_only_grows(fake: FakeDigitalOcean) -> None:
    volume = fake.add_volume("data", 20, None)
    body = {"type": "resize", "size_gigabytes": 10, "region": "fra1"}
    shrink = call(fake, "POST", f"/volumes/{volume['id']}/actions", body)
    assert (shrink.status, shrink.json["id"]) == (422, "unprocessable_entity")
    broken = call(fake, "POST", f"/volumes/{volume['id']}/actions", b"{nope")
    assert (broken.status, broken.json["id"]) == (400, "bad_request")
    assert fake.actions == {}


def test_a_snapshot_is_made_listed_and_deleted(fake: FakeDigitalOcean) -> None:
    droplet = fake.add_droplet("steward")
    fake.action_polls = 0
    body = {"type": "snapshot", "name": "nightly"}
    action = call(fake, "POST", f"/droplets/{droplet['id']}/actions", body).json["action"]
    assert call(fake, "GET", "/snapshots").json["snapshots"] == []  # not before it completes
    call(fake, "GET", f"/actions/{action['id']}")
    [listed] = call(fake, "GET", "/snapshots?resource_type=droplet").json["snapshots"]
    [own] = call(fake, "GET", f"/droplets/{droplet['id']}/snapshots").json["snapshots"]
    assert isinstance(listed["id"], str)
    assert own["id"] == int(listed["id"])
    assert (listed["name"], listed["resource_type"]) == ("nightly", "droplet")
    assert call(fake, "GET", "/snapshots?resource_type=volume").json["snapshots"] == []
    gone = call(fake, "DELETE", f"/snapshots/{listed['id']}")
    assert (gone.status, gone.body) == (204, b"")
    assert fake.snapshots == {}
    assert fake.droplets[droplet["id"]]["snapshot_ids"] == []


def test_a_read_token_may_read_but_not_write(fake: FakeDigitalOcean) -> None:
    droplet = fake.add_droplet("steward")
    assert call(fake, "GET", "/droplets", token=READ_TOKEN).status == 200
    body = {"type": "power_cycle"}
    refused = call(fake, "POST", f"/droplets/{droplet['id']}/actions", body, token=READ_TOKEN)
    assert (refused.status, refused.json["id"]) == (403, "forbidden")
    assert fake.actions == {}


@pytest.mark.parametrize(
    ("fault", "status"),
    [("too_many_requests", 429), ("forbidden", 403), ("server_error", 500),
     ("service_unavailable", 503), ("not_found", 404)],
)  # fmt: skip
def test_injected_errors_use_the_documented_status(
    fake: FakeDigitalOcean, fault: str, status: int
) -> None:
    fake.inject(fault, times=2)
    for _ in range(2):
        answer = call(fake, "GET", "/volumes")
        assert (answer.status, answer.json["id"]) == (status, fault)
        assert set(answer.json) == {"id", "message"}
    assert call(fake, "GET", "/volumes").status == 200


def test_a_rate_limit_says_when_to_come_back(fake: FakeDigitalOcean) -> None:
    fake.retry_after = 7
    fake.inject("too_many_requests")
    limited = call(fake, "GET", "/volumes")
    assert limited.headers["Retry-After"] == "7"
    assert limited.headers["ratelimit-remaining"] == "0"
    assert int(limited.headers["ratelimit-reset"]) > 0
    assert "Retry-After" not in call(fake, "GET", "/volumes").headers


def test_a_dropped_connection_gets_no_answer(fake: FakeDigitalOcean) -> None:
    fake.inject("drop", method="POST")
    assert call(fake, "GET", "/volumes").status == 200
    with pytest.raises(http.client.RemoteDisconnected):
        call(fake, "POST", "/droplets/1/actions", {"type": "reboot"})
    assert [r.status for r in fake.requests] == [200, 0]


def test_a_slow_answer_outlasts_a_short_client_timeout(fake: FakeDigitalOcean) -> None:
    fake.slow_seconds = 0.5
    fake.inject("slow")
    with pytest.raises(socket.timeout):
        call(fake, "GET", "/volumes", timeout=0.1)
    assert call(fake, "GET", "/volumes").status == 200


def test_unknown_faults_are_refused(fake: FakeDigitalOcean) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        fake.inject("teapot")
