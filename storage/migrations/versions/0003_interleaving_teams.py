"""interleaving: the contributing arm of each served post and the request's coin seed

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("exposures", sa.Column("seed", sa.BigInteger(), nullable=True))
    op.add_column("exposure_items", sa.Column("team", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exposure_items") as batch:
        batch.drop_column("team")
    with op.batch_alter_table("exposures") as batch:
        batch.drop_column("seed")
