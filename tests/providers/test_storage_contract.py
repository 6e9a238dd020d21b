"""One BackupStorage contract, run against the B2 adapter (b2sdk on its RawSimulator) and the
in-memory B2 account of demo mode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from b2sdk.v2 import (  # type: ignore[import-untyped]
    B2Api,
    B2HttpApiConfig,
    InMemoryAccountInfo,
    InMemoryCache,
    RawSimulator,
)
from b2sdk.v2 import exception as b2_errors

from providers.storage.b2 import B2BackupStorage
from providers.storage.base import B2_PRICE_PER_GB_MONTH, RESTIC_CAPABILITIES, StorageError
from providers.storage.memory import (
    ALL_CAPABILITIES,
    MemoryAccount,
    MemoryBackupStorage,
    MemoryBucket,
)

if TYPE_CHECKING:
    from providers.storage.base import BackupStorage

pytestmark = pytest.mark.timeout(30)

BUCKET = "steward-backups"
# a/1 twice (100 then 50 bytes), b uploaded then hidden (7), c (1000): two files are present,
# four versions are stored and billed.
FILES = (("a/1", 100), ("a/1", 50), ("b", 7), ("c", 1000))
HIDDEN = ("b",)
TOTAL = 1157


@dataclass
class Account:
    """One B2 account seen through both implementations."""

    kind: str
    storage: Callable[..., BackupStorage]  # (key_id, key, bucket, **options)
    add_bucket: Callable[[str, int | None], None]  # name, daysFromHidingToDeleting
    add_key: Callable[[tuple[str, ...], str | None], tuple[str, str]]  # caps, bucket
    bucket_type: Callable[[str], str | None]
    can_delete: Callable[[str, str, str], bool]  # key_id, key, bucket
    go_down: Callable[[], None]
    master: tuple[str, str]


class Unreachable:
    """The simulator behind a switch: when down, every call fails as a dropped connection."""

    def __init__(self, simulator: Any) -> None:
        self.simulator = simulator
        self.down = False

    def __getattr__(self, name: str) -> Any:
        if self.down:
            raise b2_errors.B2ConnectionError("connection refused")
        return getattr(self.simulator, name)


def _api(raw: object) -> Any:
    config = B2HttpApiConfig(_raw_api_class=lambda _http: raw)
    return B2Api(InMemoryAccountInfo(), cache=InMemoryCache(), api_config=config)


def _b2_account() -> Account:
    simulator = RawSimulator()
    raw = Unreachable(simulator)
    master = simulator.create_account()
    admin = _api(raw)
    admin.authorize_account("production", *master)

    def add_bucket(name: str, days: int | None) -> None:
        rules = [] if days is None else [{"fileNamePrefix": "", "daysFromHidingToDeleting": days}]
        admin.create_bucket(name, "allPrivate", lifecycle_rules=rules)

    def add_key(caps: tuple[str, ...], bucket: str | None) -> tuple[str, str]:
        bucket_id = None if bucket is None else admin.get_bucket_by_name(bucket).id_
        key = admin.create_key(list(caps), "test-key", bucket_id=bucket_id)
        return key.id_, key.application_key

    def bucket_type(name: str) -> str | None:
        found = admin.list_buckets(bucket_name=name)
        return found[0].type_ if found else None

    def can_delete(key_id: str, key: str, bucket: str) -> bool:
        admin.get_bucket_by_name(bucket).upload_bytes(b"victim", "victim")
        user = _api(raw)
        user.authorize_account("production", key_id, key)
        version = next(iter(admin.get_bucket_by_name(bucket).list_file_versions("victim")))
        try:
            user.delete_file_version(version.id_, "victim")
        except b2_errors.Unauthorized:
            return False
        return True

    add_bucket(BUCKET, 30)
    bucket = admin.get_bucket_by_name(BUCKET)
    for name, size in FILES:
        bucket.upload_bytes(b"x" * size, name)
    for name in HIDDEN:
        bucket.hide_file(name)

    def storage(key_id: str, key: str, bucket: str, **options: Any) -> BackupStorage:
        return B2BackupStorage(key_id, key, bucket, raw_api=raw, **options)

    def go_down() -> None:
        raw.down = True

    return Account("b2", storage, add_bucket, add_key, bucket_type, can_delete, go_down, master)


def _memory_account() -> Account:
    account = MemoryAccount()
    master_key = account.add_key(ALL_CAPABILITIES)

    def add_bucket(name: str, days: int | None) -> None:
        rules: list[dict[str, object]] = (
            [] if days is None else [{"fileNamePrefix": "", "daysFromHidingToDeleting": days}]
        )
        account.buckets[name] = MemoryBucket(name, "allPrivate", rules)

    def add_key(caps: tuple[str, ...], bucket: str | None) -> tuple[str, str]:
        made = account.add_key(caps, bucket)
        return made.key_id, made.secret

    def bucket_type(name: str) -> str | None:
        found = account.buckets.get(name)
        return found.bucket_type if found else None

    def can_delete(key_id: str, key: str, bucket: str) -> bool:
        account.upload(bucket, "victim", 6)
        try:
            account.delete_file(key_id, bucket, "victim")
        except StorageError:
            return False
        return True

    add_bucket(BUCKET, 30)
    for name, size in FILES:
        account.upload(BUCKET, name, size)
    for name in HIDDEN:
        account.hide(BUCKET, name)

    def storage(key_id: str, key: str, bucket: str, **options: Any) -> BackupStorage:
        return MemoryBackupStorage(account, key_id, key, bucket, **options)

    def go_down() -> None:
        account.down = True

    master = (master_key.key_id, master_key.secret)
    return Account("memory", storage, add_bucket, add_key, bucket_type, can_delete, go_down, master)


@pytest.fixture(params=["b2", "memory"])
def b2(request: pytest.FixtureRequest) -> Account:
    return _b2_account() if request.param == "b2" else _memory_account()


def restic_key(account: Account, bucket: str = BUCKET) -> tuple[str, str]:
    return account.add_key(RESTIC_CAPABILITIES, bucket)


# --- bucket info ---------------------------------------------------------------------------------


async def test_bucket_info_sums_every_stored_version(b2: Account) -> None:
    info = await b2.storage(*restic_key(b2), BUCKET).bucket_info()
    assert (info.name, info.file_count, info.version_count) == (BUCKET, 2, 4)
    assert info.total_bytes == TOTAL
    assert info.monthly_cost == Decimal(TOTAL) / 10**9 * B2_PRICE_PER_GB_MONTH
    assert info.currency == "USD"


async def test_the_price_per_gb_month_is_configurable(b2: Account) -> None:
    price = Decimal("0.01")
    info = await b2.storage(*restic_key(b2), BUCKET, price_per_gb_month=price).bucket_info()
    assert info.monthly_cost == Decimal("1.157E-8")  # 1157 bytes at 1 cent per GB


async def test_an_empty_bucket_costs_nothing(b2: Account) -> None:
    b2.add_bucket("steward-empty", 7)
    info = await b2.storage(*restic_key(b2, "steward-empty"), "steward-empty").bucket_info()
    assert (info.file_count, info.version_count, info.total_bytes) == (0, 0, 0)
    assert info.monthly_cost == 0


# --- key check -----------------------------------------------------------------------------------


async def test_an_all_powerful_key_gets_every_warning(b2: Account) -> None:
    check = await b2.storage(*b2.master, BUCKET).check_key()
    assert not check.ok
    assert check.bucket_name is None
    assert "deleteFiles" in check.capabilities
    assert check.keep_hidden_days == 30
    assert check.warnings == (
        "The key can delete files: whoever steals it can destroy the backups.",
        "The key can list every bucket of the account.",
        f"The key is not restricted to bucket {BUCKET}.",
        "The key can change keys or bucket settings, lifecycle rules included.",
    )


async def test_a_restricted_key_on_a_kept_bucket_is_fine(b2: Account) -> None:
    key_id, key = restic_key(b2)
    check = await b2.storage(key_id, key, BUCKET).check_key()
    assert check.ok
    assert check.warnings == ()
    assert (check.key_id, check.bucket_name, check.keep_hidden_days) == (key_id, BUCKET, 30)
    assert set(check.capabilities) == set(RESTIC_CAPABILITIES)


async def test_a_bucket_without_a_lifecycle_rule_is_warned_about(b2: Account) -> None:
    b2.add_bucket("steward-nolife", None)
    check = await b2.storage(*restic_key(b2, "steward-nolife"), "steward-nolife").check_key()
    assert check.keep_hidden_days is None
    assert check.warnings == (
        "Bucket steward-nolife has no lifecycle rule keeping hidden versions for a number of "
        "days (daysFromHidingToDeleting).",
    )


async def test_a_key_that_can_delete_is_warned_about_even_when_restricted(b2: Account) -> None:
    key = b2.add_key((*RESTIC_CAPABILITIES, "deleteFiles"), BUCKET)
    check = await b2.storage(*key, BUCKET).check_key()
    assert check.warnings == (
        "The key can delete files: whoever steals it can destroy the backups.",
    )


# --- setting a bucket up -------------------------------------------------------------------------


async def test_setup_makes_a_private_kept_bucket_and_a_key_that_cannot_delete(b2: Account) -> None:
    made = await b2.storage(*b2.master, BUCKET).setup_bucket("steward-new", 14)
    assert (made.bucket_name, made.keep_days) == ("steward-new", 14)
    assert made.key not in repr(made)
    assert b2.bucket_type("steward-new") == "allPrivate"
    check = await b2.storage(made.key_id, made.key, "steward-new").check_key()
    assert check.warnings == ()
    assert check.keep_hidden_days == 14
    assert check.bucket_name == "steward-new"
    assert "deleteFiles" not in check.capabilities
    assert not b2.can_delete(made.key_id, made.key, "steward-new")
    assert b2.can_delete(*b2.master, "steward-new")  # the probe itself can tell


async def test_a_restricted_key_cannot_set_up_a_bucket(b2: Account) -> None:
    with pytest.raises(StorageError, match=r"^The B2 key may not do this\.$"):
        await b2.storage(*restic_key(b2), BUCKET).setup_bucket("steward-other", 14)
    assert b2.bucket_type("steward-other") is None


async def test_a_taken_name_and_bad_arguments_are_refused(b2: Account) -> None:
    storage = b2.storage(*b2.master, BUCKET)
    with pytest.raises(StorageError, match=r"bucket name .*taken") as caught:
        await storage.setup_bucket(BUCKET, 14)
    assert caught.value.code == "duplicate_bucket_name"
    for name, days in (("b2-steward", 14), ("short", 14), ("steward_x", 14), ("steward-y", 0)):
        with pytest.raises(StorageError) as bad:
            await storage.setup_bucket(name, days)
        assert bad.value.code == "invalid_input"
        assert b2.bucket_type(name) is None


# --- failures ------------------------------------------------------------------------------------


async def test_a_wrong_secret_is_refused(b2: Account) -> None:
    key_id, _secret = restic_key(b2)
    storage = b2.storage(key_id, "not-the-key", BUCKET)
    with pytest.raises(StorageError, match=r"^B2 refused the key: it is unknown, expired or wrong"):
        await storage.bucket_info()


async def test_a_key_of_another_bucket_is_refused(b2: Account) -> None:
    b2.add_bucket("steward-elsewhere", 7)
    storage = b2.storage(*restic_key(b2, "steward-elsewhere"), BUCKET)
    with pytest.raises(StorageError, match=f"restricted to another bucket than {BUCKET}"):
        await storage.bucket_info()


async def test_an_unknown_bucket_is_named(b2: Account) -> None:
    with pytest.raises(StorageError, match=r"^There is no bucket steward-nosuch in this B2"):
        await b2.storage(*b2.master, "steward-nosuch").check_key()


async def test_unreachable_b2_is_one_sentence(b2: Account) -> None:
    storage = b2.storage(*restic_key(b2), BUCKET)
    b2.go_down()
    for call in (storage.bucket_info, storage.check_key):
        with pytest.raises(StorageError, match=r"^Cannot reach Backblaze B2\.$"):
            await call()


def test_importing_the_adapter_does_not_import_b2sdk() -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    code = "import sys, providers.storage.b2; print('b2sdk' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=root, capture_output=True, text=True,
        timeout=20,
    )  # fmt: skip
    assert out.stdout.strip() == "False", out.stderr
