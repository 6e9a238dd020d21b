"""One contract for every DNS provider: Cloudflare's SDK against the loopback Cloudflare
fake, RFC 2136 against a real Knot server, and the in-memory provider. Then what only one
adapter has: Knot really serving the records, Cloudflare's pages and retries."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from providers.dns.base import DnsChanges, DnsError, DnsErrorKind, DnsRecord
from providers.dns.cloudflare import CloudflareDns
from providers.dns.memory import MemoryDns
from providers.dns.records import (
    canonical,
    diff,
    is_managed,
    managed_slots,
    parse_txt,
    quote_txt,
    required_records,
)
from providers.dns.rfc2136 import Rfc2136Dns, parse_server, parse_tsig_key
from tests.support import knot as knot_support
from tests.support.fake_cloudflare import FakeCloudflare
from tests.support.knot import (  # knot_fixture is the session fixture "knot"
    KnotServer,
    knot_server,
    query,
    reset_zone,
    serial,
    zone_records,
)

if TYPE_CHECKING:
    from providers.dns.base import DnsProvider

pytestmark = pytest.mark.timeout(60)

ZONE = "example.org"
MISSING = "missing.org"
KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "q7Lx9Y2bT0kR" * 30 + "IDAQAB"
DKIM_FILE = f'selector._domainkey IN TXT ( "v=DKIM1; k=rsa; "\n\t"p={KEY}" ) ;\n'


def rec(name: str, kind: Any, content: str, priority: int | None = None) -> DnsRecord:
    return canonical(DnsRecord(name, kind, content, 3600, priority))


USER_RECORDS = [
    rec(ZONE, "TXT", "google-site-verification=abc123"),
    rec(f"www.{ZONE}", "A", "198.51.100.2"),
    rec(f"shop.{ZONE}", "CNAME", "shops.example.net"),
    rec(ZONE, "CAA", '0 issue "sectigo.com"'),
]
SEED = [
    *USER_RECORDS,
    rec(ZONE, "A", "198.51.100.1"),
    rec(ZONE, "TXT", "v=spf1 mx -all"),
    rec(ZONE, "MX", "mx.old-provider.net", 20),
    rec(f"_dmarc.{ZONE}", "TXT", "v=DMARC1; p=none"),
]
REQUIRED = required_records(
    ZONE,
    ipv4="203.0.113.7",
    ipv6="2001:db8::7",
    subdomains=["cloud"],
    mail=True,
    dkim=DKIM_FILE,
)


def data(records: list[DnsRecord]) -> set[tuple[str, str, str, int | None]]:
    return {canonical(record).data for record in records}


def assert_one_sentence(error: DnsError, *secrets: str) -> None:
    text = str(error)
    assert text[:1].isupper(), text
    assert text.endswith("."), text
    assert "\n" not in text, text
    assert len(text) <= 160, text
    assert "Traceback" not in text, text
    assert "Error(" not in text, text
    assert all(secret not in text for secret in secrets), text


@dataclass
class World:
    """One provider and a way to look at its zone without it."""

    kind: str
    provider: DnsProvider
    seed: Callable[[list[DnsRecord]], None]
    stored: Callable[[], list[DnsRecord]]
    wrong_credentials: Callable[[], DnsProvider]
    read_only: Callable[[], DnsProvider]
    down: Callable[[], DnsProvider]
    baseline: list[DnsRecord] = field(default_factory=list)
    secrets: tuple[str, ...] = ()


# -- the three worlds -------------------------------------------------------------------------


def _cloudflare_body(record: DnsRecord) -> dict[str, Any]:
    body: dict[str, Any] = {"type": record.type, "name": record.name, "ttl": record.ttl}
    if record.type == "CAA":
        flags, tag, value = record.content.split(" ", 2)
        body["data"] = {"flags": int(flags), "tag": tag, "value": value.strip('"')}
    else:
        body["content"] = quote_txt(record.content) if record.type == "TXT" else record.content
    if record.priority is not None:
        body["priority"] = record.priority
    return body


def _cloudflare_stored(fake: FakeCloudflare) -> list[DnsRecord]:
    return [
        canonical(DnsRecord(r["name"], r["type"], r["content"], r["ttl"], r.get("priority")))
        for r in fake.records(ZONE)
    ]


@pytest.fixture
def cloudflare_world() -> Iterator[World]:
    with FakeCloudflare() as fake:
        fake.add_zone(ZONE)

        def adapter(token: str) -> CloudflareDns:
            return CloudflareDns(token, base_url=fake.base_url, max_retries=0, timeout=5)

        def seed(records: list[DnsRecord]) -> None:
            fake.remove_records(ZONE)
            for record in records:
                fake.add_record(ZONE, _cloudflare_body(record))

        def down() -> DnsProvider:
            fake.fail(503, times=None)
            return adapter(fake.token)

        yield World(
            "cloudflare",
            adapter(fake.token),
            seed,
            lambda: _cloudflare_stored(fake),
            lambda: adapter("cf-token-wrong"),
            lambda: adapter(fake.read_only_token),
            down,
            secrets=(fake.token, fake.read_only_token),
        )


@pytest.fixture
def rfc2136_world(knot: KnotServer, tmp_path: Path) -> World:
    def adapter(address: str, key_file: Path) -> Rfc2136Dns:
        return Rfc2136Dns(address, key_file, timeout=5)

    wrong = tmp_path / "wrong.key"
    wrong.write_text(f"steward:hmac-sha256:{knot.reader.secret}\n")
    return World(
        "rfc2136",
        adapter(knot.address, knot.write_key(knot.key, tmp_path)),
        lambda records: reset_zone(knot, ZONE, records),
        lambda: zone_records(knot, ZONE),
        lambda: adapter(knot.address, wrong),
        lambda: adapter(knot.address, knot.write_key(knot.reader, tmp_path, "line")),
        lambda: adapter(f"127.0.0.1:{_closed_port()}", knot.write_key(knot.key, tmp_path)),
        baseline=[DnsRecord(f"ns1.{ZONE}", "A", "127.0.0.1", 300)],
        secrets=(knot.key.secret, knot.reader.secret),
    )


@pytest.fixture
def memory_world() -> World:
    provider = MemoryDns.with_zone(ZONE)

    def twin(**options: Any) -> MemoryDns:
        return MemoryDns(zones=provider.zones, **options)

    def seed(records: list[DnsRecord]) -> None:
        provider.zones[ZONE] = list(records)

    return World(
        "memory",
        provider,
        seed,
        lambda: list(provider.zones[ZONE]),
        lambda: twin(failure=DnsErrorKind.UNAUTHORIZED),
        lambda: twin(read_only=True),
        lambda: twin(failure=DnsErrorKind.UNAVAILABLE),
    )


@pytest.fixture(params=["cloudflare", "rfc2136", "memory"])
def world(request: pytest.FixtureRequest) -> World:
    chosen: World = request.getfixturevalue(f"{request.param}_world")
    chosen.seed(SEED)
    return chosen


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the contract -----------------------------------------------------------------------------


async def test_lists_every_record_of_the_zone(world: World) -> None:
    listed = await world.provider.list_records(ZONE)
    assert data(listed) == data([*world.baseline, *SEED])
    assert all(record == canonical(record) for record in listed)


async def test_apply_creates_updates_and_deletes(world: World) -> None:
    www_old, www_new = (
        rec(f"www.{ZONE}", "A", "198.51.100.2"),
        rec(f"www.{ZONE}", "A", "192.0.2.80"),
    )
    shop = rec(f"shop.{ZONE}", "CNAME", "shops.example.net")
    new = rec(f"new.{ZONE}", "AAAA", "2001:db8::80")
    await world.provider.apply(
        ZONE, DnsChanges(create=(new,), update=((www_old, www_new),), delete=(shop,))
    )
    expected = data([*world.baseline, *SEED]) - {www_old.data, shop.data} | {www_new.data, new.data}
    assert data(world.stored()) == expected
    assert data(await world.provider.list_records(ZONE)) == expected


async def test_stewards_records_are_set_and_nothing_else_moves(world: World) -> None:
    before = world.stored()
    result = diff(REQUIRED, await world.provider.list_records(ZONE))
    assert [c.state for c in result.checks].count("present") == 1  # the DMARC record
    await world.provider.apply(ZONE, result.changes)
    after = world.stored()
    assert diff(REQUIRED, after).ok
    assert diff(REQUIRED, await world.provider.list_records(ZONE)).ok
    slots = managed_slots(REQUIRED)
    assert {r.data for r in after if not is_managed(r, slots)} == {
        r.data for r in before if not is_managed(r, slots)
    }
    assert data(USER_RECORDS) <= data(after)


async def test_a_long_dkim_key_and_odd_text_come_back_unchanged(world: World) -> None:
    dkim = next(r for r in REQUIRED if r.name.startswith("selector."))
    assert len(dkim.content.encode()) > 255
    odd = rec(f"odd.{ZONE}", "TXT", 'say "hi" \\ to ünïcode; and ; semicolons')
    # A text that itself begins with a quote is not read as quoted strings on the way back.
    quoted = rec(f"quoted.{ZONE}", "TXT", quote_txt('"hi" she said'))
    assert parse_txt(quoted.content) == '"hi" she said'
    await world.provider.apply(ZONE, DnsChanges(create=(dkim, odd, quoted)))
    listed = data(await world.provider.list_records(ZONE))
    assert {dkim.data, odd.data, quoted.data} <= listed


async def test_a_change_to_a_record_that_is_gone_is_a_conflict_and_changes_nothing(
    world: World,
) -> None:
    before = data(world.stored())
    gone = rec(f"gone.{ZONE}", "A", "192.0.2.9")
    with pytest.raises(DnsError) as caught:
        await world.provider.apply(
            ZONE, DnsChanges(create=(rec(f"n.{ZONE}", "A", "192.0.2.1"),), delete=(gone,))
        )
    assert caught.value.kind is DnsErrorKind.CONFLICT
    assert_one_sentence(caught.value)
    assert data(world.stored()) == before


async def test_a_zone_the_provider_does_not_have(world: World) -> None:
    before = data(world.stored())
    with pytest.raises(DnsError) as listing:
        await world.provider.list_records(MISSING)
    with pytest.raises(DnsError) as applying:
        await world.provider.apply(
            MISSING, diff(required_records(MISSING, ipv4="192.0.2.1"), []).changes
        )
    for caught in (listing, applying):
        assert caught.value.kind is DnsErrorKind.ZONE_NOT_FOUND
        assert MISSING in str(caught.value)
        assert_one_sentence(caught.value, *world.secrets)
    assert data(world.stored()) == before


async def test_wrong_credentials(world: World) -> None:
    before = data(world.stored())
    provider = world.wrong_credentials()
    with pytest.raises(DnsError) as listing:
        await provider.list_records(ZONE)
    with pytest.raises(DnsError) as applying:
        await provider.apply(ZONE, diff(REQUIRED, SEED).changes)
    for caught in (listing, applying):
        assert caught.value.kind is DnsErrorKind.UNAUTHORIZED
        assert_one_sentence(caught.value, *world.secrets)
    assert data(world.stored()) == before


async def test_credentials_that_may_only_read(world: World) -> None:
    before = data(world.stored())
    provider = world.read_only()
    assert data(await provider.list_records(ZONE)) == before
    with pytest.raises(DnsError) as caught:
        await provider.apply(ZONE, diff(REQUIRED, SEED).changes)
    assert caught.value.kind is DnsErrorKind.FORBIDDEN
    assert ZONE in str(caught.value)
    assert_one_sentence(caught.value, *world.secrets)
    assert data(world.stored()) == before


async def test_provider_down(world: World) -> None:
    before = data(world.stored())
    provider = world.down()
    with pytest.raises(DnsError) as listing:
        await provider.list_records(ZONE)
    with pytest.raises(DnsError) as applying:
        await provider.apply(ZONE, diff(REQUIRED, SEED).changes)
    for caught in (listing, applying):
        assert caught.value.kind is DnsErrorKind.UNAVAILABLE
        assert caught.value.retryable
        assert_one_sentence(caught.value, *world.secrets)
    assert data(world.stored()) == before


async def test_nothing_to_change_asks_nothing(world: World) -> None:
    await world.down().apply(ZONE, DnsChanges())
    assert data(world.stored()) == data([*world.baseline, *SEED])


# -- RFC 2136 on Knot -------------------------------------------------------------------------


async def test_knot_really_serves_what_steward_applied(
    rfc2136_world: World, knot: KnotServer
) -> None:
    rfc2136_world.seed(SEED)
    first = serial(knot, ZONE)
    await rfc2136_world.provider.apply(ZONE, diff(REQUIRED, SEED).changes)
    assert serial(knot, ZONE) == first + 1  # one UPDATE, one new serial
    assert query(knot, ZONE, "A") == ["203.0.113.7"]
    assert query(knot, f"cloud.{ZONE}", "AAAA") == ["2001:db8::7"]
    assert query(knot, ZONE, "MX") == [f"10 {ZONE}."]
    assert query(knot, ZONE, "TXT") == [
        '"google-site-verification=abc123"',
        '"v=spf1 a mx ip4:203.0.113.7 ip6:2001:db8::7 -all"',
    ]
    assert query(knot, ZONE, "CAA") == ['0 issue "letsencrypt.org"', '0 issue "sectigo.com"']
    assert query(knot, f"shop.{ZONE}", "CNAME") == ["shops.example.net."]
    (dkim,) = query(knot, f"selector._domainkey.{ZONE}", "TXT")
    strings = dkim.split('" "')
    assert len(strings) == 2
    assert "".join(s.strip('"') for s in strings) == f"v=DKIM1; k=rsa; p={KEY}"


def test_a_fresh_knot_answers_within_a_second_and_its_zones_are_separate() -> None:
    started = time.monotonic()
    with knot_server(["a.test", "b.test"]) as server:
        elapsed = time.monotonic() - started
        reset_zone(server, "a.test", [rec("www.a.test", "A", "192.0.2.1")])
        assert query(server, "www.a.test", "A") == ["192.0.2.1"]
        assert serial(server, "a.test") == 2
        assert serial(server, "b.test") == 1
    assert elapsed < 1.0


def test_without_knotd_the_fixture_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(knot_support, "KNOTD_SEARCH", ())
    with pytest.raises(RuntimeError, match="apt-get install --no-install-recommends knot"):
        knot_support.find_knotd()


async def test_a_name_server_that_never_answers_times_out(tmp_path: Path, knot: KnotServer) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        provider = Rfc2136Dns(f"127.0.0.1:{port}", knot.write_key(knot.key, tmp_path), timeout=0.3)
        started = time.monotonic()
        with pytest.raises(DnsError, match="did not answer in time") as caught:
            await provider.list_records(ZONE)
    assert caught.value.kind is DnsErrorKind.UNAVAILABLE
    assert time.monotonic() - started < 3


async def test_a_missing_key_file_is_one_sentence(tmp_path: Path, knot: KnotServer) -> None:
    provider = Rfc2136Dns(knot.address, tmp_path / "nowhere.key")
    with pytest.raises(DnsError, match="Cannot read the TSIG key file") as caught:
        await provider.list_records(ZONE)
    assert_one_sentence(caught.value)


@pytest.mark.parametrize("style", ["bind", "line", "knot", "nsupdate"])
async def test_every_key_file_spelling_opens_the_zone(
    style: str, tmp_path: Path, knot: KnotServer
) -> None:
    key = knot.key
    text = {
        "bind": key.bind_format(),
        "line": key.line_format(),
        "knot": f"# hmac-sha256:{key.name}:{key.secret}\nkey:\n  - id: {key.name}\n"
        f"    algorithm: hmac-sha256\n    secret: {key.secret}\n",
        "nsupdate": f"hmac-sha256:{key.name}:{key.secret}\n",
    }[style]
    path = tmp_path / "tsig.key"
    path.write_text(text)
    assert parse_tsig_key(text).name == "steward"
    assert f"ns1.{ZONE}" in {
        r.name for r in await Rfc2136Dns(knot.address, path).list_records(ZONE)
    }


def test_tsig_key_errors_never_show_the_secret() -> None:
    with pytest.raises(ValueError, match="unknown TSIG algorithm") as caught:
        parse_tsig_key('key "k" { algorithm hmac-rot13; secret "c2VjcmV0c2VjcmV0"; };')
    assert "c2VjcmV0" not in str(caught.value)
    with pytest.raises(ValueError, match="not base64"):
        parse_tsig_key("k:hmac-sha256:not base64!")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ns1.example.org", ("ns1.example.org", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        ("[2001:db8::1]:53", ("2001:db8::1", 53)),
        ("2001:db8::1", ("2001:db8::1", 53)),
    ],
)
def test_server_addresses(given: str, expected: tuple[str, int]) -> None:
    assert parse_server(given) == expected


# -- Cloudflare -------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeCloudflare]:
    with FakeCloudflare() as api:
        api.add_zone(ZONE)
        yield api


def cloudflare(fake: FakeCloudflare, **options: Any) -> CloudflareDns:
    options.setdefault("max_retries", 0)
    return CloudflareDns(fake.token, base_url=fake.base_url, timeout=5, **options)


async def test_cloudflare_lists_every_page(fake: FakeCloudflare) -> None:
    for i in range(1234):
        fake.add_record(
            ZONE, {"type": "A", "name": f"h{i}", "content": f"10.0.{i // 250}.{i % 250}", "ttl": 1}
        )
    listed = await cloudflare(fake).list_records(ZONE)
    assert len(listed) == 1234
    pages = [c.query.get("page", ["1"])[0] for c in fake.calls if c.path.endswith("/dns_records")]
    assert pages == ["1", "2", "3", "4"]


async def test_cloudflare_rate_limit_and_dropped_connection(fake: FakeCloudflare) -> None:
    fake.fail(429)
    with pytest.raises(DnsError, match="limiting requests") as limited:
        await cloudflare(fake).list_records(ZONE)
    assert limited.value.kind is DnsErrorKind.RATE_LIMITED
    fake.drop()
    with pytest.raises(DnsError, match="Cannot reach Cloudflare") as dropped:
        await cloudflare(fake).list_records(ZONE)
    assert dropped.value.kind is DnsErrorKind.UNAVAILABLE


async def test_cloudflare_on_a_closed_port_is_unavailable() -> None:
    provider = CloudflareDns(
        "t", base_url=f"http://127.0.0.1:{_closed_port()}/client/v4", max_retries=0
    )
    with pytest.raises(DnsError, match="Cannot reach Cloudflare") as caught:
        await provider.list_records(ZONE)
    assert_one_sentence(caught.value)


async def test_cloudflare_retries_a_passing_server_error(fake: FakeCloudflare) -> None:
    fake.fail(503)
    assert await cloudflare(fake, max_retries=1).list_records(ZONE) == []
    assert [call.status for call in fake.calls][:2] == [503, 200]


async def test_cloudflare_says_how_far_it_got_when_a_write_fails(fake: FakeCloudflare) -> None:
    fake.add_record(ZONE, {"type": "A", "name": "old", "content": "192.0.2.1", "ttl": 1})
    fake.fail(429, method="POST")
    changes = DnsChanges(
        create=(rec(f"a.{ZONE}", "A", "192.0.2.2"), rec(f"b.{ZONE}", "A", "192.0.2.3")),
        delete=(rec(f"old.{ZONE}", "A", "192.0.2.1"),),
    )
    with pytest.raises(DnsError) as caught:
        await cloudflare(fake).apply(ZONE, changes)
    assert str(caught.value) == (
        "Only 1 of 3 DNS changes were made: Cloudflare is limiting requests; try again in a minute."
    )
    assert [r["name"] for r in fake.records(ZONE)] == []  # the delete went through, no create


async def test_cloudflare_sends_caa_as_data_and_txt_quoted(fake: FakeCloudflare) -> None:
    dkim = next(r for r in REQUIRED if r.name.startswith("selector."))
    caa = next(r for r in REQUIRED if r.type == "CAA")
    await cloudflare(fake).apply(ZONE, DnsChanges(create=(dkim, caa)))
    posted = [call.body for call in fake.writes]
    assert posted[1] == {
        "name": ZONE,
        "type": "CAA",
        "ttl": 3600,
        "data": {"flags": 0, "tag": "issue", "value": "letsencrypt.org"},
    }
    assert posted[0] is not None
    assert posted[0]["content"] == quote_txt(dkim.content)
    assert posted[0]["content"].count('" "') == 1


async def test_the_sdk_calls_leave_the_event_loop_free(fake: FakeCloudflare) -> None:
    for i in range(600):
        fake.add_record(
            ZONE, {"type": "A", "name": f"h{i}", "content": f"10.1.{i // 250}.{i % 250}", "ttl": 1}
        )
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    await cloudflare(fake).list_records(ZONE)
    ticker.cancel()
    assert ticks > 3


# -- imports ----------------------------------------------------------------------------------


def test_building_nothing_imports_no_dns_sdk() -> None:
    code = (
        "import sys\n"
        "import providers.dns.cloudflare, providers.dns.rfc2136, providers.dns.memory\n"
        "loaded = [m for m in ('cloudflare', 'dns', 'httpx') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "from providers.dns.cloudflare import CloudflareDns\n"
        "CloudflareDns('t', base_url='http://127.0.0.1:9/client/v4')\n"
        "assert 'cloudflare' in sys.modules and 'dns' not in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
