"""The migration chain: baseline == live CAS schema, head == casdb.tables, every step reversible."""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from casdb import catalog, migrate
from casdb.errors import ConfigurationError
from tests.conftest import execute_sql, load_original_schema


def _engine(url: URL) -> Engine:
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


def _public_objects(engine: Engine) -> tuple[list[str], list[str]]:
    with engine.connect() as conn:
        tables = (
            conn.execute(
                text(
                    "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                    "AND relkind IN ('r', 'S', 'i') AND relname NOT LIKE 'alembic_version%' "
                    "ORDER BY relname"
                )
            )
            .scalars()
            .all()
        )
        types = (
            conn.execute(
                text(
                    "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace "
                    "AND typtype = 'e'"
                )
            )
            .scalars()
            .all()
        )
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
        conn.execute(
            text(
                "INSERT INTO users_user (email, username, active, requests_processed, "
                "cells_processed, is_admin, cell_quota, created_at, ask_for_feedback) VALUES "
                "('a@b.c', 'ann', true, 3, 40, false, 10, '2024-01-01', true)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO ml_management_model (model_file_path, embedding_dimension, "
                "admin_use_only, schema_name, is_default_model, model_name, "
                "bq_dataset_name) VALUES "
                "('p', 3, false, 's', true, 'm1', 'd'), ('p', 3, false, 's', true, 'm2', 'd')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO cells_ingestinfo (cas_ingest_id, dataset_id, uns_metadata) "
                "VALUES ('i1', 'd1', '{\"k\": 1}')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO cells_featureinfo (id, original_feature_id, feature_name, "
                "var_metadata_extra, cas_ingest_id) VALUES (77, 'f', 'F', '{}', 'i1')"
            )
        )
        conn.execute(
            text("INSERT INTO cells_cellinfo (cas_ingest_id, cell_type) VALUES ('i1', 'T cell')")
        )
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
        b.execute(text("INSERT INTO users_user (email, username) VALUES ('new@b.c', 'new')"))
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


# --- the online-safe path, lock discipline, resumability -------------------------------


def _snapshot(engine: Engine) -> dict[str, list[list[Any]]]:
    with engine.connect() as conn:
        return catalog.snapshot(conn)


def _hold_lock(engine: Engine, table: str, seconds: float | None) -> Connection:
    """Hold ACCESS SHARE on ``table`` (as a long read would), released after ``seconds``."""
    holder = engine.connect()
    holder.begin()
    holder.execute(text(f"LOCK TABLE {table} IN ACCESS SHARE MODE"))
    if seconds is not None:
        threading.Timer(seconds, holder.rollback).start()
    return holder


@pytest.mark.parametrize("path", ["engine", "transaction"])
def test_downgrade_to_the_baseline_restores_the_full_catalog(
    make_database: Callable[..., URL], path: str
) -> None:
    """Columns, types, defaults, constraints, indexes, sequences and ownership, the enum."""
    url = make_database()
    load_original_schema(url)
    engine = _engine(url)
    before = _snapshot(engine)
    assert before == _snapshot(engine) and before["sequences"] and before["enums"]
    if path == "engine":
        migrate.upgrade(engine, "head")
        assert _snapshot(engine) != before
        migrate.downgrade(engine, migrate.BASELINE_REVISION)
    else:
        with engine.begin() as conn:
            migrate.upgrade(conn, "head")
            migrate.downgrade(conn, migrate.BASELINE_REVISION)
    after = _snapshot(engine)
    assert catalog.differences(before, after) == []
    assert after == before
    with engine.connect() as conn:
        assert migrate.current_revisions(conn) == (migrate.BASELINE_REVISION,)


