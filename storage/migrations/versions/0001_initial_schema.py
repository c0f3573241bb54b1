"""initial schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment_configs",
        sa.Column("config_version", sa.String(length=64), nullable=False),
        sa.Column("loaded_at", sa.DateTime(), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("config_version", name=op.f("pk_experiment_configs")),
    )
    op.create_table(
        "exposure_items",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("post_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "position", name=op.f("pk_exposure_items")),
    )
    with op.batch_alter_table("exposure_items", schema=None) as batch_op:
        batch_op.create_index("ix_exposure_items_user_post", ["user_id", "post_id"], unique=False)

    op.create_table(
        "exposures",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("served_at", sa.DateTime(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("experiment", sa.String(length=128), nullable=True),
        sa.Column("config_version", sa.String(length=64), nullable=False),
        sa.Column("exp_group", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("post_ids", sa.JSON(), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_exposures")),
    )
    with op.batch_alter_table("exposures", schema=None) as batch_op:
        batch_op.create_index(
            "ix_exposures_experiment_version", ["experiment", "config_version"], unique=False
        )
        batch_op.create_index("ix_exposures_user_ts", ["user_id", "ts"], unique=False)

    op.create_table(
        "feed",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("post_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("target", sa.SmallInteger(), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed")),
    )
    with op.batch_alter_table("feed", schema=None) as batch_op:
        batch_op.create_index("ix_feed_event_id", ["event_id"], unique=True)
        batch_op.create_index("ix_feed_ts", ["timestamp"], unique=False)
        batch_op.create_index("ix_feed_user_ts", ["user_id", "timestamp"], unique=False)

    op.create_table(
        "post_embeddings",
        sa.Column("post_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("post_id", "model_name", name=op.f("pk_post_embeddings")),
    )
    with op.batch_alter_table("post_embeddings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_post_embeddings_model_hash", ["model_name", "text_hash"], unique=False
        )

    op.create_table(
        "posts",
        sa.Column("post_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("post_id", name=op.f("pk_posts")),
    )
    op.create_table(
        "users",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column("gender", sa.String(length=32), nullable=True),
        sa.Column("country", sa.String(length=64), nullable=True),
        sa.Column("city", sa.String(length=128), nullable=True),
        sa.Column("os", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
    )


def downgrade() -> None:
    op.drop_table("users")
    op.drop_table("posts")
    with op.batch_alter_table("post_embeddings", schema=None) as batch_op:
        batch_op.drop_index("ix_post_embeddings_model_hash")

    op.drop_table("post_embeddings")
    with op.batch_alter_table("feed", schema=None) as batch_op:
        batch_op.drop_index("ix_feed_user_ts")
        batch_op.drop_index("ix_feed_ts")
        batch_op.drop_index("ix_feed_event_id")

    op.drop_table("feed")
    with op.batch_alter_table("exposures", schema=None) as batch_op:
        batch_op.drop_index("ix_exposures_user_ts")
        batch_op.drop_index("ix_exposures_experiment_version")

    op.drop_table("exposures")
    with op.batch_alter_table("exposure_items", schema=None) as batch_op:
        batch_op.drop_index("ix_exposure_items_user_post")

    op.drop_table("exposure_items")
    op.drop_table("experiment_configs")
