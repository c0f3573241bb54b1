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


def test_n_posts_is_generated_for_old_and_new_exposures(db_url):
    """Migration 0005 fills n_posts for the exposures already stored (the table is rewritten
    on PostgreSQL, copied on SQLite) and the database keeps it for every new one."""
    from alembic import command
    from alembic.config import Config
    from feedlab.storage.engine import MIGRATIONS, make_engine, upgrade
    from sqlalchemy import text

    engine = make_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    old = (
        "INSERT INTO exposures (request_id, ts, served_at, user_id, config_version, exp_group,"
        " model, post_ids, fallback) VALUES (:r, :t, :t, 1, 'v', 'a', 'm', :p, false)"
    )
    with engine.begin() as conn:
        for rid, posts in (("old3", "[5, 6, 7]"), ("old0", "[]")):
            conn.execute(text(old), {"r": rid, "t": datetime(2024, 1, 1), "p": posts})
    upgrade(engine)
    new = {
        "ts": datetime(2024, 1, 2),
        "served_at": datetime(2024, 1, 2),
        "user_id": 2,
        "config_version": "v",
        "exp_group": "a",
        "model": "m",
        "fallback": False,
    }
    with engine.begin() as conn:
        conn.execute(insert(schema.exposures), [new | {"request_id": "new2", "post_ids": [1, 2]}])
        q = select(schema.exposures.c.request_id, schema.exposures.c.n_posts)
        got = {k: v for k, v in conn.execute(q).all()}
    engine.dispose()
    assert got == {"old3": 3, "old0": 0, "new2": 2}
