"""casdb.testing: rollback connections, temporary databases, factories."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import sqlalchemy
from argon2 import PasswordHasher
from sqlalchemy import URL, Connection, Engine, func, select, text
from sqlalchemy.orm import Session

import casdb
from casdb import ConfigurationError, NotFound
from casdb.migrate import current_revisions, head_revision
from casdb.queries import cells, keys, ml_models, users
from casdb.tables import users_user
from casdb.testing import (
    Factory,
    RollbackConnection,
    TemporaryDatabases,
    make_ingest,
    make_key,
    make_model,
    make_user,
    rolled_back,
    statements_sent,
    url_from_environment,
)


def _count_users(engine: Engine) -> int:
    with engine.connect() as other:
        return int(other.execute(select(func.count()).select_from(users_user)).scalar_one())


def _emails(conn: Connection) -> list[str]:
    return list(conn.execute(select(users_user.c.email).order_by(users_user.c.id)).scalars())


# -- RollbackConnection: the code under test may commit, roll back, begin ---------------------


def test_a_commit_by_the_code_under_test_is_rolled_back_after_the_test(engine: Engine) -> None:
    with rolled_back(engine) as conn:
        users.create_user(conn, email="kept@cas.org", username="K")
        conn.commit()
        assert _emails(conn) == ["kept@cas.org"]  # still visible here after the commit
        assert _count_users(engine) == 0  # never on another connection
    assert _count_users(engine) == 0


def test_rollback_returns_to_the_last_commit(conn: RollbackConnection) -> None:
    users.create_user(conn, email="first@cas.org", username="F")
    conn.commit()
    users.create_user(conn, email="second@cas.org", username="S")
    conn.rollback()
    assert _emails(conn) == ["first@cas.org"]
    users.create_user(conn, email="third@cas.org", username="T")
    assert _emails(conn) == ["first@cas.org", "third@cas.org"]


def test_begin_blocks_commit_or_roll_back_on_their_own(conn: RollbackConnection) -> None:
    with conn.begin():
        users.create_user(conn, email="in-block@cas.org", username="B")
    with pytest.raises(RuntimeError), conn.begin():
        users.create_user(conn, email="undone@cas.org", username="U")
        raise RuntimeError("the code under test failed")
    assert _emails(conn) == ["in-block@cas.org"]


def test_after_a_database_error_rollback_makes_the_connection_usable(
    conn: RollbackConnection,
) -> None:
    users.create_user(conn, email="before@cas.org", username="B")
    conn.commit()
    with pytest.raises(sqlalchemy.exc.DBAPIError):
        conn.execute(text("SELECT 1 / 0"))
    conn.rollback()
    assert _emails(conn) == ["before@cas.org"]
    # A commit of the failed transaction rolls it back, as PostgreSQL's COMMIT does.
    users.create_user(conn, email="lost@cas.org", username="L")
    with pytest.raises(sqlalchemy.exc.DBAPIError):
        conn.execute(text("SELECT 1 / 0"))
    conn.commit()
    assert _emails(conn) == ["before@cas.org"]


def test_savepoints_left_open_end_with_the_commit(conn: RollbackConnection) -> None:
    conn.begin_nested()
    users.create_user(conn, email="nested@cas.org", username="N")
    conn.begin_nested()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conn.commit()
    assert conn.get_nested_transaction() is None
    conn.rollback()
    assert _emails(conn) == ["nested@cas.org"]


def test_casdb_bulk_operations_run_on_it(conn: RollbackConnection) -> None:
    cells.create_ingest(conn, cas_ingest_id="ing", dataset_id="d")
    rows = [{"cas_cell_index": n, "cas_ingest_id": "ing", "cell_type": "T"} for n in range(50)]
    assert cells.insert_cells(conn, rows=rows) == 50
    conn.commit()
    conn.rollback()
    assert cells.count_cells(conn, cas_ingest_id="ing") == 50


def test_an_orm_session_joins_with_create_savepoint(engine: Engine) -> None:
    with rolled_back(engine) as conn:
        with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
            session.execute(users_user.insert().values(email="orm@cas.org", username="O"))
            session.commit()
            session.execute(users_user.insert().values(email="orm2@cas.org", username="O"))
            session.rollback()
        assert _emails(conn) == ["orm@cas.org"]
    assert _count_users(engine) == 0


def test_a_broken_connection_recovers_on_rollback(engine: Engine) -> None:
    with rolled_back(engine) as conn:
        users.create_user(conn, email="gone@cas.org", username="G")
        conn.invalidate()
        conn.rollback()
        assert _emails(conn) == []
        users.create_user(conn, email="after@cas.org", username="A")
        assert _emails(conn) == ["after@cas.org"]
    assert _count_users(engine) == 0


def test_statements_sent_sees_the_savepoint_statements(conn: RollbackConnection) -> None:
    with statements_sent(conn) as sent:
        conn.commit()
        conn.rollback()
    assert sent == [
        "RELEASE SAVEPOINT casdb_testing_savepoint",
        "SAVEPOINT casdb_testing_savepoint",
        "ROLLBACK TO SAVEPOINT casdb_testing_savepoint",
    ]


def test_casdb_environment_points_casdb_create_engine_at_the_module_database(
    casdb_environment: str, casdb_engine: Engine
) -> None:
    own = casdb.create_engine()
    try:
        assert own.url.database == casdb_engine.url.database
        assert casdb_environment == casdb_engine.url.render_as_string(hide_password=False)
        with own.connect() as connection:
            assert current_revisions(connection) == (head_revision(),)
    finally:
        own.dispose()


# -- TemporaryDatabases -------------------------------------------------------------------


@pytest.fixture
def databases(server_url: URL) -> Iterator[TemporaryDatabases]:
    made = TemporaryDatabases(server_url, prefix="casdb_kit")
    yield made
    made.drop_all()


def _database_names(server_url: URL) -> set[str]:
    engine = sqlalchemy.create_engine(server_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as admin:
            return set(admin.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def test_databases_are_migrated_clones_and_all_dropped(
    server_url: URL, databases: TemporaryDatabases
) -> None:
    first, second = databases.migrated(), databases.migrated()
    empty = databases.create()
    for url, expected in ((first, (head_revision(),)), (second, (head_revision(),)), (empty, ())):
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as connection:
            assert current_revisions(connection) == expected
        engine.dispose()
    names = {first.database, second.database, empty.database, databases.template}
    assert names <= _database_names(server_url)
    databases.drop(first)
    assert first.database not in _database_names(server_url)
    databases.drop_all()
    assert not names & _database_names(server_url)


def test_a_user_without_createdb_gets_a_clear_error(server_url: URL) -> None:
    engine = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as admin:
            try:
                admin.exec_driver_sql(
                    "CREATE ROLE casdb_kit_nocreatedb LOGIN NOCREATEDB PASSWORD 'kit-pw'"
                )
            except sqlalchemy.exc.DBAPIError:
                pytest.skip("the test server's user cannot create roles")
        limited = TemporaryDatabases(
            server_url.set(username="casdb_kit_nocreatedb", password="kit-pw")
        )
        with pytest.raises(ConfigurationError, match="CREATEDB"):
            limited.create()
    finally:
        with engine.connect() as admin:
            admin.exec_driver_sql("DROP ROLE IF EXISTS casdb_kit_nocreatedb")
        engine.dispose()


def test_the_environment_url_is_checked_and_never_shows_its_password() -> None:
    assert url_from_environment({}) is None
    assert url_from_environment({"CASDB_TEST_DATABASE_URL": " "}) is None
    url = url_from_environment({"CASDB_TEST_DATABASE_URL": "postgresql://u:s3cr%40t@db:6543/x"})
    assert url is not None
    assert (url.drivername, url.password, url.host, url.port) == (
        "postgresql+pg8000",
        "s3cr@t",
        "db",
        6543,
    )
    for bad in ("not a url", "sqlite:///x.db", "mysql://u:s3cret@h/x"):
        with pytest.raises(ConfigurationError) as raised:
            url_from_environment({"CASDB_TEST_DATABASE_URL": bad})
        assert "s3cret" not in str(raised.value)


def test_an_unreachable_server_is_a_configuration_error_without_the_password() -> None:
    unreachable = URL.create(
        "postgresql+pg8000", username="u", password="s3cret", host="127.0.0.1", port=1, database="x"
    )
    with pytest.raises(ConfigurationError) as raised:
        TemporaryDatabases(unreachable).create()
    assert "s3cret" not in str(raised.value) and "127.0.0.1" in str(raised.value)


# -- factories ------------------------------------------------------------------------------


def test_user_factory_makes_distinct_valid_users(conn: RollbackConnection) -> None:
    first, second = make_user(conn), make_user(conn, is_admin=True, cell_quota=5)
    assert first.email != second.email
    assert (second.is_admin, second.cell_quota) == (True, 5)
    assert users.list_users(conn) == [first, second]


def test_key_factory_makes_a_token_the_cas_api_verifies(conn: RollbackConnection) -> None:
    issued = make_key(conn)
    locator, secret = issued.token.split(".")
    assert locator == str(issued.key.key_locator) and secret == issued.secret
    stored = keys.get_key_for_authentication(conn, key_locator=locator)
    assert stored.user_active and stored.key.active
    assert PasswordHasher().verify(stored.key_hash, secret)
    assert stored.key_hash.startswith("$argon2id$")
    assert issued.secret not in repr(issued) and issued.token not in repr(issued)
    user = make_user(conn)
    off = make_key(conn, user_id=user.id, active=False)
    assert keys.list_user_keys(conn, user_id=user.id) == [off.key] and not off.key.active


def test_model_factory_makes_a_model_with_its_indexes(conn: RollbackConnection) -> None:
    model = make_model(conn, indexes=3, embedding_dimension=64)
    assert len(model.indexes) == 3 and model.embedding_dimension == 64
    assert ml_models.get_model_by_name(conn, model_name=model.model_name) == model
    assert [index.model_id for index in model.indexes] == [model.id] * 3
    assert make_model(conn, indexes=0).indexes == ()


def test_ingest_factory_makes_cells_and_features(conn: RollbackConnection) -> None:
    first = make_ingest(conn, cells=25, features=4)
    second = make_ingest(conn, cells=5, features=0, cell_fields={"tissue": None})
    assert cells.count_cells(conn, cas_ingest_id=first.ingest.cas_ingest_id) == 25
    assert len(cells.list_features_for_ingest(conn, cas_ingest_id=first.ingest.cas_ingest_id)) == 4
    assert not set(first.cell_ids) & set(second.cell_ids)
    found = cells.get_cell_metadata_by_ids(conn, cell_ids=second.cell_ids, columns=["tissue"])
    assert [cell.values["tissue"] for cell in found] == [None] * 5


def test_factory_fixture_binds_the_factories(
    casdb_factory: Factory, casdb_connection: RollbackConnection
) -> None:
    assert casdb_factory.connection is casdb_connection
    user = casdb_factory.user()
    key = casdb_factory.key(user_id=user.id)
    assert keys.list_user_keys(casdb_connection, user_id=user.id) == [key.key]
    assert len(casdb_factory.model(indexes=2).indexes) == 2
    assert len(casdb_factory.ingest(cells=3).cells) == 3


def test_errors_of_the_factories_are_casdb_errors(conn: RollbackConnection) -> None:
    with pytest.raises(NotFound):
        make_key(conn, user_id=999_999)
