"""Hostile input: any value for any argument of a public operation ends in success or a casdb
error — never a driver exception, never a hang — and an error leaves the database unchanged."""

from __future__ import annotations

import datetime as dt
import inspect
import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from casdb import CasdbError, UserActivityEvent
from casdb.queries import activity, cells, keys, ml_models, quotas, users
from casdb.tables import metadata
from tests.conftest import rolled_back
from tests.strategies import aware_times, emails, nonempty255

SQL_INJECTION = "'; drop table users_user; --"
TEN_MB = "x" * (10 * 1024 * 1024)

hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, -1, 10**100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(math.nan),
    st.text(),
    st.text(st.sampled_from("\x00\t\n\\'\"%;")),
    st.just(SQL_INJECTION),
    st.just(TEN_MB),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.uuids(),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.sampled_from(["SUCCEEDED", "succeeded", "id", "cell_type; --"]),
)


def _arg(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, hostile)


def _checksum(conn: Connection) -> dict[str, str]:
    sums = {}
    for table in metadata.sorted_tables:
        sums[table.name] = conn.execute(text(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "  # noqa: S608
            f"FROM {table.name} t"
        )).scalar_one()
    return sums


USER_ID = st.shared(st.integers(1, 3), key="user")  # ids of the users the test creates
MODEL_ID = st.integers(1, 3)  # ids of the models the test creates
INGEST_ID = st.sampled_from(["ing-0", "ing-1", "ing-2", "ing-9"])  # the test creates 0-2
counts = st.integers(0, 2**31 - 1)

