"""The per-connection prepared-statement cache of the hot small operations (issue 12).

get_user, get_user_by_email, get_key_for_authentication, log_user_activity, get_user_quota,
get_default_model and get_model_by_name run as statements prepared once per server
connection: the same records and errors as the same statements run by plain SQLAlchemy, one
statement a call, a bounded cache that goes with the connection (invalidated, reset, its
session terminated), a table changed under a statement (a migration) or a statement
deallocated behind casdb is survived, and transactions in any state behave as without it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import URL, Connection, Engine, select

from casdb import CasdbError, DatabaseError, NotFound, _driver
from casdb.queries import _rows, activity, keys, ml_models, quotas, users
from casdb.queries._rows import Prepared
from casdb.tables import users_user
from casdb.testing import strategies
from casdb.testing.factories import make_model
from tests.conftest import rolled_back
from tests.faultproxy import FaultProxy, fault_proxy
from tests.strategies import statements_sent


@pytest.fixture
def own_engine(make_database: Callable[..., URL], template_database: str) -> Iterator[Engine]:
    """A database of its own (its table is altered by some tests)."""
    engine = sqlalchemy.create_engine(make_database(template=template_database), pool_size=1)
    yield engine
    engine.dispose()


_AN_EVENT: dict[str, Any] = {
    "model_name": "m",
    "method": None,
    "cell_count": 1,
    "event": "STARTED",
    "request_id": "r",
}


def _user_and_key(conn: Connection) -> tuple[users.User, keys.UserKey]:
    user = users.create_user(conn, email=f"{uuid.uuid4()}@cas.org", username="prepared")
    return user, keys.create_user_key(conn, user_id=user.id, key_hash="$argon2id$x")


def _plain_user(conn: Connection, user_id: int) -> users.User:
    row = conn.execute(users.build_select_users().where(users_user.c.id == user_id)).one()
    return users.User(**row._mapping)


def test_hot_operations_are_prepared_once_and_equal_the_plain_path(engine: Engine) -> None:
    with rolled_back(engine) as conn:
        user, key = _user_and_key(conn)
        before = _driver.prepared_count(conn)
        for _ in range(3):
            assert users.get_user(conn, user_id=user.id) == user == _plain_user(conn, user.id)
            assert users.get_user_by_email(conn, email=user.email) == user
            found = keys.get_key_for_authentication(conn, key_locator=key.key_locator)
            assert found.key == key and found.user_active is True
            assert found.key_hash == conn.execute(select(keys.users_userkey.c.key_hash)).scalar()
        assert _driver.prepared_count(conn) == before + 3  # three statements, prepared once
        with pytest.raises(NotFound):
            users.get_user(conn, user_id=2**31 - 1)
        with pytest.raises(NotFound):
            users.get_user_by_email(conn, email="nobody@cas.org")


def test_the_cache_is_bounded(own_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_driver, "PREPARED_PER_CONNECTION", 2)
    with rolled_back(own_engine) as conn:
        user, key = _user_and_key(conn)
        for _ in range(2):
            assert users.get_user(conn, user_id=user.id) == user
            assert users.get_user_by_email(conn, email=user.email) == user
            assert keys.get_key_for_authentication(conn, key_locator=key.key_locator).key == key
            assert _driver.prepared_count(conn) == 2
        prepared = conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar()
        assert prepared == 2  # evicted statements are closed on the server too


def test_the_cache_goes_with_an_invalidated_connection(own_engine: Engine) -> None:
    with own_engine.begin() as conn:
        user, _key = _user_and_key(conn)
    with own_engine.connect() as conn:
        assert users.get_user(conn, user_id=user.id) == user
        assert _driver.prepared_count(conn) == 1
        conn.invalidate()
        conn.rollback()
        assert users.get_user(conn, user_id=user.id) == user  # a new session: prepared anew
        assert _driver.prepared_count(conn) == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar() == 1


def test_a_table_changed_under_a_prepared_statement(own_engine: Engine) -> None:
    with own_engine.begin() as conn:
        user, _key = _user_and_key(conn)
    with own_engine.connect() as conn:
        assert users.get_user(conn, user_id=user.id) == user  # prepared
        conn.rollback()
        with own_engine.connect() as other, other.begin():
            other.exec_driver_sql("ALTER TABLE users_user ALTER COLUMN username TYPE text")
        # First statement of its transaction: prepared again and run once more.
        assert users.get_user(conn, user_id=user.id) == user
        conn.commit()
        with own_engine.connect() as other, other.begin():
            other.exec_driver_sql("ALTER TABLE users_user ALTER COLUMN username TYPE varchar(255)")
        # Mid-transaction the error is raised (the transaction is aborted, as by any error);
        # after a rollback the next call prepares afresh.
        conn.exec_driver_sql("SELECT 1")
        with pytest.raises(DatabaseError, match="cached plan"):
            users.get_user(conn, user_id=user.id)
        conn.rollback()
        assert users.get_user(conn, user_id=user.id) == user
        conn.commit()
        # On AUTOCOMMIT it is always retried.
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        with own_engine.connect() as other, other.begin():
            other.exec_driver_sql("ALTER TABLE users_user ALTER COLUMN username TYPE text")
        assert users.get_user_by_email(auto, email=user.email) == user
        assert users.get_user(auto, user_id=user.id) == user


# --------------------------------------------------------------------------------------------
# Every hot operation: the same results as plain SQLAlchemy, one statement a call
# --------------------------------------------------------------------------------------------


def _plainly(connection: Connection, prepared: Prepared) -> list[Any]:
    """A Prepared statement run the plain way: its builder's statement, SQLAlchemy's execute."""
    statement = prepared.build(*prepared.shape)
    return list(connection.execute(statement, dict(prepared.values)).all())


@contextlib.contextmanager
def _plain_path() -> Iterator[None]:
    prepared_path = _rows._run_prepared
    _rows._run_prepared = _plainly  # type: ignore[assignment]
    try:
        yield
    finally:
        _rows._run_prepared = prepared_path


def _both_ways(call: Callable[[], Any]) -> tuple[Any, Any]:
    """``call()`` on the prepared path, then on the plain one: (result or error, ditto)."""
    outcomes = []
    for path in (contextlib.nullcontext, _plain_path):
        with path():
            try:
                outcomes.append(call())
            except CasdbError as error:
                outcomes.append((type(error), str(error)))
    return outcomes[0], outcomes[1]


_NOW = st.datetimes(
    min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    user=strategies.users(),
    events=st.lists(
        strategies.activities(user_id=0).map(
            lambda a: {k: v for k, v in a.items() if k != "user_id"}
        ),
        max_size=4,
    ),
    model=strategies.models(),
    indexes=st.integers(0, 2),
    now=_NOW,
)
def test_every_hot_operation_equals_the_plain_path(
    engine: Engine,
    user: dict[str, Any],
    events: list[dict[str, Any]],
    model: dict[str, Any],
    indexes: int,
    now: dt.datetime,
) -> None:
    with rolled_back(engine) as conn:
        created = users.create_user(conn, **user)
        key = keys.create_user_key(conn, user_id=created.id, key_hash="$argon2id$h")
        made = make_model(conn, indexes=indexes, **model)
        if indexes:
            ml_models.set_default_model(conn, model_id=made.id)
        for logged in events:
            log = functools.partial(activity.log_user_activity, conn, **logged)
            on_prepared, on_plain = _both_ways(functools.partial(log, user_id=created.id))
            assert attrs.evolve(on_prepared, id=0) == attrs.evolve(on_plain, id=0)
        calls: list[Callable[[], Any]] = [
            lambda: users.get_user(conn, user_id=created.id),
            lambda: users.get_user_by_email(conn, email=created.email),
            lambda: keys.get_key_for_authentication(conn, key_locator=key.key_locator),
            lambda: quotas.get_user_quota(conn, user_id=created.id, now=now),
            lambda: quotas.cells_processed_this_week(conn, user_id=created.id, now=now),
            lambda: ml_models.get_model_by_name(conn, model_name=made.model_name),
            lambda: ml_models.get_default_model(conn),
            # and their NotFound
            lambda: users.get_user(conn, user_id=created.id + 1),
            lambda: quotas.get_user_quota(conn, user_id=created.id + 1, now=now),
            lambda: ml_models.get_model_by_name(conn, model_name=made.model_name + "x"),
            lambda: activity.log_user_activity(conn, **_AN_EVENT, user_id=created.id + 1),
        ]
        for call in calls:
            on_prepared, on_plain = _both_ways(call)
            assert on_prepared == on_plain


def test_each_hot_operation_sends_one_statement_and_is_prepared_once(own_engine: Engine) -> None:
    with rolled_back(own_engine) as conn:
        _one_statement_each(conn)


def _one_statement_each(conn: Connection) -> None:
    made = make_model(conn, indexes=2)
    ml_models.set_default_model(conn, model_id=made.id)
    user, key = _user_and_key(conn)
    now = dt.datetime.now(dt.UTC)
    calls: list[Callable[[], Any]] = [
        lambda: users.get_user(conn, user_id=user.id),
        lambda: users.get_user_by_email(conn, email=user.email),
        lambda: keys.get_key_for_authentication(conn, key_locator=key.key_locator),
        lambda: activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id),
        lambda: activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id, finished_time=now),
        lambda: quotas.get_user_quota(conn, user_id=user.id, now=now),
        lambda: ml_models.get_default_model(conn),
        lambda: ml_models.get_model_by_name(conn, model_name=made.model_name),
    ]
    for round_ in range(3):
        for call in calls:
            with statements_sent(conn) as sent:
                call()
            assert len(sent) == 1, (round_, sent)
    assert _driver.prepared_count(conn) == len(calls) == _server_statements(conn)  # each once


# --------------------------------------------------------------------------------------------
# What real databases do to a cache
# --------------------------------------------------------------------------------------------


def _backend_pid(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _server_statements(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar_one())


@contextlib.contextmanager
def _through_a_proxy(engine: Engine) -> Iterator[tuple[FaultProxy, Engine]]:
    """A fault proxy in front of ``engine``'s server, and a pool of one through it."""
    with fault_proxy(engine.url) as proxy:
        proxied = sqlalchemy.create_engine(proxy.url(engine.url), pool_size=1)
        try:
            yield proxy, proxied
        finally:
            proxied.dispose()


