"""The loopback OVHcloud API fake, spoken to over plain HTTP with hand-made signatures."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.fake_ovh import (
    APP_KEY,
    APP_SECRET,
    CONSUMER_KEY,
    PROJECT,
    READ_CONSUMER_KEY,
    FakeOvh,
)

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def fake() -> Iterator[FakeOvh]:
    with FakeOvh() as running:
        yield running


def call(
    fake: FakeOvh,
    method: str,
    path: str,
    body: Any = None,
    *,
    secret: str = APP_SECRET,
    consumer: str = CONSUMER_KEY,
    stamp: int | None = None,
    sign: bool = True,
) -> tuple[int, dict[str, str], Any]:
    url = fake.api_url + path
    raw = "" if body is None else json.dumps(body)
    now = str(int(time.time()) if stamp is None else stamp)
    headers = {"X-Ovh-Application": APP_KEY, "Content-Type": "application/json"}
    if sign:
        signed = "+".join([secret, consumer, method, url, raw, now]).encode()
        headers |= {"X-Ovh-Consumer": consumer, "X-Ovh-Timestamp": now,
                    "X-Ovh-Signature": "$1$" + hashlib.sha1(signed).hexdigest()}  # noqa: S324  # fmt: skip
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        conn.request(method, parts.path, body=raw.encode() or None, headers=headers)
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read())
    finally:
        conn.close()


CLOUD = f"/cloud/project/{PROJECT}"


def test_the_clock_and_the_catalogue_need_no_signature(fake: FakeOvh) -> None:
    fake.skew = 120
    status, _, now = call(fake, "GET", "/auth/time", sign=False)
    assert status == 200
    assert abs(now - (time.time() + 120)) < 5
    status, _, catalogue = call(fake, "GET", "/order/catalog/public/cloud", sign=False)
    assert catalogue["locale"]["currencyCode"] == "EUR"
    assert {"snapshot.consumption", "volume.classic.consumption"} <= {
        a["planCode"] for a in catalogue["addons"]
    }


def test_a_signed_call_is_answered_and_every_bad_part_is_named(fake: FakeOvh) -> None:
    fake.add_instance("steward")
    assert call(fake, "GET", f"{CLOUD}/instance")[0] == 200
    cases = {
        "INVALID_SIGNATURE": call(fake, "GET", f"{CLOUD}/instance", secret="wrong"),
        "INVALID_CREDENTIAL": call(fake, "GET", f"{CLOUD}/instance", consumer="nobody"),
        "QUERY_TIME_OUT": call(fake, "GET", f"{CLOUD}/instance", stamp=int(time.time()) - 300),
    }
    for code, (status, _, body) in cases.items():
        assert (status, body["errorCode"]) == ({"INVALID_CREDENTIAL": 403}.get(code, 400), code)
        assert set(body) == {"message", "errorCode", "httpCode"}
    status, _, body = call(fake, "GET", f"{CLOUD}/instance", sign=False)
    assert (status, body["errorCode"]) == (403, "INVALID_CREDENTIAL")


def test_a_read_only_consumer_key_may_not_post(fake: FakeOvh) -> None:
    instance = fake.add_instance("steward")
    path = f"{CLOUD}/instance/{instance['id']}/stop"
    status, _, body = call(fake, "POST", path, consumer=READ_CONSUMER_KEY)
    assert (status, body["errorCode"]) == (403, "NOT_GRANTED_CALL")
    assert fake.instances[instance["id"]]["status"] == "ACTIVE"


def test_an_instance_stops_as_it_is_read(fake: FakeOvh) -> None:
    fake.operation_polls = 2
    instance = fake.add_instance("steward")
    path = f"{CLOUD}/instance/{instance['id']}"
    assert call(fake, "POST", f"{path}/stop")[0] == 200
    assert call(fake, "POST", f"{path}/stop")[0] == 409  # busy
    seen = [call(fake, "GET", path)[2]["status"] for _ in range(4)]
    assert seen == ["ACTIVE", "ACTIVE", "SHUTOFF", "SHUTOFF"]
    assert call(fake, "GET", f"{CLOUD}/instance")[2][0]["flavorId"] == "d2-4-GRA11"


def test_a_snapshot_is_saving_then_active_or_error(fake: FakeOvh) -> None:
    instance = fake.add_instance("steward")
    post = f"{CLOUD}/instance/{instance['id']}/snapshot"
    assert call(fake, "POST", post, {"snapshotName": "one"})[0] == 200
    images = [call(fake, "GET", f"{CLOUD}/snapshot")[2][0]["status"] for _ in range(2)]
    assert images == ["saving", "active"]
    fake.fail_operations = True
    assert call(fake, "POST", post, {"snapshotName": "two"})[0] == 200
    states = {i["name"]: i["status"] for i in call(fake, "GET", f"{CLOUD}/snapshot")[2]}
    assert states == {"one": "active", "two": "saving"}
    states = {i["name"]: i["status"] for i in call(fake, "GET", f"{CLOUD}/snapshot")[2]}
    assert states == {"one": "active", "two": "error"}
    assert call(fake, "POST", post, {})[0] == 400


def test_a_volume_only_grows(fake: FakeOvh) -> None:
    volume = fake.add_volume("data", 20, None)
    path = f"{CLOUD}/volume/{volume['id']}"
    status, _, body = call(fake, "POST", f"{path}/upsize", {"size": 10})
    assert (status, body["httpCode"]) == (400, "400 Bad Request")
    assert call(fake, "POST", f"{path}/upsize", {"size": 30})[2]["status"] == "extending"
    assert call(fake, "GET", path)[2]["size"] == 20
    assert call(fake, "GET", path)[2] | {} == fake.volumes[volume["id"]]
    assert fake.volumes[volume["id"]]["size"] == 30


def test_unknown_things_are_404_in_ovhs_words(fake: FakeOvh) -> None:
    for path in (f"{CLOUD}/volume/nope", "/cloud/project/other/instance", f"{CLOUD}/nothing"):
        status, _, body = call(fake, "GET", path)
        assert (status, body["httpCode"]) == (404, "404 Not Found")
        assert body["message"]


def test_injected_faults_answer_as_ovh_does(fake: FakeOvh) -> None:
    fake.inject("rate_limited", times=1)
    status, headers, body = call(fake, "GET", f"{CLOUD}/instance")
    assert (status, headers["Retry-After"], body["httpCode"]) == (429, "1", "429 Too Many Requests")
    fake.inject("service_error", times=1, method="POST")
    assert call(fake, "GET", f"{CLOUD}/instance")[0] == 200
    fake.inject("drop", times=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        call(fake, "GET", f"{CLOUD}/instance")
    fake.clear_faults()
    fake.slow_seconds = 0.3
    fake.inject("slow", times=1)
    started = time.monotonic()
    assert call(fake, "GET", f"{CLOUD}/instance")[0] == 200
    assert time.monotonic() - started >= 0.3
    assert [r.status for r in fake.requests] == [429, 200, 0, 200]
