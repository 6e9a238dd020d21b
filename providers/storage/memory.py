"""An in-memory B2 account with failure injection, for demo mode and handler tests.

Buckets hold file versions; keys have capabilities and may be restricted to one bucket, and
every operation checks them as B2 does.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from providers.storage.base import (
    B2_PRICE_PER_GB_MONTH,
    RESTIC_CAPABILITIES,
    BucketInfo,
    KeyCheck,
    NewBucketKey,
    StorageError,
    check_setup_arguments,
    keep_hidden_days,
    key_warnings,
    monthly_cost,
)
from values import value

ALL_CAPABILITIES = (
    "listKeys", "writeKeys", "deleteKeys", "listBuckets", "listAllBucketNames", "readBuckets",
    "writeBuckets", "deleteBuckets", "listFiles", "readFiles", "shareFiles", "writeFiles",
    "deleteFiles",
)  # fmt: skip


@dataclass
class MemoryBucket:
    name: str
    bucket_type: str = "allPrivate"
    lifecycle_rules: list[dict[str, object]] = field(default_factory=list)
    versions: list[tuple[str, int, bool]] = field(default_factory=list)  # name, size, hidden


@value
class MemoryKey:
    key_id: str
    secret: str = field(repr=False)
    capabilities: tuple[str, ...]
    bucket: str | None


@dataclass
class MemoryAccount:
    """What B2 holds; ``down`` makes every call fail as if B2 were unreachable."""

    buckets: dict[str, MemoryBucket] = field(default_factory=dict)
    keys: dict[str, MemoryKey] = field(default_factory=dict)
    down: bool = False
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def add_key(self, capabilities: tuple[str, ...], bucket: str | None = None) -> MemoryKey:
        key = MemoryKey(f"k{next(self._ids):04d}", secrets.token_hex(16), capabilities, bucket)
        self.keys[key.key_id] = key
        return key

    def upload(self, bucket: str, name: str, size: int) -> None:
        self.buckets[bucket].versions.append((name, size, False))

    def hide(self, bucket: str, name: str) -> None:
        self.buckets[bucket].versions.append((name, 0, True))

    def delete_file(self, key_id: str, bucket: str, name: str) -> None:
        """Delete every version of a file, as the key ``key_id`` would."""
        self.check_allowed(self.keys[key_id], "deleteFiles", bucket)
        target = self.buckets[bucket]
        target.versions = [v for v in target.versions if v[0] != name]

    def check_allowed(self, key: MemoryKey, capability: str, bucket: str | None = None) -> None:
        if capability not in key.capabilities:
            raise StorageError("The B2 key may not do this.", "unauthorized")
        if key.bucket is not None and bucket is not None and key.bucket != bucket:
            raise StorageError(
                f"The B2 key is restricted to another bucket than {bucket}.", "unauthorized"
            )


@dataclass
class MemoryBackupStorage:
    """The BackupStorage of one key on a MemoryAccount."""

    account: MemoryAccount
    key_id: str
    key: str = field(repr=False)
    bucket: str
    price_per_gb_month: Decimal = B2_PRICE_PER_GB_MONTH

    async def bucket_info(self) -> BucketInfo:
        key = self._authorized()
        self.account.check_allowed(key, "listFiles", self.bucket)
        found = self._bucket()
        newest: dict[str, bool] = {}
        for name, _size, hidden in found.versions:
            newest[name] = hidden
        total = sum(size for _name, size, hidden in found.versions if not hidden)
        return BucketInfo(
            name=self.bucket,
            file_count=sum(1 for hidden in newest.values() if not hidden),
            version_count=sum(1 for version in found.versions if not version[2]),
            total_bytes=total,
            monthly_cost=monthly_cost(total, self.price_per_gb_month),
        )

    async def check_key(self) -> KeyCheck:
        key = self._authorized()
        self.account.check_allowed(key, "listBuckets", self.bucket)
        days = keep_hidden_days(self._bucket().lifecycle_rules)
        return KeyCheck(
            key_id=key.key_id,
            capabilities=key.capabilities,
            bucket_name=key.bucket,
            keep_hidden_days=days,
            warnings=key_warnings(self.bucket, key.capabilities, key.bucket, days),
        )

    async def setup_bucket(self, name: str, keep_days: int) -> NewBucketKey:
        check_setup_arguments(name, keep_days)
        key = self._authorized()
        for capability in ("writeBuckets", "writeKeys"):
            self.account.check_allowed(key, capability)
        if name in self.account.buckets:
            raise StorageError(f"The bucket name {name} is taken.", "duplicate_bucket_name")
        rule: dict[str, object] = {
            "fileNamePrefix": "",
            "daysFromHidingToDeleting": keep_days,
            "daysFromUploadingToHiding": None,
        }
        self.account.buckets[name] = MemoryBucket(name, "allPrivate", [rule])
        made = self.account.add_key(RESTIC_CAPABILITIES, bucket=name)
        return NewBucketKey(name, keep_days, made.key_id, made.secret)

    def _authorized(self) -> MemoryKey:
        if self.account.down:
            raise StorageError("Cannot reach Backblaze B2.", "unreachable")
        key = self.account.keys.get(self.key_id)
        if key is None or key.secret != self.key:
            raise StorageError(
                "B2 refused the key: it is unknown, expired or wrong.", "unauthorized"
            )
        return key

    def _bucket(self) -> MemoryBucket:
        found = self.account.buckets.get(self.bucket)
        if found is None:
            raise StorageError(f"There is no bucket {self.bucket} in this B2 account.", "not_found")
        return found


def demo_storage(bucket: str = "steward-backups") -> MemoryBackupStorage:
    account = MemoryAccount()
    account.buckets[bucket] = MemoryBucket(
        bucket,
        lifecycle_rules=[{"fileNamePrefix": "", "daysFromHidingToDeleting": 30}],
    )
    for n in range(40):
        account.upload(bucket, f"data/{n:02x}/pack{n}", 48 * 1024**2)
    key = account.add_key(RESTIC_CAPABILITIES, bucket=bucket)
    return MemoryBackupStorage(account, key.key_id, key.secret, bucket)