def test_a_reset_connection_takes_its_cache_along(own_engine: Engine) -> None:
    with own_engine.begin() as conn:
        user, _key = _user_and_key(conn)
    with _through_a_proxy(own_engine) as (proxy, proxied):
        with proxied.connect() as conn:
            assert users.get_user(conn, user_id=user.id) == user
            first_pid = _backend_pid(conn)
            conn.rollback()
            proxy.reset()
            with pytest.raises(DatabaseError) as raised:
                users.get_user(conn, user_id=user.id)
            assert raised.value.retryable and conn.invalidated
            conn.rollback()
            assert users.get_user(conn, user_id=user.id) == user  # prepared on the new one
            assert _backend_pid(conn) != first_pid
            assert _driver.prepared_count(conn) == 1 == _server_statements(conn)


def test_a_terminated_session_takes_its_cache_along(own_engine: Engine) -> None:
    with own_engine.begin() as conn:
        user, _key = _user_and_key(conn)
    with own_engine.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        assert users.get_user(auto, user_id=user.id) == user
        pid = _backend_pid(auto)
        with own_engine.connect() as other:
            other.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DatabaseError) as raised:
            users.get_user(auto, user_id=user.id)
        assert raised.value.retryable and auto.invalidated
        auto.rollback()
        assert users.get_user(auto, user_id=user.id) == user
        assert _driver.prepared_count(auto) == 1 == _server_statements(auto)


