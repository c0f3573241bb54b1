"""exposures(ts): the exposures of a time range without reading the whole table

CUPED's pre-period takes every exposure in the period before an experiment's first exposure,
whatever its experiment; without an index on ts that was a scan of the whole exposures table
(11M rows to find the 1M of the pre-period in the 10M-exposure benchmark).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_exposures_ts", "exposures", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_exposures_ts", table_name="exposures")
