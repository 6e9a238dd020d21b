"""The Backblaze B2 adapter of BackupStorage, on ``b2sdk`` (its stable ``v2`` interface).

``b2sdk`` is imported only when this adapter is built. Its calls are synchronous and run in
worker threads. Retry policy: b2sdk's own (it retries what B2 marks as transient: timeouts,
connection resets, 429 and 503, with backoff) and it re-authorizes an expired token by itself.
Every other error becomes one StorageError sentence.

B2 has no usage call: the size of a bucket is the sum of a listing of all file versions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

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

_T = TypeVar("_T")


class B2BackupStorage:
    """``raw_api`` replaces b2sdk's HTTP layer; tests pass b2sdk's ``RawSimulator``."""

    def __init__(
        self,
        key_id: str,
        key: str,
        bucket: str,
        *,
        price_per_gb_month: Decimal = B2_PRICE_PER_GB_MONTH,
        raw_api: object | None = None,
    ) -> None:
        from b2sdk.v2 import (  # type: ignore[import-untyped]  # noqa: PLC0415 - lazy SDK
            B2Api,
            B2HttpApiConfig,
            InMemoryAccountInfo,
            InMemoryCache,
        )

        config = (
            B2HttpApiConfig()
            if raw_api is None
            # b2sdk builds its raw API from a private config hook; b2sdk is pinned for it.
            else B2HttpApiConfig(_raw_api_class=lambda _http: raw_api)
        )
        self._api: Any = B2Api(InMemoryAccountInfo(), cache=InMemoryCache(), api_config=config)
        self._key_id = key_id
        self._key = key
        self._bucket = bucket
        self._price = price_per_gb_month
        self._authorized = False

    async def bucket_info(self) -> BucketInfo:
        return await self._run(self._bucket_info)

    async def check_key(self) -> KeyCheck:
        return await self._run(self._check_key)

    async def setup_bucket(self, name: str, keep_days: int) -> NewBucketKey:
        check_setup_arguments(name, keep_days)
        return await self._run(lambda: self._setup_bucket(name, keep_days))

    # -- in the worker thread -------------------------------------------------------------------

    def _bucket_info(self) -> BucketInfo:
        bucket = self._find_bucket()
        total = versions = files = 0
        seen: set[str] = set()
        # Versions come by name, newest first: the first one of a name says if it is present.
        for version, _folder in bucket.ls(latest_only=False, recursive=True):
            if version.file_name not in seen:
                seen.add(version.file_name)
                files += version.action == "upload"
            if version.action == "upload":
                versions += 1
                total += int(version.size or 0)
        return BucketInfo(
            name=self._bucket,
            file_count=files,
            version_count=versions,
            total_bytes=total,
            monthly_cost=monthly_cost(total, self._price),
        )

    def _check_key(self) -> KeyCheck:
        self._authorize()
        allowed = self._api.account_info.get_allowed()
        capabilities = tuple(allowed.get("capabilities") or ())
        restricted_to = allowed.get("bucketName") or (
            allowed.get("bucketId") and f"id {allowed['bucketId']}"
        )
        days = keep_hidden_days(self._find_bucket().lifecycle_rules)
        return KeyCheck(
            key_id=self._key_id,
            capabilities=capabilities,
            bucket_name=restricted_to or None,
            keep_hidden_days=days,
            warnings=key_warnings(self._bucket, capabilities, restricted_to or None, days),
        )

    def _setup_bucket(self, name: str, keep_days: int) -> NewBucketKey:
        self._authorize()
        rule = {
            "fileNamePrefix": "",
            "daysFromHidingToDeleting": keep_days,
            "daysFromUploadingToHiding": None,
        }
        bucket = self._api.create_bucket(name, "allPrivate", lifecycle_rules=[rule])
        try:
            key = self._api.create_key(
                list(RESTIC_CAPABILITIES), f"steward-{name}"[:100], bucket_id=bucket.id_
            )
        except Exception:
            # Leave nothing half made: an empty bucket without a key is of no use.
            self._api.delete_bucket(bucket)
            raise
        return NewBucketKey(name, keep_days, key.id_, key.application_key)

    def _find_bucket(self) -> Any:
        self._authorize()
        found = self._api.list_buckets(bucket_name=self._bucket)
        if not found:
            raise StorageError(
                f"There is no bucket {self._bucket} in this B2 account.", "not_found"
            )
        return found[0]

    def _authorize(self) -> None:
        if not self._authorized:
            self._api.authorize_account("production", self._key_id, self._key)
            self._authorized = True

    # -- the one I/O seam -------------------------------------------------------------------------

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await asyncio.to_thread(self._translated, call)

    def _translated(self, call: Callable[[], _T]) -> _T:
        from b2sdk.v2 import exception as b2  # noqa: PLC0415

        try:
            return call()
        except b2.B2Error as exc:
            raise _storage_error(b2, exc, self._bucket) from None


def _storage_error(b2: Any, exc: Exception, bucket: str) -> StorageError:
    """One sentence for a b2sdk error; the most specific class is checked first."""
    table: list[tuple[Any, str, str]] = [
        (
            b2.InvalidAuthToken,
            "B2 refused the key: it is unknown, expired or wrong.",
            "unauthorized",
        ),
        (
            b2.RestrictedBucket,
            f"The B2 key is restricted to another bucket than {bucket}.",
            "unauthorized",
        ),
        (b2.Unauthorized, "The B2 key may not do this.", "unauthorized"),
        (
            b2.DuplicateBucketName,
            "That bucket name is taken: B2 bucket names are unique worldwide.",
            "duplicate_bucket_name",
        ),
        (b2.NonExistentBucket, f"There is no bucket {bucket} in this B2 account.", "not_found"),
        (
            b2.TooManyRequests,
            "B2 is limiting requests; try again in a few minutes.",
            "rate_limit_exceeded",
        ),
        (b2.CapExceeded, "The B2 account has reached a cap set on it.", "cap_exceeded"),
        (b2.B2ConnectionError, "Cannot reach Backblaze B2.", "unreachable"),
        (b2.B2RequestTimeout, "Backblaze B2 did not answer in time.", "timeout"),
        (
            b2.ServiceError,
            "Backblaze B2 has a problem right now; try again later.",
            "service_error",
        ),
    ]
    for kind, sentence, code in table:
        if isinstance(exc, kind):
            return StorageError(sentence, code)
    return StorageError("Backblaze B2 refused the request.", "error")
