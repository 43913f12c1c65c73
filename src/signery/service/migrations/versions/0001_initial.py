"""Initial schema: keys, key versions, API keys, the audit chain and its head.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("min_sign_version", sa.Integer, nullable=False),
        sa.Column("min_verify_version", sa.Integer, nullable=False),
        sa.Column("deletion_allowed", sa.Boolean, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
    )
    op.create_table(
        "key_versions",
        sa.Column("name", sa.String(64), sa.ForeignKey("keys.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("public_key_pem", sa.Text, nullable=False),
        sa.Column("certificate_pem", sa.Text, nullable=True),
        sa.Column("openpgp_certificate", sa.Text, nullable=True),
        sa.Column("openpgp_created", sa.Integer, nullable=True),
        sa.Column("wrapped_data_key", sa.LargeBinary, nullable=False),
        sa.Column("encrypted_private_key", sa.LargeBinary, nullable=False),
        sa.Column("master_key_id", sa.String(16), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("expires_at", sa.String(40), nullable=True),
        sa.Column("revoked_at", sa.String(40), nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("key_name", sa.String(64), nullable=True),
        sa.Column("key_version", sa.Integer, nullable=True),
        sa.Column("digest", sa.String(160), nullable=True),
        sa.Column("result", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])


def downgrade() -> None:
    for table in ("audit_head", "audit_log", "api_keys", "key_versions", "keys"):
        op.drop_table(table)