def test_the_engine_path_takes_a_live_database_with_rows_to_the_fresh_schema(
    make_database: Callable[..., URL],
) -> None:
    fresh, live = _engine(make_database()), _engine(make_database())
    migrate.upgrade(fresh, "head")
    load_original_schema(live.url)
    execute_sql(
        live.url,
        "INSERT INTO ml_management_model (model_file_path, embedding_dimension, admin_use_only, "
        "schema_name, is_default_model, model_name, bq_dataset_name) VALUES "
        "('p', 3, false, 's', true, 'm1', 'd'), ('p', 3, false, 's', true, 'm2', 'd')",
        "INSERT INTO cells_ingestinfo (cas_ingest_id, dataset_id, uns_metadata) "
        "VALUES ('i1', 'd1', '{}')",
        "INSERT INTO cells_cellinfo (cas_ingest_id, cell_type) "
        "SELECT 'i1', 'T cell' FROM generate_series(1, 1000)",
    )
    migrate.upgrade(live, "head")
    assert catalog.differences(_snapshot(fresh), _snapshot(live)) == []
    with live.connect() as conn:
        assert migrate.current_revisions(conn) == (migrate.head_revision(),)
        assert migrate.schema_differences(conn) == []
        assert conn.execute(text("SELECT count(*) FROM cells_cellinfo")).scalar_one() == 1000
        # Every constraint is validated: none is left NOT VALID.
        assert (
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_constraint WHERE NOT convalidated "
                    "AND connamespace = 'public'::regnamespace"
                )
            ).scalar_one()
            == 0
        )


def test_a_connection_outside_a_transaction_takes_the_online_path(
    make_database: Callable[..., URL],
) -> None:
    engine = _engine(make_database())
    with engine.connect() as conn:
        migrate.upgrade(conn, "head")  # CONCURRENTLY: impossible inside a transaction
        assert not conn.in_transaction()
        assert migrate.current_revisions(conn) == (migrate.head_revision(),)