def test_statements_deallocated_behind_casdb_are_prepared_again(own_engine: Engine) -> None:
    with own_engine.begin() as conn:
        user, _key = _user_and_key(conn)
    with own_engine.connect() as conn:
        assert users.get_user(conn, user_id=user.id) == user
        conn.exec_driver_sql("DEALLOCATE ALL")  # what a pooler's DISCARD ALL does too
        conn.commit()
        assert users.get_user(conn, user_id=user.id) == user  # first of its transaction
        conn.exec_driver_sql("DEALLOCATE ALL")
        with pytest.raises(DatabaseError, match="does not exist"):  # mid-transaction
            users.get_user(conn, user_id=user.id)
        conn.rollback()
        assert users.get_user(conn, user_id=user.id) == user
        conn.commit()
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        auto.exec_driver_sql("DISCARD ALL")
        assert users.get_user(auto, user_id=user.id) == user
        assert _server_statements(auto) == 1


def test_a_changed_table_mid_transaction_is_a_retryable_error(own_engine: Engine) -> None:
    with own_engine.begin() as conn:
        user, _key = _user_and_key(conn)
    with own_engine.connect() as conn:
        activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id)
        conn.commit()
        with own_engine.connect() as other, other.begin():
            other.exec_driver_sql("ALTER TABLE users_useractivity ALTER COLUMN method TYPE text")
        conn.exec_driver_sql("SELECT 1")
        with pytest.raises(DatabaseError, match="cached plan") as raised:
            activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id)
        assert raised.value.retryable and raised.value.sqlstate == "0A000"
        conn.rollback()  # the caller's retry of the transaction succeeds
        logged = activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id)
        conn.commit()
    with own_engine.connect() as other:
        assert activity.list_user_activity(other, user_id=user.id)[-1] == logged


