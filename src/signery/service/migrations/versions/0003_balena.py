"""balenaSign compatibility: balena's key ids as aliases of signery keys, and the stored PK/KEK/db ``.auth`` files.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
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
        "balena_aliases",
        sa.Column("kind", sa.String(8), primary_key=True),  # gpg, x509, rsa
        sa.Column("alias", sa.String(128), primary_key=True),  # gpg: lower-case fingerprint or long key id
        sa.Column("key_name", sa.String(64), sa.ForeignKey("keys.name", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),  # x509: pk, kek, db, kmod (from /bootstrap)
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_balena_aliases_key_name", "balena_aliases", ["key_name"])
    op.create_table(
        "balena_auth",
        sa.Column("variable", sa.String(8), primary_key=True),  # PK, KEK, db
        sa.Column("list_name", sa.String(64), primary_key=True),  # SHA3-256 of the sorted ids joined by NUL
        sa.Column("cert_ids", sa.Text, nullable=False),  # JSON list, sorted
        sa.Column("signer", sa.String(128), nullable=False),  # the certificate id that signed it
        sa.Column("esl", sa.LargeBinary, nullable=False),
        sa.Column("auth", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("balena_auth")
    op.drop_index("ix_balena_aliases_key_name", table_name="balena_aliases")
    op.drop_table("balena_aliases")
