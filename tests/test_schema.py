from datetime import datetime

from feedlab.storage import schema
from sqlalchemy import func, insert, inspect, select


def test_migrations_create_every_table(engine):
    names = set(inspect(engine).get_table_names())
    assert {t.name for t in schema.metadata.sorted_tables} <= names


def test_feed_ids_are_generated_and_event_ids_unique(engine):
    row = {
        "timestamp": datetime(2024, 1, 1),
        "user_id": 1,
        "post_id": 2,
        "action": "view",
        "event_id": None,
    }
    with engine.begin() as conn:
        conn.execute(insert(schema.feed), [row, row | {"event_id": "e1"}])
        ids = conn.execute(select(schema.feed.c.id)).scalars().all()
    assert len(set(ids)) == 2
    with engine.connect() as conn:
        try:
            conn.execute(insert(schema.feed), [row | {"event_id": "e1"}])
            conn.commit()
            raised = False
        except Exception:
            raised = True
        conn.rollback()
        assert raised
        assert conn.execute(select(func.count()).select_from(schema.feed)).scalar_one() == 2