# operation -> strategies of its keyword arguments (valid values mixed with hostile ones)
OPERATIONS: dict[str, tuple[Callable[..., Any], dict[str, st.SearchStrategy[Any]]]] = {
    "create_user": (users.create_user, {
        "email": _arg(emails), "username": _arg(nonempty255), "cell_quota": _arg(counts),
        "lifetime_cell_quota": _arg(st.none() | counts), "created_at": _arg(aware_times),
        "is_admin": _arg(st.booleans()),
    }),
    "get_user": (users.get_user, {"user_id": _arg(USER_ID)}),
    "get_user_by_email": (users.get_user_by_email, {"email": _arg(emails)}),
    "set_user_active": (users.set_user_active, {"user_id": _arg(USER_ID),
                                                "active": _arg(st.booleans())}),
    "set_admin": (users.set_admin, {"user_id": _arg(USER_ID), "is_admin": _arg(st.booleans())}),
    "opt_out_of_feedback": (users.opt_out_of_feedback, {"user_id": _arg(USER_ID)}),
    "increase_lifetime_quota": (users.increase_lifetime_quota, {
        "user_id": _arg(USER_ID), "new_quota": _arg(st.none() | counts)}),
    "get_user_usage": (users.get_user_usage, {"user_id": _arg(USER_ID)}),
    "get_user_with_usage": (users.get_user_with_usage, {"user_id": _arg(USER_ID)}),
    "log_user_activity": (activity.log_user_activity, {
        "user_id": _arg(USER_ID), "model_name": _arg(nonempty255),
        "method": _arg(st.none() | nonempty255), "cell_count": _arg(counts),
        "event": _arg(st.sampled_from(UserActivityEvent)),
        "request_id": _arg(st.none() | nonempty255), "finished_time": _arg(aware_times),
    }),
    "list_user_activity": (activity.list_user_activity, {
        "user_id": _arg(USER_ID), "since": _arg(st.none() | aware_times)}),
    "cells_processed_this_week": (quotas.cells_processed_this_week, {
        "user_id": _arg(USER_ID), "now": _arg(aware_times)}),
    "get_user_quota": (quotas.get_user_quota, {"user_id": _arg(USER_ID),
                                               "now": _arg(aware_times)}),
    "create_user_key": (keys.create_user_key, {
        "user_id": _arg(USER_ID), "key_hash": _arg(nonempty255),
        "expires": _arg(st.none() | aware_times), "key_locator": _arg(st.none() | st.uuids()),
    }),
    "get_key_for_authentication": (keys.get_key_for_authentication, {
        "key_locator": _arg(st.uuids())}),
    "deactivate_user_key": (keys.deactivate_user_key, {"key_locator": _arg(st.uuids())}),
    "list_user_keys": (keys.list_user_keys, {"user_id": _arg(USER_ID)}),
    "create_model": (ml_models.create_model, {
        "model_name": _arg(nonempty255), "model_file_path": _arg(nonempty255),
        "embedding_dimension": _arg(st.integers(1, 2**31 - 1)),
        "description": _arg(st.none() | nonempty255), "admin_use_only": _arg(st.booleans()),
        "is_default_model": _arg(st.booleans()),
    }),
    "list_models": (ml_models.list_models, {"include_admin_only": _arg(st.booleans())}),
    "get_model_by_name": (ml_models.get_model_by_name, {"model_name": _arg(nonempty255)}),
    "set_default_model": (ml_models.set_default_model, {"model_id": _arg(MODEL_ID)}),
    "create_matching_engine_index": (ml_models.create_matching_engine_index, {
        "index_name": _arg(nonempty255), "embedding_dimension": _arg(st.integers(1, 512)),
        "endpoint_id": _arg(nonempty255), "num_neighbors": _arg(st.integers(1, 100)),
        "model_id": _arg(MODEL_ID), "deployed_index_id": _arg(st.none() | nonempty255),
    }),
    "get_index_by_name": (ml_models.get_index_by_name, {"index_name": _arg(nonempty255)}),
    "list_indexes_for_model": (ml_models.list_indexes_for_model, {"model_id": _arg(MODEL_ID)}),
    "create_ingest": (cells.create_ingest, {
        "cas_ingest_id": _arg(INGEST_ID), "dataset_id": _arg(nonempty255),
        "uns_metadata": _arg(st.none() | st.dictionaries(st.text(max_size=5), st.integers())),
        "ingest_timestamp": _arg(st.none() | aware_times),
    }),
    "get_ingest": (cells.get_ingest, {"cas_ingest_id": _arg(INGEST_ID)}),
    "delete_ingest": (cells.delete_ingest, {"cas_ingest_id": _arg(INGEST_ID)}),
    "count_cells": (cells.count_cells, {"cas_ingest_id": _arg(st.none() | INGEST_ID)}),
    "list_features_for_ingest": (cells.list_features_for_ingest, {
        "cas_ingest_id": _arg(INGEST_ID)}),
    "insert_cells": (cells.insert_cells, {"rows": _arg(st.lists(st.fixed_dictionaries({
        "cas_cell_index": _arg(st.integers(1, 10)), "cas_ingest_id": _arg(INGEST_ID),
        "cell_type": _arg(nonempty255), "total_mrna_umis": _arg(st.none() | counts),
        "obs_metadata_extra": _arg(st.dictionaries(st.text(max_size=5), hostile, max_size=2)),
    }), max_size=4))}),
    "insert_features": (cells.insert_features, {"rows": _arg(st.lists(st.fixed_dictionaries({
        "cas_feature_index": _arg(st.integers(1, 10)), "cas_ingest_id": _arg(INGEST_ID),
        "original_feature_id": _arg(nonempty255), "feature_name": _arg(nonempty255),
    }), max_size=4))}),
    "get_cell_metadata_by_ids": (cells.get_cell_metadata_by_ids, {
        "cell_ids": _arg(st.lists(st.integers(0, 12), max_size=6)),
        "columns": _arg(st.none() | st.lists(st.sampled_from(
            ["cell_type", "tissue", "obs_metadata_extra", "nope", "cell_type; --"]), max_size=3)),
    }),
    "iter_cell_metadata_by_ids": (cells.iter_cell_metadata_by_ids, {
        "cell_ids": _arg(st.lists(st.integers(0, 12), max_size=6)),
        "columns": _arg(st.none() | st.lists(st.sampled_from(
            ["cell_type", "tissue", "obs_metadata_extra", "nope", "cell_type; --"]), max_size=3)),
    }),
}


