"""Connections on a casdb engine: clean on reuse, bounded waits on a silent network, keepalives.

Faults are real: a TCP proxy on 127.0.0.1 (tests/faultproxy.py) that resets or goes silent.
Every test is bounded by pytest-timeout, so a regression shows as a failure, not a hang.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy
from sqlalchemy import URL, Engine, text

import casdb
from casdb import DatabaseError
from casdb._driver import driver_socket
from casdb.config import config_for_url
from casdb.engine import KEEPALIVE_COUNT, KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S
from casdb.queries import users
from tests.faultproxy import FaultProxy, fault_proxy


@pytest.fixture
def proxy(engine: Engine) -> Iterator[FaultProxy]:
    with fault_proxy(engine.url) as running:
        yield running


def _state_of(admin: Engine, pid: int) -> str:
    with admin.connect() as conn:
        state = conn.execute(
            text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar_one()
    return str(state)


def _backend_pid(conn: sqlalchemy.Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


# --- defect 3: a reused pooled connection is not inside a transaction ---------------------


@pytest.mark.timeout(60)
def test_vacuum_in_autocommit_on_a_reused_connection(engine: Engine) -> None:
    pooled = casdb.create_engine(config_for_url(engine.url, pool_size=1, max_overflow=0))
    try:
        with pooled.connect() as conn:
            first = _backend_pid(conn)
        with pooled.connect() as conn:  # the same connection, pre-pinged
            assert _state_of(engine, first) == "idle"  # not "idle in transaction"
            autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.exec_driver_sql("VACUUM users_user")
            assert _backend_pid(autocommit) == first
        with pooled.connect() as conn:  # and back in a transaction-taking mode
            conn.begin()
            assert conn.execute(text("SELECT count(*) FROM users_user")).scalar_one() >= 0
            conn.rollback()
    finally:
        pooled.dispose()


@pytest.mark.timeout(60)
def test_a_connection_returned_mid_transaction_comes_back_clean(engine: Engine) -> None:
    pooled = casdb.create_engine(config_for_url(engine.url, pool_size=1, max_overflow=0))
    email = f"{uuid.uuid4()}@cas.org"
    try:
        conn = pooled.connect()
        conn.begin()
        pid = _backend_pid(conn)
        users.create_user(conn, email=email, username="left behind")
        conn.exec_driver_sql("CREATE TEMP TABLE casdb_left_behind (x int)")
        conn.exec_driver_sql("SET LOCAL statement_timeout = 1")
        conn.close()  # neither committed nor rolled back by the caller
        with pooled.connect() as again:
            assert _state_of(engine, pid) == "idle"
            autocommit = again.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.exec_driver_sql("VACUUM users_user")
            assert _backend_pid(autocommit) == pid
        with pooled.connect() as again:
            assert again.execute(
                text("SELECT to_regclass('casdb_left_behind') IS NULL")
            ).scalar_one()
            assert again.execute(text("SHOW statement_timeout")).scalar_one() == "0"
            with pytest.raises(casdb.NotFound):
                users.get_user_by_email(again, email=email)
    finally:
        pooled.dispose()


# --- defect 4: keepalives, and bounded waits on a silent network ---------------------------


@pytest.mark.timeout(60)
def test_tcp_connections_have_short_keepalives(engine: Engine) -> None:
    eng = casdb.create_engine(config_for_url(engine.url))
    try:
        with eng.connect() as conn:
            sock = driver_socket(conn.connection.driver_connection)
            assert sock is not None and sock.family == socket.AF_INET
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == KEEPALIVE_INTERVAL_S
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_COUNT
            assert sock.gettimeout() is None  # no DB_SOCKET_TIMEOUT_S: a caller may wait
    finally:
        eng.dispose()


def _env_engine(monkeypatch: pytest.MonkeyPatch, url: URL, **settings: str) -> Engine:
    """A casdb engine configured the way services are: from the environment."""
    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", url.render_as_string(hide_password=False))
    monkeypatch.setenv("DB_POOL_SIZE", "1")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "0")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return casdb.create_engine()


@pytest.mark.timeout(60)
def test_silent_network_during_a_query_ends_in_a_database_error(
    engine: Engine, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as setup:
        user = users.create_user(setup, email=f"{uuid.uuid4()}@cas.org", username="silent")
    eng = _env_engine(monkeypatch, proxy.url(engine.url), DB_SOCKET_TIMEOUT_S="1")
    try:
        with eng.connect() as conn:
            assert users.get_user(conn, user_id=user.id) == user
            proxy.silence()
            started = time.monotonic()
            with pytest.raises(DatabaseError, match="DB_SOCKET_TIMEOUT_S"):
                users.get_user(conn, user_id=user.id)
            assert time.monotonic() - started < 5
            assert conn.invalidated  # dropped, never reused out of step
        proxy.resume()
        made = proxy.connections_made
        with eng.connect() as conn:
            assert users.get_user(conn, user_id=user.id) == user
        assert proxy.connections_made == made + 1  # a new connection, not the silent one
    finally:
        eng.dispose()


@pytest.mark.timeout(60)
def test_reset_during_a_query_ends_in_a_database_error_and_the_next_call_works(
    engine: Engine, proxy: FaultProxy
) -> None:
    with engine.begin() as setup:
        user = users.create_user(setup, email=f"{uuid.uuid4()}@cas.org", username="reset")
    eng = casdb.create_engine(config_for_url(proxy.url(engine.url), pool_size=1))
    try:
        with eng.connect() as conn:
            assert users.get_user(conn, user_id=user.id) == user
            proxy.reset()
            with pytest.raises(DatabaseError):
                users.get_user(conn, user_id=user.id)
            assert conn.invalidated
        with eng.connect() as conn:
            assert users.get_user(conn, user_id=user.id) == user
    finally:
        eng.dispose()


@pytest.mark.timeout(60)
def test_reset_while_waiting_for_the_server_ends_in_a_database_error(
    engine: Engine, proxy: FaultProxy
) -> None:
    """The reset arrives while pg8000 waits for a reply (here: a row lock held elsewhere)."""
    with engine.begin() as setup:
        user = users.create_user(setup, email=f"{uuid.uuid4()}@cas.org", username="waits")
    eng = casdb.create_engine(config_for_url(proxy.url(engine.url), pool_size=1))
    timer = threading.Timer(0.5, proxy.reset)
    try:
        with engine.connect() as holder, eng.connect() as conn:
            holder.begin()
            holder.execute(
                text("SELECT 1 FROM users_user WHERE id = :id FOR UPDATE"), {"id": user.id}
            )
            conn.begin()
            timer.start()
            with pytest.raises(DatabaseError):
                users.set_admin(conn, user_id=user.id, is_admin=True)
            assert conn.invalidated
            holder.rollback()
        with eng.connect() as conn:
            assert users.get_user(conn, user_id=user.id).is_admin is False
    finally:
        timer.cancel()
        eng.dispose()


@pytest.mark.timeout(60)
def test_silent_network_while_connecting_fails_within_the_connect_timeout(
    engine: Engine, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = _env_engine(monkeypatch, proxy.url(engine.url), DB_CONNECT_TIMEOUT_S="1")
    try:
        proxy.silence()  # TCP connects (the proxy accepts), the startup exchange never answers
        started = time.monotonic()
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="DB_CONNECT_TIMEOUT_S") as raised:
            eng.connect()
        assert time.monotonic() - started < 4
        assert raised.value.connection_invalidated
        proxy.resume()
        with eng.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        eng.dispose()


@pytest.mark.timeout(60)
def test_silent_network_under_a_pooled_connection_bounds_engine_connect(
    engine: Engine, proxy: FaultProxy
) -> None:
    """No socket timeout set: the pre-ping and the reconnect are still bounded."""
    eng = casdb.create_engine(
        config_for_url(proxy.url(engine.url), pool_size=1, connect_timeout_s=1)
    )
    try:
        with eng.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        proxy.silence()
        started = time.monotonic()
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            eng.connect()
        assert time.monotonic() - started < 6  # a ping, then a new connection: 1 s each
        proxy.resume()
        with eng.connect() as conn:
            assert conn.execute(text("SELECT 2")).scalar_one() == 2
    finally:
        eng.dispose()


@pytest.mark.timeout(60)
def test_url_query_values_reach_pg8000(engine: Engine) -> None:
    name = f"casdb-{uuid.uuid4().hex[:8]}"
    eng = casdb.create_engine(
        config_for_url(engine.url.update_query_dict({"application_name": name}))
    )
    try:
        with eng.connect() as conn:
            assert conn.execute(text("SHOW application_name")).scalar_one() == name
    finally:
        eng.dispose()
