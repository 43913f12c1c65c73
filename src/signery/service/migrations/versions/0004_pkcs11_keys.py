"""Keys held in a PKCS#11 token: a key's storage, and a version's token object in place of its sealed private key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("storage", sa.String(16), nullable=False, server_default="sealed"))
    with op.batch_alter_table("key_versions") as batch:
        batch.add_column(sa.Column("token_object", sa.Text, nullable=True))
        batch.alter_column("wrapped_data_key", existing_type=sa.LargeBinary, nullable=True)
        batch.alter_column("encrypted_private_key", existing_type=sa.LargeBinary, nullable=True)
        batch.alter_column("master_key_id", existing_type=sa.String(16), nullable=True)


def downgrade() -> None:
    # Only a database without token-backed versions goes back: 0003 has nowhere to keep their references.
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT COUNT(*) FROM key_versions WHERE token_object IS NOT NULL")).scalar():
        raise RuntimeError("the database has keys in a PKCS#11 token; revision 0003 cannot describe them")
    with op.batch_alter_table("key_versions") as batch:
        batch.alter_column("master_key_id", existing_type=sa.String(16), nullable=False)
        batch.alter_column("encrypted_private_key", existing_type=sa.LargeBinary, nullable=False)
        batch.alter_column("wrapped_data_key", existing_type=sa.LargeBinary, nullable=False)
        batch.drop_column("token_object")
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("storage")