def run_hostile(engine: Engine, operation: Callable[..., Any], kwargs: dict[str, Any],
                setup: Callable[[Connection], None]) -> None:
    """Call ``operation``; on a casdb error the database must be exactly as before."""
    with rolled_back(engine) as conn:
        setup(conn)
        before = _checksum(conn)
        try:
            result = operation(conn, **kwargs)
            if isinstance(result, Iterator):  # a lazy operation runs as it is consumed
                list(result)
        except CasdbError:
            # The caller's transaction is still usable and holds nothing new.
            assert _checksum(conn) == before


def _three_of_each(conn: Connection) -> None:
    for n in range(3):
        cells.create_ingest(conn, cas_ingest_id=f"ing-{n}", dataset_id="d")
        cells.insert_cells(conn, rows=[{"cas_cell_index": 3 * n + k + 1,
                                        "cas_ingest_id": f"ing-{n}", "cell_type": "T"}
                                       for k in range(3)])
        cells.insert_features(conn, rows=[{"cas_feature_index": n + 1,
                                           "cas_ingest_id": f"ing-{n}",
                                           "original_feature_id": "f", "feature_name": "F"}])
    conn.execute(text("SELECT setval('users_user_id_seq', 1, false)"))
    conn.execute(text("SELECT setval('ml_management_model_id_seq', 1, false)"))
    for n in range(3):
        model = ml_models.create_model(conn, model_name=f"m{n}", model_file_path="gs://m",
                                       embedding_dimension=8, is_default_model=n == 0)
        ml_models.create_matching_engine_index(conn, index_name=f"i{n}", embedding_dimension=8,
                                               endpoint_id="e", num_neighbors=5,
                                               model_id=model.id, deployed_index_id=f"d{n}")
    for n in range(3):
        user = users.create_user(conn, email=f"u{n}@cas.org", username=f"u{n}")
        keys.create_user_key(conn, user_id=user.id, key_hash="h",
                             key_locator=uuid.UUID(int=n + 1))
        activity.log_user_activity(conn, user_id=user.id, model_name="m", method=None,
                                   cell_count=5, event="SUCCEEDED", request_id="r",
                                   finished_time=dt.datetime(2024, 1, 2, tzinfo=dt.UTC))


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_operation_survives_hostile_input(engine: Engine, name: str) -> None:
    operation, arguments = OPERATIONS[name]

    @settings(max_examples=max(10, settings.default.max_examples // 2))
    @given(kwargs=st.fixed_dictionaries(arguments))
    def check(kwargs: dict[str, Any]) -> None:
        run_hostile(engine, operation, kwargs, _three_of_each)

    check()


def test_sql_fragments_are_data(conn: Connection) -> None:
    email = "x';drop_table_users_user;--@cas.org"
    user = users.create_user(conn, email=email, username=SQL_INJECTION)
    assert users.get_user_by_email(conn, email=email) == user
    assert user.username == SQL_INJECTION
    assert conn.execute(text("SELECT count(*) FROM users_user")).scalar_one() >= 1


def test_every_public_operation_with_arguments_is_covered() -> None:
    covered = {operation for operation, _ in OPERATIONS.values()}
    for module in (users, activity, quotas, keys, ml_models, cells):
        for name, function in vars(module).items():
            if (
                inspect.isfunction(function)
                and function.__module__ == module.__name__
                and not name.startswith(("_", "build_"))
                and next(iter(inspect.signature(function).parameters), None) == "connection"
                and len(inspect.signature(function).parameters) > 1
            ):
                assert function in covered, f"{module.__name__}.{name} has no hostile-input test"