def test_a_held_lock_makes_the_upgrade_wait_and_retry_instead_of_failing(
    make_database: Callable[..., URL],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("CASDB_MIGRATION_LOCK_TIMEOUT_MS", "100")
    monkeypatch.setenv("CASDB_MIGRATION_LOCK_RETRIES", "6")
    engine = _engine(make_database())
    migrate.upgrade(engine, migrate.BASELINE_REVISION)
    holder = _hold_lock(engine, "cells_cellinfo", 1.0)
    with caplog.at_level(logging.WARNING, logger="casdb"):
        migrate.upgrade(engine, "head")
    holder.close()
    assert "retrying" in caplog.text
    with engine.connect() as conn:
        assert migrate.current_revisions(conn) == (migrate.head_revision(),)
        assert migrate.schema_differences(conn) == []


def test_a_failed_upgrade_is_resumed_by_running_it_again(
    make_database: Callable[..., URL], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASDB_MIGRATION_LOCK_TIMEOUT_MS", "100")
    monkeypatch.setenv("CASDB_MIGRATION_LOCK_RETRIES", "0")
    fresh, engine = _engine(make_database()), _engine(make_database())
    migrate.upgrade(fresh, "head")
    migrate.upgrade(engine, migrate.BASELINE_REVISION)
    # A failed CONCURRENTLY build leaves an INVALID index behind under the name the
    # revision uses; the re-run must rebuild it, not skip it.
    execute_sql(
        engine.url,
        "INSERT INTO users_user (id, email, username, active, "
        "requests_processed, cells_processed, is_admin, cell_quota, created_at, "
        "ask_for_feedback) VALUES (1, 'a@b.c', 'a', true, 0, 0, false, 1, now(), true)",
        "INSERT INTO users_userkey (key_locator, user_id, created_date, active, expires, "
        "key_hash) SELECT gen_random_uuid(), 1, now(), true, now(), 'h' "
        "FROM generate_series(1, 2)",
    )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        with pytest.raises(DBAPIError):
            conn.execute(
                text(
                    "CREATE UNIQUE INDEX CONCURRENTLY ix_users_userkey_user_id "
                    "ON users_userkey (user_id)"
                )
            )
    holder = _hold_lock(engine, "cells_cellinfo", None)
    with pytest.raises(DBAPIError) as failed:
        migrate.upgrade(engine, "head")
    holder.close()
    assert failed.value.orig is not None and "lock timeout" in str(failed.value.orig)
    with engine.connect() as conn:
        # Stopped part way: the steps before cells_cellinfo's are done, the revision is not.
        assert migrate.current_revisions(conn) == (migrate.BASELINE_REVISION,)
        assert conn.execute(text("SELECT to_regclass('users_user_id_seq')")).scalar() is not None
    migrate.upgrade(engine, "head")
    assert catalog.differences(_snapshot(fresh), _snapshot(engine)) == []
    # The same for a downgrade that stops part way.
    holder = _hold_lock(engine, "users_user", None)
    with pytest.raises(DBAPIError):
        migrate.downgrade(engine, migrate.BASELINE_REVISION)
    holder.close()
    migrate.downgrade(engine, migrate.BASELINE_REVISION)
    assert catalog.differences(catalog.baseline_snapshot(), _snapshot(engine)) == []


def test_in_a_callers_transaction_a_failure_changes_nothing(
    make_database: Callable[..., URL], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASDB_MIGRATION_LOCK_TIMEOUT_MS", "100")
    engine = _engine(make_database())
    migrate.upgrade(engine, migrate.BASELINE_REVISION)
    before = _snapshot(engine)
    holder = _hold_lock(engine, "cells_cellinfo", None)
    with pytest.raises(DBAPIError), engine.begin() as conn:
        migrate.upgrade(conn, "head")
    holder.close()
    assert _snapshot(engine) == before


def test_a_services_statement_timeout_does_not_abort_the_upgrade(
    make_database: Callable[..., URL],
) -> None:
    # DB_STATEMENT_TIMEOUT_MS=300 as a service sets it: the lock wait below outlasts it.
    engine = sqlalchemy.create_engine(
        make_database(),
        poolclass=sqlalchemy.pool.NullPool,
        connect_args={"startup_params": {"options": "-c statement_timeout=300"}},
    )
    migrate.upgrade(engine, migrate.BASELINE_REVISION)
    holder = _hold_lock(engine, "users_user", 1.0)
    migrate.upgrade(engine, "head")
    holder.close()
    with engine.connect() as conn:
        assert migrate.current_revisions(conn) == (migrate.head_revision(),)
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "300ms"


def test_the_offline_script_starts_with_the_lock_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASDB_MIGRATION_LOCK_TIMEOUT_MS", "5000")
    buffer = io.StringIO()
    config = migrate.alembic_config()
    config.output_buffer = buffer
    command.upgrade(config, f"{migrate.BASELINE_REVISION}:head", sql=True)
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    assert lines[:2] == ["SET lock_timeout = 5000;", "SET statement_timeout = 0;"]
    # A live database has only public.alembic_version: the script starts casdb's.
    assert "INSERT INTO casdb.alembic_version (version_num) SELECT 'cdfe110d1068'" in lines[4]


@pytest.mark.parametrize("value", ["soon", "-1", "1.5"])
def test_a_bad_migration_setting_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, value: str, make_database: Callable[..., URL]
) -> None:
    monkeypatch.setenv("CASDB_MIGRATION_LOCK_TIMEOUT_MS", value)
    engine = _engine(make_database())
    with pytest.raises(ConfigurationError, match="CASDB_MIGRATION_LOCK_TIMEOUT_MS"):
        migrate.upgrade(engine, "head")
    assert _public_objects(engine) == ([], [])


def test_an_old_transaction_delays_an_index_build_without_failing_it(
    make_database: Callable[..., URL], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONCURRENTLY waits for older transactions; that wait blocks nobody, so no lock_timeout."""
    monkeypatch.setenv("CASDB_MIGRATION_LOCK_TIMEOUT_MS", "100")
    monkeypatch.setenv("CASDB_MIGRATION_LOCK_RETRIES", "0")
    engine = _engine(make_database())
    migrate.upgrade(engine, migrate.BASELINE_REVISION)
    holder = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    holder.begin()
    holder.execute(text("SELECT txid_current()"))  # a snapshot and an xid, on no CAS table
    threading.Timer(1.0, holder.rollback).start()
    migrate.upgrade(engine, "head")
    holder.close()
    with engine.connect() as conn:
        assert migrate.current_revisions(conn) == (migrate.head_revision(),)
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"  # the session's own
