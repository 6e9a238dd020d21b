"""The bucket that holds the encrypted backups (Backblaze B2): its size, its cost, how safe the
bot's key is, and setting up a bucket with a key that cannot destroy it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from values import value

# B2's published storage price, USD per GB (10^9 bytes) and month: $6/TB since 2023-10-03.
B2_PRICE_PER_GB_MONTH = Decimal("0.006")
GB = 1000**3

# What restic needs on B2, and nothing more: no deleteFiles (a removal only hides a file, and
# the bucket's lifecycle rule deletes hidden versions after the kept days), no key or bucket
# administration, no other bucket.
RESTIC_CAPABILITIES = ("listBuckets", "listFiles", "readFiles", "writeFiles")

_BUCKET_NAME = re.compile(r"^[A-Za-z0-9-]{6,63}$")


class StorageError(Exception):
    """A storage call failed; ``str()`` is one short sentence that is safe to show."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


@value
class BucketInfo:
    name: str
    file_count: int  # files present now (the newest version is not hidden)
    version_count: int  # every stored version, hidden and old ones too
    total_bytes: int  # what is billed: all stored versions
    monthly_cost: Decimal  # total_bytes at the price per GB-month
    currency: str = "USD"


@value
class KeyCheck:
    key_id: str
    capabilities: tuple[str, ...]
    bucket_name: str | None  # the bucket the key is restricted to, None when it is not
    keep_hidden_days: int | None  # the bucket's daysFromHidingToDeleting for all files
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.warnings


@value
class NewBucketKey:
    """The result of ``setup_bucket``: the key is shown once and never stored by the bot."""

    bucket_name: str
    keep_days: int
    key_id: str
    key: str = field(repr=False)
    capabilities: tuple[str, ...] = RESTIC_CAPABILITIES


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class BackupStorage(Protocol):
        async def bucket_info(self) -> BucketInfo: ...

        async def check_key(self) -> KeyCheck:
            """What the configured key may do, with a warning for each risk."""
            ...

        async def setup_bucket(self, name: str, keep_days: int) -> NewBucketKey:
            """Create a private bucket whose hidden versions are kept ``keep_days`` days, and a key
            restricted to it that cannot delete files. Needs a key that may create both."""
            ...


def check_setup_arguments(name: str, keep_days: int) -> None:
    if not _BUCKET_NAME.match(name) or name.lower().startswith("b2-"):
        raise StorageError(
            "A bucket name has 6 to 63 letters, digits and hyphens, and does not start with b2-.",
            "invalid_input",
        )
    if not 1 <= keep_days <= 3650:
        raise StorageError("Keep hidden versions for 1 to 3650 days.", "invalid_input")


def monthly_cost(total_bytes: int, price_per_gb_month: Decimal) -> Decimal:
    return Decimal(total_bytes) / GB * price_per_gb_month


def keep_hidden_days(rules: Iterable[Mapping[str, object]]) -> int | None:
    """The days hidden versions are kept by a lifecycle rule that covers every file."""
    for rule in rules:
        days = rule.get("daysFromHidingToDeleting")
        if rule.get("fileNamePrefix", "") == "" and isinstance(days, int) and days >= 1:
            return days
    return None


def key_warnings(
    bucket: str, capabilities: Iterable[str], restricted_to: str | None, keep_days: int | None
) -> tuple[str, ...]:
    """The risks of a key, one sentence each; both adapters judge keys with this."""
    caps = set(capabilities)
    warnings = []
    if "deleteFiles" in caps:
        warnings.append("The key can delete files: whoever steals it can destroy the backups.")
    if "listAllBucketNames" in caps or (restricted_to is None and "listBuckets" in caps):
        warnings.append("The key can list every bucket of the account.")
    if restricted_to is None:
        warnings.append(f"The key is not restricted to bucket {bucket}.")
    elif restricted_to != bucket:
        warnings.append(f"The key is restricted to bucket {restricted_to}, not {bucket}.")
    if {"writeKeys", "writeBuckets"} & caps:
        warnings.append("The key can change keys or bucket settings, lifecycle rules included.")
    if keep_days is None:
        warnings.append(
            f"Bucket {bucket} has no lifecycle rule keeping hidden versions for a number of "
            "days (daysFromHidingToDeleting)."
        )
    return tuple(warnings)