def test_transactions_in_any_state(own_engine: Engine) -> None:
    with own_engine.begin() as conn:
        user, _key = _user_and_key(conn)

    def logged_elsewhere() -> int:
        with own_engine.connect() as other:
            return len(activity.list_user_activity(other, user_id=user.id))

    with own_engine.connect() as conn:
        # Rolled back and committed as the caller says (pg8000's BEGIN before the statement).
        activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id)
        conn.rollback()
        assert logged_elsewhere() == 0
        activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id)
        assert logged_elsewhere() == 0
        conn.commit()
        assert logged_elsewhere() == 1
        # An aborted transaction: the server's error, the cache and the session kept.
        assert users.get_user(conn, user_id=user.id) == user
        statements = _driver.prepared_count(conn)
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            conn.exec_driver_sql("SELECT 1/0")
        with pytest.raises(DatabaseError) as raised:
            users.get_user(conn, user_id=user.id)
        assert raised.value.sqlstate == "25P02" and not conn.invalidated
        conn.rollback()
        assert users.get_user(conn, user_id=user.id) == user
        assert _driver.prepared_count(conn) == statements == _server_statements(conn)
        # A savepoint rolled back undoes the write and keeps the transaction usable.
        with conn.begin_nested() as savepoint:
            activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id)
            savepoint.rollback()
        assert users.get_user(conn, user_id=user.id) == user
        conn.commit()
        assert logged_elsewhere() == 1
        # NotFound from a prepared statement leaves the transaction usable.
        with pytest.raises(NotFound):
            activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id + 1)
        activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id)
        conn.commit()
        assert logged_elsewhere() == 2
        # A READ ONLY transaction refuses the write as the server does, and reads still work.
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        with pytest.raises(DatabaseError) as raised:
            activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id)
        assert raised.value.sqlstate == "25006"
        conn.rollback()
        assert users.get_user(conn, user_id=user.id) == user
        conn.rollback()
    with own_engine.connect() as conn:
        # AUTOCOMMIT: committed when it returns.
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        activity.log_user_activity(auto, **_AN_EVENT, user_id=user.id)
        assert logged_elsewhere() == 3


def test_one_round_trip_a_call_even_first_in_a_transaction(own_engine: Engine) -> None:
    with own_engine.begin() as conn:
        user, key = _user_and_key(conn)
    with _through_a_proxy(own_engine) as (proxy, proxied):
        with proxied.connect() as conn:
            calls: list[Callable[[], Any]] = [
                lambda: users.get_user(conn, user_id=user.id),
                lambda: keys.get_key_for_authentication(conn, key_locator=key.key_locator),
                lambda: activity.log_user_activity(conn, **_AN_EVENT, user_id=user.id),
            ]
            for call in calls:  # prepared (one round trip more each, once)
                call()
            conn.rollback()
            for first_of_transaction in (True, False, True):
                for call in calls:
                    if first_of_transaction:
                        conn.rollback()
                    time.sleep(0.05)  # the proxy has forwarded the last reply
                    before = proxy.round_trips
                    call()
                    time.sleep(0.05)
                    assert proxy.round_trips - before == 1, (call, first_of_transaction)
            conn.rollback()
        with own_engine.connect() as other:  # the rolled-back writes are gone
            assert len(activity.list_user_activity(other, user_id=user.id)) == 0
