"""covering index for attributing likes to served posts (analysis)

`feedlab analyze` starts from the likes of a period and looks up, per like, the served posts
of that user and post whose exposure ts is within the attribution window. With ts in the key
and request_id/position included, PostgreSQL answers from the index alone (no heap fetch per
like), which is most of the join's cost at 10M exposures.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_exposure_items_user_post_ts",
        "exposure_items",
        ["user_id", "post_id", "ts"],
        postgresql_include=["request_id", "position"],
    )


def downgrade() -> None:
    op.drop_index("ix_exposure_items_user_post_ts", table_name="exposure_items")
