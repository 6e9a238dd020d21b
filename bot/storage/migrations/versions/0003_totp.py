"""totp: admins' encrypted TOTP secrets and their failed codes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "totp_secrets",
        sa.Column("user_key", sa.String(length=300), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("user_key", name=op.f("pk_totp_secrets")),
    )
    op.create_table(
        "totp_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_key", sa.String(length=300), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_totp_failures")),
    )
    op.create_index(
        "ix_totp_failures_user_key_at", "totp_failures", ["user_key", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_totp_failures_user_key_at", table_name="totp_failures")
    op.drop_table("totp_failures")
    op.drop_table("totp_secrets")
