"""The tables, as SQLAlchemy Core ``Table`` objects on one ``MetaData``.

Core rather than the ORM: ``sqlalchemy.orm`` costs several megabytes and import time, and the
stores need nothing from it. Alembic migrations in ``migrations/`` create these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite keeps no zone), always handed out timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData(naming_convention=NAMING)

confirmations = Table(
    "confirmations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("nonce_hash", String(64), nullable=False, unique=True),
    Column("command", String(32), nullable=False),
    Column("args", Text, nullable=False),  # JSON list of the original tokens
    Column("requester_transport", String(16), nullable=False),
    Column("requester_id", String(255), nullable=False),
    Column("requester_name", String(255), nullable=False),
    Column("chat_transport", String(16), nullable=False),
    Column("chat_id", String(255), nullable=False),
    Column("prompt_message_id", String(255), nullable=True),
    Column("preview", Text, nullable=False),
    Column("two_person", Boolean, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("approver_transport", String(16), nullable=True),
    Column("approver_id", String(255), nullable=True),
    Column("approver_name", String(255), nullable=True),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("args", Text, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("progress", Text, nullable=False, default=""),
    Column("log_tail", Text, nullable=False, default=""),
    Column("requester_transport", String(16), nullable=False),
    Column("requester_id", String(255), nullable=False),
    Column("requester_name", String(255), nullable=False),
    Column("chat_transport", String(16), nullable=False),
    Column("chat_id", String(255), nullable=False),
    Column("message_id", String(255), nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("result", Text, nullable=False, default=""),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("event", String(32), nullable=False),
    Column("transport", String(16), nullable=False),
    Column("actor_id", String(255), nullable=False),
    Column("actor_name", String(255), nullable=False),
    Column("chat_id", String(255), nullable=True),
    Column("command", String(64), nullable=False),
    Column("args", Text, nullable=False),
    Column("approver_transport", String(16), nullable=True),
    Column("approver_id", String(255), nullable=True),
    Column("approver_name", String(255), nullable=True),
    Column("result", Text, nullable=False),
    Column("duration_ms", Integer, nullable=True),
    Index("ix_audit_log_at", "at"),
)

# Small bits of state: the Matrix sync token, when the bot last stopped, and the like.
kv = Table(
    "kv",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


# Host readings (disk and memory percent, load) every alert check: the "full in ~N days"
# estimate and the weekly chart read them; older than a year they are purged.
samples = Table(
    "samples",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("metric", String(128), nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_samples_metric_at", "metric", "at"),
)


# Admins' TOTP secrets, encrypted with the key from STEWARD_TOTP_KEY_FILE (never stored here).
# ``last_step`` is the newest time step accepted: a code is good once.
totp_secrets = Table(
    "totp_secrets",
    metadata,
    Column("user_key", String(300), primary_key=True),  # Actor.key: telegram:1001
    Column("secret", Text, nullable=False),
    Column("last_step", Integer, nullable=False),
    Column("enrolled_at", UTCDateTime(), nullable=False),
    Column("locked_until", UTCDateTime(), nullable=True),
)

# Wrong or replayed codes: five within 15 minutes lock the user out for an hour.
totp_failures = Table(
    "totp_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_key", String(300), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_totp_failures_user_key_at", "user_key", "at"),
)
