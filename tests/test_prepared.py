"""The per-connection prepared-statement cache of the hot small operations (issue 12).

get_user, get_user_by_email and get_key_for_authentication run as statements prepared once
per server connection: the same records as plain SQLAlchemy, a bounded cache that goes with
the connection when it is invalidated, and a table changed under a prepared statement (a
migration) is survived.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy
from sqlalchemy import URL, Connection, Engine, select

from casdb import DatabaseError, NotFound, _driver
from casdb.queries import keys, users
from casdb.tables import users_user
from tests.conftest import rolled_back


@pytest.fixture
def own_engine(make_database: Callable[..., URL], template_database: str) -> Iterator[Engine]:
    """A database of its own (its table is altered by some tests)."""
    engine = sqlalchemy.create_engine(make_database(template=template_database), pool_size=1)
    yield engine
    engine.dispose()


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
