"""Every public operation, when the network fails under it, raises DatabaseError (retryable)
and leaves its connection invalidated: never a raw socket/driver/SQLAlchemy exception, never
a connection out of step with the server. Faults are real: a TCP proxy that resets."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Connection, Engine, text

from casdb import DatabaseError
from casdb.queries import activity, cells, keys, ml_models, quotas, users
from casdb.tables import metadata
from tests.faultproxy import FaultProxy, fault_proxy
from tests.test_hostile_input import consume, public_operations

NOW = dt.datetime(2024, 1, 10, tzinfo=dt.UTC)
LOCATOR = uuid.UUID(int=7)

# valid keyword arguments for every public operation (the rows they name may not exist)
ARGUMENTS: dict[Callable[..., Any], dict[str, Any]] = {
    users.create_user: {"email": "f@cas.org", "username": "f"},
    users.get_user: {"user_id": 1},
    users.get_user_by_email: {"email": "f@cas.org"},
    users.list_users: {},
    users.set_user_active: {"user_id": 1, "active": False},
    users.set_admin: {"user_id": 1, "is_admin": True},
    users.opt_out_of_feedback: {"user_id": 1},
    users.increase_lifetime_quota: {"user_id": 1, "new_quota": 10},
    users.get_user_usage: {"user_id": 1},
    users.get_user_with_usage: {"user_id": 1},
    activity.log_user_activity: {
        "user_id": 1,
        "model_name": "m",
        "method": None,
        "cell_count": 1,
        "event": "STARTED",
        "request_id": "r",
    },
    activity.list_user_activity: {"user_id": 1},
    quotas.cells_processed_this_week: {"user_id": 1, "now": NOW},
    quotas.get_user_quota: {"user_id": 1, "now": NOW},
    keys.create_user_key: {"user_id": 1, "key_hash": "h"},
    keys.get_key_for_authentication: {"key_locator": LOCATOR},
    keys.deactivate_user_key: {"key_locator": LOCATOR},
    keys.list_user_keys: {"user_id": 1},
    ml_models.create_model: {"model_name": "m", "model_file_path": "p", "embedding_dimension": 2},
    ml_models.list_models: {},
    ml_models.get_model_by_name: {"model_name": "m"},
    ml_models.get_default_model: {},
    ml_models.set_default_model: {"model_id": 1},
    ml_models.create_matching_engine_index: {
        "index_name": "i",
        "embedding_dimension": 2,
        "endpoint_id": "e",
        "num_neighbors": 1,
        "model_id": 1,
    },
    ml_models.get_index_by_name: {"index_name": "i"},
    ml_models.list_indexes_for_model: {"model_id": 1},
    cells.create_ingest: {"cas_ingest_id": "x", "dataset_id": "d"},
    cells.get_ingest: {"cas_ingest_id": "x"},
    cells.list_ingests: {},
    cells.delete_ingest: {"cas_ingest_id": "x"},
    cells.list_features_for_ingest: {"cas_ingest_id": "x"},
    cells.count_cells: {},
    cells.insert_cells: {"rows": [{"cas_cell_index": 1, "cas_ingest_id": "x", "cell_type": "T"}]},
    cells.insert_features: {
        "rows": [
            {
                "cas_feature_index": 1,
                "cas_ingest_id": "x",
                "original_feature_id": "f",
                "feature_name": "F",
            }
        ]
    },
    cells.get_cell_metadata_by_ids: {"cell_ids": [1, 2]},
}
ARGUMENTS.update(
    {
        users.set_weekly_cell_quota: {"user_id": 1, "cell_quota": 5},
        keys.issue_user_token: {"user_id": 1},
        keys.authenticate_token: {"token": f"{uuid.uuid4()}.{uuid.uuid4()}"},
        cells.reserve_indexes: {"table": "cells", "count": 2},
        cells.advance_index_sequence: {"table": "cells", "past": 10},
        cells.find_existing_indexes: {"table": "cells", "ids": [1]},
    }
)
OPERATIONS = public_operations()
ARGUMENTS[cells.iter_cell_metadata_by_ids] = {"cell_ids": [1, 2]}


def _call(operation: Callable[..., Any], conn: Connection) -> Any:
    return consume(operation(conn, **ARGUMENTS[operation]))


@pytest.fixture(scope="module")
def proxy(engine: Engine) -> Iterator[FaultProxy]:
    with fault_proxy(engine.url) as running:
        yield running


@pytest.fixture(scope="module")
def proxied(engine: Engine, proxy: FaultProxy) -> Iterator[Engine]:
    through = sqlalchemy.create_engine(proxy.url(engine.url), pool_size=1, max_overflow=0)
    yield through
    through.dispose()


def test_every_operation_is_listed() -> None:
    missing = [name for name, function in OPERATIONS if function not in ARGUMENTS]
    assert not missing


@pytest.mark.parametrize("when", ["idle", "waiting"])
@pytest.mark.parametrize("name", [name for name, _ in OPERATIONS])
def test_a_reset_is_a_retryable_database_error_and_drops_the_connection(
    engine: Engine, proxy: FaultProxy, proxied: Engine, name: str, when: str
) -> None:
    """``idle``: the link is reset before the call (its first send fails). ``waiting``: the
    call's statement waits for a lock when the link is reset (its read fails: pg8000 let
    that one out as a bare ConnectionResetError)."""
    operation = dict(OPERATIONS)[name]
    with proxied.connect() as conn, engine.connect() as holder:
        conn.begin()
        conn.execute(text("SELECT 1"))
        timer = None
        if when == "idle":
            proxy.reset()
        else:
            holder.begin()
            tables = ", ".join(table.name for table in metadata.sorted_tables)
            holder.execute(text(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"))
            # the id sequences, which the index operations use instead of a table: LOCK TABLE
            # refuses sequences, but an uncommitted ALTER SEQUENCE blocks nextval and setval
            for sequence in (
                "cells_cellinfo_cas_cell_index_seq",
                "cells_featureinfo_cas_feature_index_seq",
            ):
                holder.execute(text(f"ALTER SEQUENCE {sequence} CACHE 1"))
            timer = threading.Timer(0.3, proxy.reset)
            timer.start()
        try:
            with pytest.raises(DatabaseError) as raised:
                _call(operation, conn)
        finally:
            if timer is not None:
                timer.join()
            holder.rollback()
        assert raised.value.retryable
        assert conn.invalidated, "a connection that lost its link must not be reused"
        # the caller's next use of the same connection is a casdb error too
        with pytest.raises(DatabaseError):
            users.list_users(conn)
        conn.rollback()
    with proxied.connect() as conn:  # the pool hands out a fresh, working connection
        assert conn.execute(text("SELECT 2")).scalar_one() == 2


@pytest.mark.parametrize("name", [name for name, _ in OPERATIONS])
def test_a_closed_connection_is_a_database_error(engine: Engine, name: str) -> None:
    operation = dict(OPERATIONS)[name]
    conn = engine.connect()
    conn.close()
    with pytest.raises(DatabaseError, match="closed"):
        _call(operation, conn)


@pytest.mark.parametrize("name", [name for name, _ in OPERATIONS])
def test_an_aborted_transaction_is_a_database_error(engine: Engine, name: str) -> None:
    operation = dict(OPERATIONS)[name]
    with engine.connect() as conn:
        conn.begin()
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            conn.execute(text("SELECT 1 / 0"))
        with pytest.raises(DatabaseError) as raised:
            _call(operation, conn)
        assert raised.value.sqlstate == "25P02"  # in_failed_sql_transaction
        conn.rollback()
