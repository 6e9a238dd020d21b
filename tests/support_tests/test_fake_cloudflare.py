"""The loopback Cloudflare API fake, checked with the official SDK and with raw HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cloudflare
import httpx
import pytest
from cloudflare import Cloudflare

from tests.support.fake_cloudflare import FakeCloudflare

pytestmark = pytest.mark.timeout(30)
ZONE = "example.org"


@pytest.fixture
def fake() -> Iterator[FakeCloudflare]:
    with FakeCloudflare() as api:
        api.add_zone(ZONE)
        api.add_zone("example.net")
        yield api


@pytest.fixture
def client(fake: FakeCloudflare) -> Iterator[Cloudflare]:
    with Cloudflare(api_token=fake.token, base_url=fake.base_url, max_retries=0) as sdk:
        yield sdk


def raw(
    fake: FakeCloudflare, method: str, path: str, token: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or fake.token}"}
    return httpx.request(method, fake.base_url + path, headers=headers, timeout=5, **kw)


def add_a_records(fake: FakeCloudflare, count: int) -> None:
    for i in range(count):
        fake.add_record(
            ZONE, {"type": "A", "name": f"h{i}", "content": f"10.0.{i // 250}.{i % 250}", "ttl": 1}
        )


def test_every_answer_is_the_documented_envelope(fake: FakeCloudflare) -> None:
    body = raw(fake, "GET", "/zones", params={"name": ZONE}).json()
    assert set(body) == {"success", "errors", "messages", "result", "result_info"}
    assert body["success"] is True
    assert [zone["name"] for zone in body["result"]] == [ZONE]
    assert body["result_info"] == {
        "page": 1,
        "per_page": 20,
        "count": 1,
        "total_count": 1,
        "total_pages": 1,
    }


def test_the_sdk_finds_a_zone_by_name(fake: FakeCloudflare, client: Cloudflare) -> None:
    zones = list(client.zones.list(name=ZONE))
    assert [(zone.id, zone.name, zone.status) for zone in zones] == [
        (fake.zone_id(ZONE), ZONE, "active")
    ]
    assert list(client.zones.list(name="nowhere.org")) == []


def test_pages_past_the_end_are_empty_so_the_sdk_stops(
    fake: FakeCloudflare, client: Cloudflare
) -> None:
    add_a_records(fake, 23)
    zone_id = fake.zone_id(ZONE)
    listed = list(client.dns.records.list(zone_id=zone_id, per_page=10))
    assert len({record.id for record in listed}) == 23
    pages = [call.query.get("page", ["1"])[0] for call in fake.calls if "dns_records" in call.path]
    assert pages == ["1", "2", "3", "4"]  # the fourth is the empty one that ends the loop
    body = raw(
        fake, "GET", f"/zones/{zone_id}/dns_records", params={"page": 4, "per_page": 10}
    ).json()
    assert body["result"] == []
    assert body["result_info"] == {
        "page": 4,
        "per_page": 10,
        "count": 0,
        "total_count": 23,
        "total_pages": 3,
    }


def test_records_are_filtered_by_name_and_type(fake: FakeCloudflare, client: Cloudflare) -> None:
    add_a_records(fake, 3)
    fake.add_record(ZONE, {"type": "TXT", "name": "h1", "content": '"hello"', "ttl": 300})
    zone_id = fake.zone_id(ZONE)
    by_name = list(client.dns.records.list(zone_id=zone_id, name={"exact": "H1.example.org"}))
    assert sorted(r.type for r in by_name) == ["A", "TXT"]
    typed = list(client.dns.records.list(zone_id=zone_id, type="TXT"))
    assert [(r.name, r.content) for r in typed] == [("h1.example.org", '"hello"')]
    ends = list(client.dns.records.list(zone_id=zone_id, name={"endswith": "2.example.org"}))
    assert [r.name for r in ends] == ["h2.example.org"]


def test_create_edit_put_and_delete(fake: FakeCloudflare, client: Cloudflare) -> None:
    zone_id = fake.zone_id(ZONE)
    made: Any = client.dns.records.create(
        zone_id=zone_id, name="@", type="MX", content="example.org", priority=10, ttl=3600
    )
    assert made is not None
    assert (made.name, made.type, made.priority) == (ZONE, "MX", 10)
    edited: Any = client.dns.records.edit(
        made.id, zone_id=zone_id, name=ZONE, type="MX", ttl=300, priority=20
    )
    assert edited is not None
    assert (edited.content, edited.priority, edited.ttl) == ("example.org", 20, 300)
    put = client.dns.records.update(
        made.id, zone_id=zone_id, name="www", type="A", content="192.0.2.1", ttl=1
    )
    assert put is not None
    assert (put.name, put.type, put.content) == ("www.example.org", "A", "192.0.2.1")
    assert "priority" not in fake.records(ZONE)[0]
    client.dns.records.delete(made.id, zone_id=zone_id)
    assert fake.records(ZONE) == []
    with pytest.raises(cloudflare.NotFoundError) as gone:
        client.dns.records.delete(made.id, zone_id=zone_id)
    assert gone.value.errors[0].code == 81044


def test_caa_is_written_as_data_and_read_as_content_and_data(
    fake: FakeCloudflare, client: Cloudflare
) -> None:
    zone_id = fake.zone_id(ZONE)
    records: Any = client.dns.records  # the SDK types ``data`` per record type
    data = {"flags": 0, "tag": "issue", "value": "letsencrypt.org"}
    made = records.create(zone_id=zone_id, name=ZONE, type="CAA", data=data, ttl=3600)
    assert made is not None
    assert made.content == '0 issue "letsencrypt.org"'
    with pytest.raises(cloudflare.BadRequestError):
        records.create(zone_id=zone_id, name=ZONE, type="CAA", content="0 issue x", ttl=1)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"type": "A", "name": "x", "content": "192.0.2.1"}, 9021),  # ttl is required
        ({"type": "A", "name": "x", "content": "not-an-ip", "ttl": 1}, 9005),
        ({"type": "MX", "name": "x", "content": "mx.example.org", "ttl": 1}, 9100),
        ({"type": "A", "name": "dup", "content": "192.0.2.1", "ttl": 1}, 81058),
        ({"type": "CNAME", "name": "dup", "content": "example.org", "ttl": 1}, 81053),
    ],
)
def test_invalid_records_get_400_with_cloudflares_codes(
    fake: FakeCloudflare, body: dict[str, Any], code: int
) -> None:
    fake.add_record(ZONE, {"type": "A", "name": "dup", "content": "192.0.2.1", "ttl": 1})
    answer = raw(fake, "POST", f"/zones/{fake.zone_id(ZONE)}/dns_records", json=body)
    assert answer.status_code == 400
    assert answer.json()["success"] is False
    assert answer.json()["errors"][0]["code"] == code
    assert len(fake.records(ZONE)) == 1


def test_a_wrong_token_gets_401_and_a_read_only_token_cannot_write(fake: FakeCloudflare) -> None:
    answer = raw(fake, "GET", "/zones", token="wrong")
    assert answer.status_code == 401
    assert answer.json()["errors"] == [{"code": 10000, "message": "Authentication error"}]
    zone_path = f"/zones/{fake.zone_id(ZONE)}/dns_records"
    assert raw(fake, "GET", zone_path, token=fake.read_only_token).status_code == 200
    body = {"type": "A", "name": "x", "content": "192.0.2.1", "ttl": 1}
    denied = raw(fake, "POST", zone_path, token=fake.read_only_token, json=body)
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["code"] == 10000
    assert fake.records(ZONE) == []


def test_an_unknown_zone_id_cannot_be_routed(fake: FakeCloudflare, client: Cloudflare) -> None:
    with pytest.raises(cloudflare.NotFoundError) as missing:
        list(client.dns.records.list(zone_id="0" * 32))
    assert missing.value.errors[0].code == 7003


def test_injected_rate_limit_has_the_envelope_and_retry_after(fake: FakeCloudflare) -> None:
    fake.fail(429)
    answer = raw(fake, "GET", "/zones")
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["errors"][0]["code"] == 971
    assert raw(fake, "GET", "/zones").status_code == 200  # one time only


def test_injected_server_errors_and_dropped_connections(
    fake: FakeCloudflare, client: Cloudflare
) -> None:
    fake.fail(502, method="GET")
    with pytest.raises(cloudflare.InternalServerError) as bad_gateway:
        list(client.zones.list())
    assert bad_gateway.value.status_code == 502
    fake.fail(500)
    assert raw(fake, "GET", "/zones").json()["errors"][0]["code"] == 10002
    fake.drop()
    with pytest.raises(cloudflare.APIConnectionError):
        list(client.zones.list())
    assert [zone.name for zone in client.zones.list(name=ZONE)] == [ZONE]


def test_the_sdk_retries_a_server_error_when_allowed(fake: FakeCloudflare) -> None:
    fake.fail(503)
    with Cloudflare(api_token=fake.token, base_url=fake.base_url, max_retries=1) as sdk:
        assert [zone.name for zone in sdk.zones.list(name=ZONE)] == [ZONE]
    assert [call.status for call in fake.calls] == [503, 200, 200]  # the last: the empty page
