"""exposures.n_posts: the number of served posts, generated from post_ids by the database

The analysis sums the served posts of every exposure; parsing each JSON array again in every
analysis was the largest single cost of `feedlab analyze` at 10M exposures. Adding a stored
generated column rewrites the table once (SQLite cannot ALTER one in: batch mode copies it).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    column = sa.Column(
        "n_posts", sa.Integer(), sa.Computed("json_array_length(post_ids)", persisted=True)
    )
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("exposures", recreate="always") as batch:
            batch.add_column(column)
    else:
        op.add_column("exposures", column)


def downgrade() -> None:
    with op.batch_alter_table("exposures") as batch:
        batch.drop_column("n_posts")
