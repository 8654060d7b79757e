"""The migration chain: baseline == live CAS schema, head == casdb.tables, every step reversible."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import sqlalchemy
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Engine, text

from casdb import catalog, migrate
from tests.conftest import load_original_schema


def _engine(url: URL) -> Engine:
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


def _public_objects(engine: Engine) -> tuple[list[str], list[str]]:
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                "AND relkind IN ('r', 'S', 'i') AND relname NOT LIKE 'alembic_version%' "
                "ORDER BY relname"
            )
        ).scalars().all()
        types = conn.execute(
            text("SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace "
                 "AND typtype = 'e'")
        ).scalars().all()
    return list(tables), list(types)


def test_chain_has_exactly_one_head_and_date_sorted_files() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1
    files = sorted(p.name for p in (migrate.script_location() / "versions").glob("2*.py"))
    assert files, "no revision files found"
    assert all(re.match(r"\d{4}_\d{2}_\d{2}_\d{4}_", name) for name in files)
    # Sorting by file name is sorting by position in the chain.
    chain = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert [name.split("_")[4] for name in files] == chain


def test_upgrade_head_matches_tables_then_downgrade_base_and_again(
    make_database: Callable[..., URL],
) -> None:
    engine = _engine(make_database())
    with engine.begin() as conn:
        migrate.upgrade(conn, "head")
        assert migrate.current_revisions(conn) == (migrate.head_revision(),)
        assert migrate.schema_differences(conn) == []
    with engine.begin() as conn:
        migrate.downgrade(conn, "base")
    assert _public_objects(engine) == ([], [])
    with engine.begin() as conn:
        migrate.upgrade(conn, "head")
        assert migrate.schema_differences(conn) == []


def test_every_step_downgrades_and_upgrades_again(make_database: Callable[..., URL]) -> None:
    engine = _engine(make_database())
    script = ScriptDirectory.from_config(migrate.alembic_config())
    revisions = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    with engine.begin() as conn:
        for revision in revisions:
            migrate.upgrade(conn, revision)
            before = catalog.snapshot(conn)
            migrate.downgrade(conn, "-1")
            migrate.upgrade(conn, revision)
            assert catalog.snapshot(conn) == before


def test_baseline_reproduces_the_live_cas_schema(make_database: Callable[..., URL]) -> None:
    migrated, loaded = _engine(make_database()), _engine(make_database())
    with migrated.begin() as conn:
        migrate.upgrade(conn, migrate.BASELINE_REVISION)
    load_original_schema(loaded.url)
    with migrated.connect() as a, loaded.connect() as b:
        assert catalog.differences(catalog.snapshot(b), catalog.snapshot(a)) == []
        assert catalog.snapshot(a) == catalog.snapshot(b)
        assert migrate.current_revisions(b) == (migrate.BASELINE_REVISION,)
        assert migrate.current_revisions(a) == (migrate.BASELINE_REVISION,)
        # The snapshot casdb ships for `casdb db adopt` is the same catalog.
        assert catalog.differences(catalog.baseline_snapshot(), catalog.snapshot(b)) == []


def test_live_database_upgrades_to_the_same_schema_as_a_fresh_one_keeping_rows(
    make_database: Callable[..., URL],
) -> None:
    fresh, live = _engine(make_database()), _engine(make_database())
    with fresh.begin() as conn:
        migrate.upgrade(conn, "head")
    load_original_schema(live.url)
    with live.begin() as conn:
        conn.execute(text(
            "INSERT INTO users_user (email, username, active, requests_processed, "
            "cells_processed, is_admin, cell_quota, created_at, ask_for_feedback) VALUES "
            "('a@b.c', 'ann', true, 3, 40, false, 10, '2024-01-01', true)"
        ))
        conn.execute(text(
            "INSERT INTO ml_management_model (model_file_path, embedding_dimension, "
            "admin_use_only, schema_name, is_default_model, model_name, bq_dataset_name) VALUES "
            "('p', 3, false, 's', true, 'm1', 'd'), ('p', 3, false, 's', true, 'm2', 'd')"
        ))
        conn.execute(text(
            "INSERT INTO cells_ingestinfo (cas_ingest_id, dataset_id, uns_metadata) "
            "VALUES ('i1', 'd1', '{\"k\": 1}')"
        ))
        conn.execute(text(
            "INSERT INTO cells_featureinfo (id, original_feature_id, feature_name, "
            "var_metadata_extra, cas_ingest_id) VALUES (77, 'f', 'F', '{}', 'i1')"
        ))
        conn.execute(text(
            "INSERT INTO cells_cellinfo (cas_ingest_id, cell_type) VALUES ('i1', 'T cell')"
        ))
    with live.begin() as conn:
        migrate.upgrade(conn, "head")
        assert migrate.schema_differences(conn) == []
    with fresh.connect() as a, live.connect() as b:
        assert catalog.differences(catalog.snapshot(a), catalog.snapshot(b)) == []
        assert b.execute(text("SELECT email, cells_processed FROM users_user")).all() == [
            ("a@b.c", 40)
        ]
        # Two defaults in a live database: the newest stays default, the data is kept.
        assert b.execute(
            text("SELECT model_name, is_default_model FROM ml_management_model ORDER BY id")
        ).all() == [("m1", False), ("m2", True)]
        assert b.execute(text("SELECT id FROM cells_featureinfo")).scalar_one() == 77
        assert b.execute(text("SELECT count(*) FROM cells_cellinfo")).scalar_one() == 1
        # Sequences continue past the existing rows under their new names.
        b.execute(text(
            "INSERT INTO users_user (email, username) VALUES ('new@b.c', 'new')"
        ))
        assert b.execute(text("SELECT max(id) FROM users_user")).scalar_one() == 2


def test_offline_sql_script_covers_the_whole_chain() -> None:
    buffer = io.StringIO()
    config = migrate.alembic_config()
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    script = buffer.getvalue()
    assert "CREATE TABLE public.users_user" in script
    assert (
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_ml_management_model_is_default_model"
        in script
    )
    assert f"UPDATE casdb.alembic_version SET version_num='{migrate.head_revision()}'" in script
