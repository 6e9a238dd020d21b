"""The loopback Hetzner Cloud API fake, spoken to over plain HTTP as the reference describes."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.fake_hetzner import READ_TOKEN, TOKEN, FakeHetzner

pytestmark = pytest.mark.timeout(20)


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def fake() -> Iterator[FakeHetzner]:
    with FakeHetzner() as running:
        yield running


def call(
    fake: FakeHetzner, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> Answer:
    url = urlsplit(fake.api_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    raw = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    if raw is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, url.path + path, body=raw, headers=headers)
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def test_every_answer_needs_a_known_bearer_token(fake: FakeHetzner) -> None:
    for token in (None, "wrong"):
        answer = call(fake, "GET", "/servers", token=token)
        assert answer.status == 401
        assert answer.json["error"]["code"] == "unauthorized"
        assert set(answer.json["error"]) == {"code", "message", "details"}
    assert call(fake, "GET", "/servers").status == 200


def test_lists_are_paginated_and_filter_by_name(fake: FakeHetzner) -> None:
    for n in range(30):
        fake.add_server(f"s{n}")
    first = call(fake, "GET", "/servers").json
    assert len(first["servers"]) == 25
    assert first["meta"]["pagination"] == {
        "page": 1,
        "per_page": 25,
        "previous_page": None,
        "next_page": 2,
        "last_page": 2,
        "total_entries": 30,
    }
    second = call(fake, "GET", "/servers?page=2&per_page=25").json
    assert [s["name"] for s in second["servers"]] == [f"s{n}" for n in range(25, 30)]
    assert second["meta"]["pagination"]["next_page"] is None
    past_the_end = call(fake, "GET", "/servers?page=3").json
    assert past_the_end["servers"] == []
    named = call(fake, "GET", "/servers?name=s7").json
    assert [s["name"] for s in named["servers"]] == ["s7"]
    assert call(fake, "GET", "/servers?per_page=500").json["meta"]["pagination"]["per_page"] == 50


def test_a_server_carries_public_net_even_when_an_address_is_missing(fake: FakeHetzner) -> None:
    server = fake.add_server("v6", ipv4=None)
    got = call(fake, "GET", f"/servers/{server['id']}").json["server"]
    assert got["public_net"]["ipv4"] is None
    assert got["public_net"]["ipv6"]["ip"] == "2001:db8:1234::/64"
    assert got["server_type"]["prices"][0]["price_monthly"]["gross"].startswith("4.51")
    assert got["location"]["city"] == "Falkenstein"
    assert call(fake, "GET", "/servers/999").json["error"]["code"] == "not_found"


def test_an_action_runs_then_succeeds_and_locks_its_resource_meanwhile(fake: FakeHetzner) -> None:
    server = fake.add_server("steward")
    started = call(fake, "POST", f"/servers/{server['id']}/actions/poweroff")
    assert started.status == 201
    action = started.json["action"]
    assert (action["command"], action["status"]) == ("stop_server", "running")
    again = call(fake, "POST", f"/servers/{server['id']}/actions/poweron")
    assert (again.status, again.json["error"]["code"]) == (423, "locked")
    assert call(fake, "GET", f"/actions/{action['id']}").json["action"]["status"] == "running"
    done = call(fake, "GET", f"/actions/{action['id']}").json["action"]
    assert (done["status"], done["progress"]) == ("success", 100)
    assert fake.servers[server["id"]]["status"] == "off"


def test_a_failed_action_has_an_error_and_no_effect(fake: FakeHetzner) -> None:
    server = fake.add_server("steward")
    volume = fake.add_volume("data", 20, server["id"])
    fake.fail_commands.add("resize_volume")
    fake.action_polls = 0
    action = call(fake, "POST", f"/volumes/{volume['id']}/actions/resize", {"size": 30})
    done = call(fake, "GET", f"/actions/{action.json['action']['id']}").json["action"]
    assert done["status"] == "error"
    assert done["error"] == {"code": "action_failed", "message": "Action failed"}
    assert fake.volumes[volume["id"]]["size"] == 20


def test_a_volume_only_grows(fake: FakeHetzner) -> None:
    volume = fake.add_volume("data", 20, None)
    answer = call(fake, "POST", f"/volumes/{volume['id']}/actions/resize", {"size": 10})
    assert (answer.status, answer.json["error"]["code"]) == (400, "invalid_input")
    assert answer.json["error"]["details"]["fields"][0]["name"] == "size"
    broken = call(fake, "POST", f"/volumes/{volume['id']}/actions/resize", b"{nope")
    assert broken.json["error"]["code"] == "json_error"


def test_snapshots_are_made_listed_by_type_and_deleted(fake: FakeHetzner) -> None:
    server = fake.add_server("steward")
    made = call(
        fake, "POST", f"/servers/{server['id']}/actions/create_image", {"description": "x"}
    ).json
    assert (made["image"]["status"], made["image"]["type"]) == ("creating", "snapshot")
    assert [i["id"] for i in call(fake, "GET", "/images?type=snapshot").json["images"]] == [
        made["image"]["id"]
    ]
    assert call(fake, "GET", "/images?type=backup").json["images"] == []
    gone = call(fake, "DELETE", f"/images/{made['image']['id']}")
    assert (gone.status, gone.body) == (204, b"")
    assert fake.images == {}


def test_a_read_token_may_read_but_not_write(fake: FakeHetzner) -> None:
    server = fake.add_server("steward")
    assert call(fake, "GET", "/servers", token=READ_TOKEN).status == 200
    refused = call(fake, "POST", f"/servers/{server['id']}/actions/reset", token=READ_TOKEN)
    assert (refused.status, refused.json["error"]["code"]) == (403, "forbidden")
    fake.readonly_code = "token_readonly"
    refused = call(fake, "POST", f"/servers/{server['id']}/actions/reset", token=READ_TOKEN)
    assert refused.json["error"]["code"] == "token_readonly"
    assert fake.actions == {}


@pytest.mark.parametrize(
    ("code", "status"),
    [("rate_limit_exceeded", 429), ("locked", 423), ("forbidden", 403), ("service_error", 503)],
)
def test_injected_errors_use_the_documented_status(
    fake: FakeHetzner, code: str, status: int
) -> None:
    fake.inject(code, times=2)
    for _ in range(2):
        answer = call(fake, "GET", "/pricing")
        assert (answer.status, answer.json["error"]["code"]) == (status, code)
    assert call(fake, "GET", "/pricing").status == 200


def test_rate_limit_headers_are_sent(fake: FakeHetzner) -> None:
    fake.inject("rate_limit_exceeded")
    limited = call(fake, "GET", "/locations")
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert int(limited.headers["RateLimit-Limit"]) == 3600
    assert call(fake, "GET", "/locations").headers["RateLimit-Remaining"] == "3599"


def test_a_dropped_connection_gets_no_answer(fake: FakeHetzner) -> None:
    fake.inject("drop", method="POST")
    assert call(fake, "GET", "/pricing").status == 200
    with pytest.raises(http.client.RemoteDisconnected):
        call(fake, "POST", "/servers/1/actions/reset")
    assert [r.status for r in fake.requests] == [200, 0]


def test_pricing_follows_the_reference_shape(fake: FakeHetzner) -> None:
    pricing = call(fake, "GET", "/pricing").json["pricing"]
    assert pricing["currency"] == "EUR"
    assert set(pricing["image"]["price_per_gb_month"]) == {"net", "gross"}
    assert set(pricing["volume"]["price_per_gb_month"]) == {"net", "gross"}
    assert [t["name"] for t in pricing["server_types"]] == ["cx22", "cx32"]
