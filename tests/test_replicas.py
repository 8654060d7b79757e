"""Read replicas: reader configuration, routing, read-only operations, wait_for_replica and
conflicts with recovery, on a real primary and streaming standby (one pair per module)."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

import casdb
from casdb import DatabaseError, InvalidInput, ReplicaLagTimeout, demo
from casdb._checks import translated_errors
from casdb.cli import main
from casdb.config import (
    READ_CONNECTION_VARIABLES,
    config_for_url,
    config_from_env,
    reader_config_from_env,
)
from casdb.local import LocalServer, LocalStandby, standby_of, temporary_primary_and_standby
from casdb.queries import activity, cells, keys, ml_models, quotas, users
from casdb.replicas import MUST_SEE_OWN_WRITES, READ_ONLY_OPERATIONS
from casdb.testing import factories
from casdb.testing.databases import migrate_to_head

MODULES = {
    "users": users,
    "keys": keys,
    "activity": activity,
    "quotas": quotas,
    "ml_models": ml_models,
    "cells": cells,
}
TCP = {
    "DB_HOST": "primary.internal",
    "DB_USER": "cas",
    "DB_PASSWORD": "p@ss:/%#?&'é",
    "DB_NAME": "cas",
}
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_reader_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in READ_CONNECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# --- configuration (no server) ----------------------------------------------------------------


def test_no_reader_variables_means_no_reader() -> None:
    assert reader_config_from_env(config_from_env(TCP), TCP) is None


def test_reader_host_shares_the_writers_login_and_settings() -> None:
    env = {**TCP, "DB_POOL_SIZE": "7", "DB_READ_HOST": "replica.internal", "DB_READ_PORT": "6432"}
    writer = config_from_env(env)
    reader = reader_config_from_env(writer, env)
    assert reader is not None and writer is not None
    assert (reader.url.host, reader.url.port) == ("replica.internal", 6432)
    assert reader.url.username == "cas" and reader.url.database == "cas"
    assert reader.url.password == TCP["DB_PASSWORD"]
    assert reader.pool_size == 7 and reader.mode == "tcp"
    assert TCP["DB_PASSWORD"] not in repr(reader)


@given(
    password=st.text(
        st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
        min_size=1,
        max_size=40,
    )
)
def test_the_reader_logs_in_with_any_password_of_the_writer(password: str) -> None:
    env = {**TCP, "DB_PASSWORD": password, "DB_READ_HOST": "replica.internal"}
    writer = config_from_env(env)
    reader = reader_config_from_env(writer, env)
    assert reader is not None and writer is not None
    assert reader.url.password == password == writer.url.password
    rendered = reader.url.render_as_string(hide_password=False)
    assert sqlalchemy.make_url(rendered).password == password  # survives URL quoting
    # The repr does not depend on the password: it never shows it.
    assert repr(reader) == repr(attrs.evolve(reader, url=reader.url.set(password="x")))


def test_reader_host_default_port_and_socket_writer() -> None:
    env = {
        "DB_INSTANCE_UNIX_SOCKET": "/cloudsql/p:r:primary",
        "DB_USER": "cas",
        "DB_PASSWORD": "pw",
        "DB_NAME": "cas",
        "DB_READ_HOST": "10.0.0.9",
    }
    reader = reader_config_from_env(config_from_env(env), env)
    assert reader is not None
    assert (reader.url.host, reader.url.port, reader.unix_sock) == ("10.0.0.9", 5432, None)
    assert "unix_sock" not in reader.connect_args()


def test_reader_socket_is_the_replicas_proxy_socket() -> None:
    env = {**TCP, "DB_READ_INSTANCE_UNIX_SOCKET": "/cloudsql/p:r:replica/"}
    reader = reader_config_from_env(config_from_env(env), env)
    assert reader is not None and reader.mode == "unix_socket"
    assert reader.unix_sock == "/cloudsql/p:r:replica/.s.PGSQL.5432"
    assert reader.url.host is None and reader.url.username == "cas"
    assert reader.connect_args()["unix_sock"] == reader.unix_sock


def test_reader_uri() -> None:
    env = {**TCP, "SQLALCHEMY_READ_DATABASE_URI": "postgresql://ro:x@replica:5433/cas"}
    reader = reader_config_from_env(config_from_env(env), env)
    assert reader is not None
    assert reader.url.drivername == "postgresql+pg8000" and reader.url.username == "ro"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"DB_READ_PORT": "5433"}, "DB_READ_HOST is missing"),
        ({"DB_READ_HOST": "r", "DB_READ_INSTANCE_UNIX_SOCKET": "/s"}, "both DB_READ_HOST"),
        ({"DB_READ_INSTANCE_UNIX_SOCKET": "/s", "DB_READ_PORT": "1"}, "socket has no port"),
        ({"DB_READ_HOST": "r", "DB_READ_PORT": "0"}, "DB_READ_PORT must be"),
        ({"DB_READ_HOST": "r", "DB_READ_PORT": "x"}, "DB_READ_PORT must be an integer"),
        ({"SQLALCHEMY_READ_DATABASE_URI": "mysql://r/x"}, "must be a PostgreSQL URL"),
    ],
)
def test_half_set_reader_is_a_configuration_error(extra: dict[str, str], words: str) -> None:
    env = {**TCP, **extra}
    with pytest.raises(casdb.ConfigurationError, match=words):
        reader_config_from_env(config_from_env(env), env)


def test_reader_without_writer_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_READ_HOST", "replica.internal")
    with pytest.raises(casdb.ConfigurationError, match="no writer is configured"):
        casdb.create_engines(allow_local=True)


def test_create_engines_reads_the_reader_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in TCP.items():
        monkeypatch.setenv(name, value)
    writer, reader = casdb.create_engines()
    assert reader is not writer and reader.url == writer.url  # no replica: the writer's server
    monkeypatch.setenv("DB_READ_HOST", "replica.internal")
    writer, reader = casdb.create_engines()
    assert (writer.url.host, reader.url.host) == ("primary.internal", "replica.internal")


# --- a primary and a streaming standby --------------------------------------------------------


@attrs.frozen
class Pair:
    primary: LocalServer
    standby: LocalStandby
    writer: Engine  # casdb engines on the migrated database
    reader: Engine
    alone_reader: Engine  # the reader create_engines gives without a replica

    def reader_connect(self) -> Connection:
        return self.reader.connect()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    # No delay for the standby: a conflict with recovery cancels the standby's query at once.
    settings = ("max_standby_streaming_delay = 0", "hot_standby_feedback = off")
    with temporary_primary_and_standby(standby_settings=settings) as (primary, standby):
        migrate_to_head(primary.url())
        writer, reader = casdb.create_engines(
            config_for_url(primary.url()), reader_config=config_for_url(standby.url())
        )
        _, alone_reader = casdb.create_engines(config_for_url(primary.url()))
        with writer.connect() as w, reader.connect() as r:
            casdb.wait_for_replica(w, r)  # the schema
        try:
            yield Pair(primary, standby, writer, reader, alone_reader)
        finally:
            for engine in (writer, reader, alone_reader):
                engine.dispose()


def _scalar(connection: Connection, sql: str) -> Any:
    return connection.execute(text(sql)).scalar_one()


def test_the_reader_is_the_standby_and_reads_only(pair: Pair) -> None:
    with pair.writer.connect() as w, pair.reader.connect() as r, pair.alone_reader.connect() as a:
        assert _scalar(w, "SELECT pg_is_in_recovery()") is False
        assert _scalar(r, "SELECT pg_is_in_recovery()") is True
        assert _scalar(a, "SELECT pg_is_in_recovery()") is False
        assert _scalar(w, "SHOW default_transaction_read_only") == "off"
        for connection in (r, a):
            assert _scalar(connection, "SHOW default_transaction_read_only") == "on"


def test_the_read_only_option_keeps_the_server_side_timeouts(pair: Pair) -> None:
    writer, reader = casdb.create_engines(
        config_for_url(pair.primary.url(), statement_timeout_ms=1234, lock_timeout_ms=567),
        reader_config=config_for_url(pair.standby.url(), statement_timeout_ms=4321),
    )
    _, alone = casdb.create_engines(config_for_url(pair.primary.url(), lock_timeout_ms=567))
    try:
        with writer.connect() as w, reader.connect() as r, alone.connect() as a:
            assert [
                _scalar(w, f"SHOW {n}")
                for n in ("statement_timeout", "lock_timeout", "default_transaction_read_only")
            ] == ["1234ms", "567ms", "off"]
            assert [
                _scalar(r, f"SHOW {n}")
                for n in ("statement_timeout", "default_transaction_read_only")
            ] == ["4321ms", "on"]
            assert [
                _scalar(a, f"SHOW {n}") for n in ("lock_timeout", "default_transaction_read_only")
            ] == ["567ms", "on"]
    finally:
        for engine in (writer, reader, alone):
            engine.dispose()


@pytest.mark.parametrize("reader", ["standby", "writer's server"])
def test_a_misrouted_write_fails_the_same_way(pair: Pair, reader: str) -> None:
    engine = pair.reader if reader == "standby" else pair.alone_reader
    with engine.connect() as connection:
        with pytest.raises(DatabaseError) as raised:
            users.create_user(connection, email="misrouted@example.org", username="misrouted")
        assert getattr(raised.value, "sqlstate", None) == "25006"
        assert "read-only transaction" in str(raised.value)
        connection.rollback()
    with pair.writer.connect() as connection:
        assert _count(connection, "misrouted@example.org") == 0


def _count(connection: Connection, email: str) -> int:
    return int(
        _scalar_param(connection, "SELECT count(*) FROM users_user WHERE email = :e", e=email)
    )


def _scalar_param(connection: Connection, sql: str, **params: Any) -> Any:
    return connection.execute(text(sql), params).scalar_one()


# --- every read-only operation runs on the reader ---------------------------------------------


@attrs.frozen
class Sample:
    user: users.User
    key: factories.IssuedKey
    model: ml_models.MLModel
    index_name: str
    ingest: factories.IngestWithCells


@pytest.fixture(scope="module")
def sample(pair: Pair) -> Sample:
    with pair.writer.begin() as connection:
        user = factories.make_user(connection)
        key = factories.make_key(connection, user_id=user.id)
        model = factories.make_model(connection)
        ingest = factories.make_ingest(connection, cells=5)
        # make_ingest takes explicit ids: keep the sequences past them (the demo uses them).
        cells.advance_index_sequence(connection, table="cells", past=max(ingest.cell_ids))
        cells.advance_index_sequence(
            connection,
            table="features",
            past=max(f.cas_feature_index for f in ingest.features),
        )
        activity.log_user_activity(
            connection,
            user_id=user.id,
            model_name=model.model_name,
            method="annotate",
            cell_count=5,
            event="SUCCEEDED",
            request_id="r1",
            finished_time=NOW,
        )
    with pair.writer.connect() as w, pair.reader.connect() as r:
        casdb.wait_for_replica(w, r)
    return Sample(user, key, model, model.indexes[0].index_name, ingest)


ARGUMENTS: dict[str, Callable[[Sample], dict[str, Any]]] = {
    "users.get_user": lambda s: {"user_id": s.user.id},
    "users.get_user_by_email": lambda s: {"email": s.user.email},
    "users.list_users": lambda s: {},
    "users.get_user_with_usage": lambda s: {"user_id": s.user.id},
    "users.get_user_usage": lambda s: {"user_id": s.user.id},
    "keys.get_key_for_authentication": lambda s: {"key_locator": s.key.key.key_locator},
    "keys.list_user_keys": lambda s: {"user_id": s.user.id},
    "keys.authenticate_token": lambda s: {"token": s.key.token, "now": NOW},
    "activity.list_user_activity": lambda s: {"user_id": s.user.id},
    "quotas.cells_processed_this_week": lambda s: {"user_id": s.user.id, "now": NOW},
    "quotas.get_user_quota": lambda s: {"user_id": s.user.id, "now": NOW},
    "ml_models.list_models": lambda s: {},
    "ml_models.get_model_by_name": lambda s: {"model_name": s.model.model_name},
    "ml_models.get_default_model": lambda s: {},
    "ml_models.get_index_by_name": lambda s: {"index_name": s.index_name},
    "ml_models.list_indexes_for_model": lambda s: {"model_id": s.model.id},
    "cells.get_ingest": lambda s: {"cas_ingest_id": s.ingest.ingest.cas_ingest_id},
    "cells.list_ingests": lambda s: {},
    "cells.list_features_for_ingest": lambda s: {"cas_ingest_id": s.ingest.ingest.cas_ingest_id},
    "cells.count_cells": lambda s: {"cas_ingest_id": s.ingest.ingest.cas_ingest_id},
    "cells.get_cell_metadata_by_ids": lambda s: {"cell_ids": s.ingest.cell_ids},
    "cells.iter_cell_metadata_by_ids": lambda s: {"cell_ids": s.ingest.cell_ids},
    "cells.find_existing_indexes": lambda s: {
        "table": "cells",
        "ids": [*s.ingest.cell_ids, 2**31 - 1],
    },
}
READ_ONLY = [f"{area}.{name}" for area, names in READ_ONLY_OPERATIONS.items() for name in names]


def _run(name: str, connection: Connection, sample: Sample) -> Any:
    area, function = name.split(".")
    result = getattr(MODULES[area], function)(connection, **ARGUMENTS[name](sample))
    return list(result) if inspect.isgenerator(result) else result


@pytest.mark.parametrize("name", READ_ONLY)
@pytest.mark.parametrize("where", ["standby", "read-only transaction on the writer's server"])
def test_every_read_only_operation_runs_on_the_reader(
    pair: Pair, sample: Sample, name: str, where: str
) -> None:
    engine = pair.reader if where == "standby" else pair.alone_reader
    if name == "ml_models.get_default_model":
        with pair.writer.connect() as w, pair.reader.connect() as r:
            ml_models.set_default_model(w, model_id=sample.model.id)
            w.commit()
            casdb.wait_for_replica(w, r)
    with pair.writer.connect() as w:
        expected = _run(name, w, sample)
    with engine.connect() as connection:
        assert _scalar(connection, "SHOW transaction_read_only") == "on"
        assert _run(name, connection, sample) == expected


def _operations(module: Any) -> set[str]:
    # The public operations: what the module exports that takes a connection first.
    return {
        name
        for name in module.__all__
        if inspect.isfunction(value := getattr(module, name))
        and next(iter(inspect.signature(value).parameters), None) == "connection"
    }


WRITES = {
    "users": {
        "create_user",
        "set_user_active",
        "set_admin",
        "opt_out_of_feedback",
        "increase_lifetime_quota",
        "set_weekly_cell_quota",
    },
    "keys": {"create_user_key", "deactivate_user_key", "issue_user_token"},
    "activity": {"log_user_activity"},
    "quotas": set(),
    "ml_models": {"create_model", "set_default_model", "create_matching_engine_index"},
    "cells": {
        "create_ingest",
        "delete_ingest",
        "insert_features",
        "insert_cells",
        "reserve_indexes",
        "advance_index_sequence",
    },
}


@pytest.mark.parametrize("area", sorted(MODULES))
def test_every_operation_is_classified(area: str) -> None:
    # A new operation must be put in READ_ONLY_OPERATIONS (and tested above) or be a write.
    read_only = set(READ_ONLY_OPERATIONS[area])
    assert _operations(MODULES[area]) - WRITES[area] == read_only
    assert read_only <= _operations(MODULES[area])
    assert {f"{area}.{name}" for name in read_only} <= set(ARGUMENTS)
    assert {name for name in MUST_SEE_OWN_WRITES if name.startswith(area + ".")} <= set(READ_ONLY)


# --- wait_for_replica ---------------------------------------------------------------------------


def test_wait_returns_at_once_when_the_reader_is_the_writer(pair: Pair) -> None:
    with pair.writer.connect() as w, pair.alone_reader.connect() as r:
        factories.make_user(w)
        w.commit()
        assert casdb.wait_for_replica(w, r, timeout=0) == 0.0
        # Connections that had no transaction are left without one.
        assert not w.in_transaction() and not r.in_transaction()


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), "1", True, None])
def test_wait_refuses_a_bad_timeout_before_any_sql(pair: Pair, timeout: Any) -> None:
    with pair.writer.connect() as w, pair.reader.connect() as r:
        with pytest.raises(InvalidInput, match="timeout"):
            casdb.wait_for_replica(w, r, timeout=timeout)
        assert not w.in_transaction() and not r.in_transaction()


def test_wait_refuses_a_reader_inside_a_repeatable_read_snapshot(pair: Pair) -> None:
    with pair.writer.connect() as w, pair.reader.connect() as r:
        r = r.execution_options(isolation_level="REPEATABLE READ")
        r.execute(text("SELECT 1"))
        with pytest.raises(InvalidInput, match="REPEATABLE READ"):
            casdb.wait_for_replica(w, r)


@contextlib.contextmanager
def _replay_paused(pair: Pair) -> Iterator[None]:
    admin = sqlalchemy.create_engine(pair.standby.url(), poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_wal_replay_pause()"))
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_wal_replay_resume()"))
            connection.commit()
    admin.dispose()


def test_wait_times_out_while_the_replica_lags_then_sees_the_write(pair: Pair) -> None:
    with pair.writer.connect() as w, pair.reader.connect() as r:
        with _replay_paused(pair):
            user = factories.make_user(w)
            w.commit()
            started = time.monotonic()
            with pytest.raises(ReplicaLagTimeout) as raised:
                casdb.wait_for_replica(w, r, timeout=0.3)
            assert 0.3 <= time.monotonic() - started < 2
            error = raised.value
            assert isinstance(error, DatabaseError) and error.retryable is True
            assert error.target_lsn in str(error) and error.replayed_lsn is not None
            assert not r.in_transaction()
            with pytest.raises(casdb.NotFound):  # the lag is real
                users.get_user(r, user_id=user.id)
            r.rollback()
        assert casdb.wait_for_replica(w, r, timeout=10) >= 0
        assert users.get_user(r, user_id=user.id) == user


def _cells(ingest_id: str, first: int, count: int) -> Iterator[cells.Cell]:
    for index in range(first, first + count):
        yield cells.Cell(
            cas_cell_index=index,
            cas_ingest_id=ingest_id,
            cell_type="T cell",
            original_cell_id=f"c{index}",
            obs_metadata_extra={"n": index},
            tissue="blood",
        )


def test_read_your_writes_during_a_bulk_ingest(pair: Pair) -> None:
    with pair.writer.begin() as connection:
        ingest = cells.create_ingest(connection, cas_ingest_id="bulk-replica", dataset_id="d")
        first = 1 + int(
            _scalar(connection, "SELECT coalesce(max(cas_cell_index), 0) FROM cells_cellinfo")
        )
        # Later ids from the sequence (the demo's) must not collide with these.
        cells.advance_index_sequence(connection, table="cells", past=first + 200_000)
    done = threading.Event()
    failures: list[BaseException] = []

    def ingest_cells() -> None:
        try:
            for batch in range(8):
                with pair.writer.begin() as connection:
                    cells.insert_cells(
                        connection,
                        rows=_cells(ingest.cas_ingest_id, first + batch * 25_000, 25_000),
                    )
        except BaseException as error:  # reported by the test below
            failures.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=ingest_cells)
    thread.start()
    rounds, waited = 0, 0.0
    try:
        with pair.writer.connect() as w, pair.reader.connect() as r:
            while not done.is_set() or rounds < 5:
                user = factories.make_user(w)
                w.commit()
                waited = max(waited, casdb.wait_for_replica(w, r, timeout=30))
                assert users.get_user_by_email(r, email=user.email) == user
                r.rollback()
                rounds += 1
            thread.join()
            assert not failures
            casdb.wait_for_replica(w, r, timeout=30)
            assert cells.count_cells(r, cas_ingest_id=ingest.cas_ingest_id) == 200_000
    finally:
        thread.join()
    assert rounds >= 5


# --- conflicts with recovery, a standby that goes away ----------------------------------------


def _lock_on_primary(pair: Pair, table: str = "users_user") -> None:
    # An ACCESS EXCLUSIVE lock is WAL-logged: the standby must take it too while replaying,
    # and with max_standby_streaming_delay = 0 it cancels whoever holds the table at once.
    with pair.writer.begin() as connection:
        connection.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))


def test_a_reader_killed_by_a_conflict_with_recovery_is_a_retryable_error(pair: Pair) -> None:
    with pair.reader.connect() as r:
        users.list_users(r)  # holds users_user (ACCESS SHARE) until the transaction ends
        _lock_on_primary(pair)
        with pair.writer.connect() as w, pair.reader.connect() as other:
            casdb.wait_for_replica(w, other, timeout=10)
        with pytest.raises(DatabaseError) as raised:
            users.list_users(r)
    error = raised.value
    assert "conflict with recovery" in str(error), str(error)
    assert "network error" not in str(error)
    assert getattr(error, "retryable", None) is True
    with pair.reader.connect() as r:  # the pool gives a working connection again
        assert users.list_users(r)


def test_a_running_query_cancelled_by_a_conflict_is_a_retryable_error(pair: Pair) -> None:
    timer = threading.Timer(0.5, _lock_on_primary, args=(pair,))
    with pair.reader.connect() as r:
        timer.start()
        try:
            with pytest.raises(DatabaseError) as raised, translated_errors():
                r.execute(text("SELECT pg_sleep(20), (SELECT count(*) FROM users_user)"))
        finally:
            timer.join()
        r.rollback()
    error = raised.value
    assert "canceling statement due to conflict with recovery" in str(error), str(error)
    assert getattr(error, "sqlstate", None) == "40001"
    assert getattr(error, "retryable", None) is True


def test_a_reader_whose_standby_restarts_is_a_retryable_error(pair: Pair) -> None:
    with pair.reader.connect() as r:
        pid = _scalar(r, "SELECT pg_backend_pid()")
        r.rollback()
        admin = sqlalchemy.create_engine(pair.standby.url(), poolclass=sqlalchemy.pool.NullPool)
        with admin.connect() as connection:
            assert _scalar_param(connection, "SELECT pg_terminate_backend(:p)", p=pid) is True
        admin.dispose()
        with pytest.raises(DatabaseError) as raised:
            users.list_users(r)
    assert "terminating connection due to administrator command" in str(raised.value)
    assert getattr(raised.value, "retryable", None) is True


# --- the CLI: casdb local start --replica, casdb local url --reader ---------------------------


def test_local_start_replica_and_url_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path.chmod(0o711)
    data_dir = str(tmp_path / "pg")
    local = ("--data-dir", data_dir, "local")
    try:
        assert main([*local, "url", "--reader"]) == 1
        assert "casdb local start" in capsys.readouterr().err
        assert main([*local, "start", "--replica"]) == 0
        assert "read replica started" in capsys.readouterr().out
        assert main([*local, "url"]) == 0
        writer_url = capsys.readouterr().out.strip()
        assert main([*local, "url", "--reader"]) == 0
        reader_url = capsys.readouterr().out.strip()
        assert main([*local, "url", "--reader", "--export"]) == 0
        assert capsys.readouterr().out.startswith("export SQLALCHEMY_READ_DATABASE_URI=")
        assert reader_url != writer_url
        engine = sqlalchemy.create_engine(reader_url, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as connection:
            assert _scalar(connection, "SELECT pg_is_in_recovery()") is True
            assert _scalar(connection, "SELECT current_database()") == "casdb"
        engine.dispose()
        assert main([*local, "status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["reader_url"] == reader_url
        assert main([*local, "start", "--replica"]) == 0  # safe twice
        assert "read replica already running" in capsys.readouterr().out
        assert main([*local, "stop"]) == 0
        assert "stopped the local read replica" in capsys.readouterr().out
        assert main([*local, "url", "--reader"]) == 1
    finally:
        standby_of(LocalServer(Path(data_dir))).stop()
        LocalServer(Path(data_dir)).stop()


# --- the demo reads from the reader when one is configured -------------------------------------


def test_demo_reads_from_the_configured_reader(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "SQLALCHEMY_READ_DATABASE_URI", pair.standby.url().render_as_string(hide_password=False)
    )
    writer_url = pair.primary.url().render_as_string(hide_password=False)
    code = main(["--url", writer_url, "demo", "--yes"])
    shown, err = capsys.readouterr()
    assert code == 0, err
    section = shown.split("== read replica")[1]
    assert "a streaming standby (in recovery)" in section
    assert "create_user on the reader is refused" in section and "read-only" in section


def test_demo_without_a_replica_shows_the_reader_is_the_writer(pair: Pair) -> None:
    lines: list[str] = []
    demo.run_demo(pair.writer, out=lines.append, reader=pair.alone_reader, tag="-alone")
    section = "\n".join(lines).split("== read replica")[1]
    assert "the writer's server (no replica configured)" in section
    assert "create_user on the reader is refused" in section
