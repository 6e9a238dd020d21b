"""The Scaleway fake itself, spoken to with plain HTTP: authentication, error bodies, pages
that end, long work that progresses as it is polled, and injected faults."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fake_scaleway import GB, READ_KEY, SECRET_KEY, FakeScaleway

pytestmark = pytest.mark.timeout(20)
INSTANCE = "/instance/v1/zones/fr-par-1"
BLOCK = "/block/v1alpha1/zones/fr-par-1"


@pytest.fixture
def fake() -> Iterator[FakeScaleway]:
    with FakeScaleway() as running:
        yield running


def call(
    fake: FakeScaleway, method: str, path: str, body: Any = None, key: str | None = SECRET_KEY
) -> tuple[int, Any, dict[str, str]]:
    host, port = fake.api_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"X-Auth-Token": key} if key else {}
    conn.request(method, path, None if body is None else json.dumps(body), headers)
    answer = conn.getresponse()
    raw = answer.read()
    conn.close()
    return answer.status, json.loads(raw) if raw else None, dict(answer.headers)


def test_without_a_key_the_answer_is_scaleways_401_body(fake: FakeScaleway) -> None:
    status, body, _ = call(fake, "GET", f"{INSTANCE}/servers", key=None)
    assert status == 401
    assert body["type"] == "denied_authentication"
    assert body["message"]


def test_a_read_key_reads_but_may_not_write(fake: FakeScaleway) -> None:
    server = fake.add_server("steward")
    assert call(fake, "GET", f"{INSTANCE}/servers", key=READ_KEY)[0] == 200
    status, body, _ = call(
        fake, "POST", f"{INSTANCE}/servers/{server['id']}/action", {"action": "poweroff"}, READ_KEY
    )
    assert (status, body["type"]) == (403, "permissions_denied")
    assert fake.servers[server["id"]]["state"] == "running"


def test_instance_lists_count_in_a_header_and_end_in_an_empty_page(fake: FakeScaleway) -> None:
    for n in range(3):
        fake.add_server(f"web{n}")
    _, first, headers = call(fake, "GET", f"{INSTANCE}/servers?per_page=2&page=1")
    _, second, _ = call(fake, "GET", f"{INSTANCE}/servers?per_page=2&page=2")
    _, past, _ = call(fake, "GET", f"{INSTANCE}/servers?per_page=2&page=3")
    assert headers["X-Total-Count"] == "3"
    assert (len(first["servers"]), len(second["servers"]), past["servers"]) == (2, 1, [])


def test_block_lists_count_in_the_body(fake: FakeScaleway) -> None:
    fake.add_volume("data", 20, None)
    _, body, headers = call(fake, "GET", f"{BLOCK}/volumes?page_size=100")
    assert body["total_count"] == 1
    assert "X-Total-Count" not in headers
    assert call(fake, "GET", f"{BLOCK}/volumes?page_size=101")[0] == 400


def test_the_name_filter_matches_parts_of_names(fake: FakeScaleway) -> None:
    fake.add_server("steward")
    fake.add_server("steward-old")
    _, body, _ = call(fake, "GET", f"{INSTANCE}/servers?name=steward")
    assert sorted(s["name"] for s in body["servers"]) == ["steward", "steward-old"]


def test_a_power_action_is_a_task_and_the_server_settles_when_polled(fake: FakeScaleway) -> None:
    server = fake.add_server("steward")
    path = f"{INSTANCE}/servers/{server['id']}"
    status, body, _ = call(fake, "POST", f"{path}/action", {"action": "poweroff"})
    assert (status, body["task"]["status"]) == (202, "pending")
    assert call(fake, "POST", f"{path}/action", {"action": "poweron"})[1]["type"] == (
        "transient_state"
    )
    states = [call(fake, "GET", path)[1]["server"]["state"] for _ in range(2)]
    assert states == ["stopping", "stopped"]
    assert fake.tasks[body["task"]["id"]]["status"] == "success"


def test_a_volume_only_grows_and_resizes_as_polled(fake: FakeScaleway) -> None:
    volume = fake.add_volume("data", 20, None)
    path = f"{BLOCK}/volumes/{volume['id']}"
    assert call(fake, "PATCH", path, {"size": 10 * GB})[1]["type"] == "invalid_arguments"
    assert call(fake, "PATCH", path, {"size": 30 * GB})[1]["status"] == "resizing"
    call(fake, "GET", path)
    assert call(fake, "GET", path)[1]["size"] == 30 * GB


def test_a_failing_snapshot_ends_in_error(fake: FakeScaleway) -> None:
    volume = fake.add_volume("root", 40, None)
    fake.fail_actions = True
    _, made, _ = call(fake, "POST", f"{BLOCK}/snapshots", {"volume_id": volume["id"], "name": "x"})
    assert made["status"] == "creating"
    polled = [call(fake, "GET", f"{BLOCK}/snapshots/{made['id']}")[1]["status"] for _ in range(2)]
    assert polled == ["creating", "error"]


def test_an_unknown_resource_names_itself(fake: FakeScaleway) -> None:
    status, body, _ = call(fake, "GET", f"{BLOCK}/snapshots/nope")
    assert (status, body["type"], body["resource_id"]) == (404, "unknown_resource", "nope")


def test_injected_faults_answer_then_clear(fake: FakeScaleway) -> None:
    fake.inject("rate_limit_exceeded", times=1)
    status, body, headers = call(fake, "GET", f"{INSTANCE}/servers")
    assert (status, headers["Retry-After"]) == (429, "1")
    assert body["type"] == "too_many_requests"
    fake.inject("service_error", times=1)
    assert call(fake, "GET", f"{INSTANCE}/servers")[0] == 503
    fake.inject("drop", times=1)
    with pytest.raises(http.client.RemoteDisconnected):
        call(fake, "GET", f"{INSTANCE}/servers")
    assert call(fake, "GET", f"{INSTANCE}/servers")[0] == 200
    assert [r.status for r in fake.requests] == [429, 503, 0, 200]


def test_prices_are_money_per_gb_hour_and_monthly_per_type(fake: FakeScaleway) -> None:
    _, types, _ = call(fake, "GET", f"{BLOCK}/volume-types")
    sbs = next(t for t in types["volume_types"] if t["type"] == "sbs_5k")
    assert sbs["pricing"] == {"currency_code": "EUR", "units": 0, "nanos": 118_000}
    _, products, headers = call(fake, "GET", f"{INSTANCE}/products/servers")
    assert products["servers"]["PLAY2-MICRO"]["monthly_price"] == 14.6
    assert headers["X-Total-Count"] == "2"
