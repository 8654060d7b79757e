"""Hostile input: any value for any argument of a public operation ends in success or a casdb
error — never a driver exception, never a hang — and an error leaves the database unchanged."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from casdb import CasdbError, InvalidInput, UserActivityEvent
from casdb.queries import activity, cells, keys, ml_models, quotas, users
from casdb.tables import metadata
from casdb.testing.strategies import hostile
from tests.conftest import rolled_back
from tests.strategies import aware_times, emails, nonempty255, statements_sent

SQL_INJECTION = "'; drop table users_user; --"


def _nested(depth: int, leaf: Callable[[Any], Any]) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = leaf(value)
    return value


class _BadOffset(dt.tzinfo):
    """A tzinfo whose utcoffset() raises, returns a non-timedelta, or one out of range."""

    def __init__(self, offset: Any) -> None:
        self.offset = offset

    def utcoffset(self, when: dt.datetime | None) -> Any:
        if isinstance(self.offset, BaseException):
            raise self.offset
        return self.offset

    def dst(self, when: dt.datetime | None) -> None:
        return None

    def __repr__(self) -> str:
        return f"_BadOffset({type(self.offset).__name__})"


class _LyingStr(str):
    """A str whose __str__ and __repr__ raise: only its characters may be used."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ of a hostile str")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ of a hostile str")


class _Int(int):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of a hostile int")


# Values that broke operations with raw exceptions (issue 10, defect 5): ints past Python's
# 4300-digit str limit, JSON that json.dumps cannot write, 5000-deep nesting, times at the
# ends of datetime, tzinfos with bad offsets, numpy scalars, hostile subclasses.
SPECIAL: list[Any] = [
    10**5000,
    -(10**5000),
    _Int(2),
    np.int64(2),
    np.int32(-1),
    np.bool_(True),
    np.float64(1.0),
    types.MappingProxyType({"a": 1}),
    {"a": 10**5000},
    _nested(5000, lambda inner: [inner]),
    _nested(5000, lambda inner: {"k": inner}),
    _LyingStr("SUCCEEDED"),
    dt.datetime(1, 1, 1, tzinfo=dt.UTC),
    dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.UTC),
    dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))),
    dt.datetime(2024, 1, 1, tzinfo=_BadOffset(ValueError("no offset"))),
    dt.datetime(2024, 1, 1, tzinfo=_BadOffset("1 hour")),
    dt.datetime(2024, 1, 1, tzinfo=_BadOffset(dt.timedelta(hours=30))),
]

# hostile: the test kit's (casdb.testing.strategies); not SPECIAL, which Hypothesis itself
# cannot print (test_special_values does those)


_VALID_OF: dict[int, st.SearchStrategy[Any]] = {}


def _arg(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    mixed = st.one_of(valid, hostile)
    _VALID_OF[id(mixed)] = valid
    return mixed


def _checksum(conn: Connection) -> dict[str, str]:
    sums = {}
    for table in metadata.sorted_tables:
        sums[table.name] = conn.execute(
            text(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "  # noqa: S608
                f"FROM {table.name} t"
            )
        ).scalar_one()
    return sums


USER_ID = st.shared(st.integers(1, 3), key="user")  # ids of the users the test creates
MODEL_ID = st.integers(1, 3)  # ids of the models the test creates
INGEST_ID = st.sampled_from(["ing-0", "ing-1", "ing-2", "ing-9"])  # the test creates 0-2
counts = st.integers(0, 2**31 - 1)

# operation -> strategies of its keyword arguments (valid values mixed with hostile ones)
OPERATIONS: dict[str, tuple[Callable[..., Any], dict[str, st.SearchStrategy[Any]]]] = {
    "create_user": (
        users.create_user,
        {
            "email": _arg(emails),
            "username": _arg(nonempty255),
            "cell_quota": _arg(counts),
            "lifetime_cell_quota": _arg(st.none() | counts),
            "created_at": _arg(aware_times),
            "is_admin": _arg(st.booleans()),
        },
    ),
    "get_user": (users.get_user, {"user_id": _arg(USER_ID)}),
    "get_user_by_email": (users.get_user_by_email, {"email": _arg(emails)}),
    "set_user_active": (
        users.set_user_active,
        {"user_id": _arg(USER_ID), "active": _arg(st.booleans())},
    ),
    "set_admin": (users.set_admin, {"user_id": _arg(USER_ID), "is_admin": _arg(st.booleans())}),
    "opt_out_of_feedback": (users.opt_out_of_feedback, {"user_id": _arg(USER_ID)}),
    "increase_lifetime_quota": (
        users.increase_lifetime_quota,
        {"user_id": _arg(USER_ID), "new_quota": _arg(st.none() | counts)},
    ),
    "get_user_usage": (users.get_user_usage, {"user_id": _arg(USER_ID)}),
    "get_user_with_usage": (users.get_user_with_usage, {"user_id": _arg(USER_ID)}),
    "log_user_activity": (
        activity.log_user_activity,
        {
            "user_id": _arg(USER_ID),
            "model_name": _arg(nonempty255),
            "method": _arg(st.none() | nonempty255),
            "cell_count": _arg(counts),
            "event": _arg(st.sampled_from(UserActivityEvent)),
            "request_id": _arg(st.none() | nonempty255),
            "finished_time": _arg(aware_times),
        },
    ),
    "list_user_activity": (
        activity.list_user_activity,
        {"user_id": _arg(USER_ID), "since": _arg(st.none() | aware_times)},
    ),
    "cells_processed_this_week": (
        quotas.cells_processed_this_week,
        {"user_id": _arg(USER_ID), "now": _arg(aware_times)},
    ),
    "get_user_quota": (quotas.get_user_quota, {"user_id": _arg(USER_ID), "now": _arg(aware_times)}),
    "create_user_key": (
        keys.create_user_key,
        {
            "user_id": _arg(USER_ID),
            "key_hash": _arg(nonempty255),
            "expires": _arg(st.none() | aware_times),
            "key_locator": _arg(st.none() | st.uuids()),
        },
    ),
    "get_key_for_authentication": (
        keys.get_key_for_authentication,
        {"key_locator": _arg(st.uuids())},
    ),
    "deactivate_user_key": (keys.deactivate_user_key, {"key_locator": _arg(st.uuids())}),
    "list_user_keys": (keys.list_user_keys, {"user_id": _arg(USER_ID)}),
    "create_model": (
        ml_models.create_model,
        {
            "model_name": _arg(nonempty255),
            "model_file_path": _arg(nonempty255),
            "embedding_dimension": _arg(st.integers(1, 2**31 - 1)),
            "description": _arg(st.none() | nonempty255),
            "admin_use_only": _arg(st.booleans()),
            "is_default_model": _arg(st.booleans()),
        },
    ),
    "list_models": (ml_models.list_models, {"include_admin_only": _arg(st.booleans())}),
    "get_model_by_name": (ml_models.get_model_by_name, {"model_name": _arg(nonempty255)}),
    "set_default_model": (ml_models.set_default_model, {"model_id": _arg(MODEL_ID)}),
    "create_matching_engine_index": (
        ml_models.create_matching_engine_index,
        {
            "index_name": _arg(nonempty255),
            "embedding_dimension": _arg(st.integers(1, 512)),
            "endpoint_id": _arg(nonempty255),
            "num_neighbors": _arg(st.integers(1, 100)),
            "model_id": _arg(MODEL_ID),
            "deployed_index_id": _arg(st.none() | nonempty255),
        },
    ),
    "get_index_by_name": (ml_models.get_index_by_name, {"index_name": _arg(nonempty255)}),
    "list_indexes_for_model": (ml_models.list_indexes_for_model, {"model_id": _arg(MODEL_ID)}),
    "create_ingest": (
        cells.create_ingest,
        {
            "cas_ingest_id": _arg(INGEST_ID),
            "dataset_id": _arg(nonempty255),
            "uns_metadata": _arg(st.none() | st.dictionaries(st.text(max_size=5), st.integers())),
            "ingest_timestamp": _arg(st.none() | aware_times),
        },
    ),
    "get_ingest": (cells.get_ingest, {"cas_ingest_id": _arg(INGEST_ID)}),
    "delete_ingest": (cells.delete_ingest, {"cas_ingest_id": _arg(INGEST_ID)}),
    "count_cells": (cells.count_cells, {"cas_ingest_id": _arg(st.none() | INGEST_ID)}),
    "list_features_for_ingest": (
        cells.list_features_for_ingest,
        {"cas_ingest_id": _arg(INGEST_ID)},
    ),
    "insert_cells": (
        cells.insert_cells,
        {
            "rows": _arg(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "cas_cell_index": _arg(st.integers(1, 10)),
                            "cas_ingest_id": _arg(INGEST_ID),
                            "cell_type": _arg(nonempty255),
                            "total_mrna_umis": _arg(st.none() | counts),
                            "obs_metadata_extra": _arg(
                                st.dictionaries(st.text(max_size=5), hostile, max_size=2)
                            ),
                        }
                    ),
                    max_size=4,
                )
            )
        },
    ),
    "insert_features": (
        cells.insert_features,
        {
            "rows": _arg(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "cas_feature_index": _arg(st.integers(1, 10)),
                            "cas_ingest_id": _arg(INGEST_ID),
                            "original_feature_id": _arg(nonempty255),
                            "feature_name": _arg(nonempty255),
                        }
                    ),
                    max_size=4,
                )
            )
        },
    ),
    "set_weekly_cell_quota": (
        users.set_weekly_cell_quota,
        {"user_id": _arg(USER_ID), "cell_quota": _arg(counts)},
    ),
    "issue_user_token": (
        keys.issue_user_token,
        {"user_id": _arg(USER_ID), "expires": _arg(st.none() | aware_times)},
    ),
    "authenticate_token": (
        keys.authenticate_token,
        {
            "token": _arg(st.builds(lambda a, b: f"{a}.{b}", st.uuids(version=4), st.uuids())),
            "now": _arg(aware_times),
        },
    ),
    "reserve_indexes": (
        cells.reserve_indexes,
        {"table": _arg(st.sampled_from(["cells", "features"])), "count": _arg(st.integers(0, 50))},
    ),
    "advance_index_sequence": (
        cells.advance_index_sequence,
        {
            "table": _arg(st.sampled_from(["cells", "features"])),
            "past": _arg(st.integers(1, 10_000)),
        },
    ),
    "find_existing_indexes": (
        cells.find_existing_indexes,
        {
            "table": _arg(st.sampled_from(["cells", "features"])),
            "ids": _arg(st.lists(st.integers(0, 12), max_size=6)),
        },
    ),
    "get_cell_metadata_by_ids": (
        cells.get_cell_metadata_by_ids,
        {
            "cell_ids": _arg(st.lists(st.integers(0, 12), max_size=6)),
            "columns": _arg(
                st.none()
                | st.lists(
                    st.sampled_from(
                        ["cell_type", "tissue", "obs_metadata_extra", "nope", "cell_type; --"]
                    ),
                    max_size=3,
                )
            ),
        },
    ),
    "iter_cell_metadata_by_ids": (
        cells.iter_cell_metadata_by_ids,
        {
            "cell_ids": _arg(st.lists(st.integers(0, 12), max_size=6)),
            "columns": _arg(
                st.none()
                | st.lists(
                    st.sampled_from(
                        ["cell_type", "tissue", "obs_metadata_extra", "nope", "cell_type; --"]
                    ),
                    max_size=3,
                )
            ),
        },
    ),
}

# operation -> strategies of its keyword arguments, valid values only
VALID = {
    name: {argument: _VALID_OF[id(mixed)] for argument, mixed in arguments.items()}
    for name, (_, arguments) in OPERATIONS.items()
}


def consume(result: Any) -> Any:
    """The result of an operation; a generator (an iter_* operation) is run to its end."""
    return list(result) if isinstance(result, Iterator) else result


def run_hostile(
    engine: Engine,
    operation: Callable[..., Any],
    kwargs: dict[str, Any],
    setup: Callable[[Connection], None],
) -> None:
    """Call ``operation``; on a casdb error the database must be exactly as before."""
    with rolled_back(engine) as conn:
        setup(conn)
        before = _checksum(conn)
        try:
            consume(operation(conn, **kwargs))
        except CasdbError:
            # The caller's transaction is still usable and holds nothing new.
            assert _checksum(conn) == before


def _three_of_each(conn: Connection) -> None:
    for n in range(3):
        cells.create_ingest(conn, cas_ingest_id=f"ing-{n}", dataset_id="d")
        cells.insert_cells(
            conn,
            rows=[
                {"cas_cell_index": 3 * n + k + 1, "cas_ingest_id": f"ing-{n}", "cell_type": "T"}
                for k in range(3)
            ],
        )
        cells.insert_features(
            conn,
            rows=[
                {
                    "cas_feature_index": n + 1,
                    "cas_ingest_id": f"ing-{n}",
                    "original_feature_id": "f",
                    "feature_name": "F",
                }
            ],
        )
    conn.execute(text("SELECT setval('users_user_id_seq', 1, false)"))
    conn.execute(text("SELECT setval('ml_management_model_id_seq', 1, false)"))
    for n in range(3):
        model = ml_models.create_model(
            conn,
            model_name=f"m{n}",
            model_file_path="gs://m",
            embedding_dimension=8,
            is_default_model=n == 0,
        )
        ml_models.create_matching_engine_index(
            conn,
            index_name=f"i{n}",
            embedding_dimension=8,
            endpoint_id="e",
            num_neighbors=5,
            model_id=model.id,
            deployed_index_id=f"d{n}",
        )
    for n in range(3):
        user = users.create_user(conn, email=f"u{n}@cas.org", username=f"u{n}")
        keys.create_user_key(conn, user_id=user.id, key_hash="h", key_locator=uuid.UUID(int=n + 1))
        activity.log_user_activity(
            conn,
            user_id=user.id,
            model_name="m",
            method=None,
            cell_count=5,
            event="SUCCEEDED",
            request_id="r",
            finished_time=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        )


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


AREAS = (users, activity, quotas, keys, ml_models, cells)


def public_operations() -> list[tuple[str, Callable[..., Any]]]:
    """Every operation an area module exports: a function of ``__all__`` taking a connection."""
    found = []
    for module in AREAS:
        for name in module.__all__:
            function = getattr(module, name)
            if (
                inspect.isfunction(function)
                and next(iter(inspect.signature(function).parameters), None) == "connection"
            ):
                found.append((f"{module.__name__}.{name}", function))
    return found


def test_every_public_operation_with_arguments_is_covered() -> None:
    covered = {operation for operation, _ in OPERATIONS.values()}
    for module in AREAS:
        exported = set(module.__all__)
        for name, function in vars(module).items():
            if inspect.isfunction(function) and function.__module__ == module.__name__:
                if not name.startswith("_") and name not in exported:
                    assert name.startswith("build_") or not (
                        next(iter(inspect.signature(function).parameters), None) == "connection"
                    ), f"{module.__name__}.{name} takes a connection but is not in __all__"
    for name, function in public_operations():
        if len(inspect.signature(function).parameters) > 1:
            assert function in covered, f"{name} has no hostile-input test"


BULK_ROWS = {
    "insert_cells": {
        "cas_cell_index": 50,
        "cas_ingest_id": "ing-0",
        "cell_type": "T",
        "total_mrna_umis": 1,
        "obs_metadata_extra": {},
        "is_primary_data": True,
    },
    "insert_features": {
        "cas_feature_index": 50,
        "cas_ingest_id": "ing-0",
        "original_feature_id": "f",
        "feature_name": "F",
        "var_metadata_extra": {},
    },
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_special_values_in_every_argument(engine: Engine, name: str) -> None:
    """Each SPECIAL value in each argument (the others valid): success or a casdb error; a bad
    argument is InvalidInput before any SQL; an error leaves the tables unchanged."""
    operation, arguments = OPERATIONS[name]
    valid = VALID[name]

    @settings(max_examples=1, phases=[Phase.generate], database=None)
    @given(kwargs=st.fixed_dictionaries(valid))
    def check(kwargs: dict[str, Any]) -> None:
        failures = []
        with rolled_back(engine) as conn:
            _three_of_each(conn)
            cases = [
                ({**kwargs, argument: value}, f"{argument}=SPECIAL[{position}]")
                for argument in arguments
                for position, value in enumerate(SPECIAL)
            ]
            for field in BULK_ROWS.get(name, {}):  # and in each field of a bulk row
                cases += [
                    (
                        {"rows": [{**BULK_ROWS[name], field: value}]},
                        f"rows[0].{field}=SPECIAL[{position}]",
                    )
                    for position, value in enumerate(SPECIAL)
                ]
            for case_kwargs, case in cases:
                savepoint = conn.begin_nested()
                before = _checksum(conn)
                try:
                    with statements_sent(conn) as sent:
                        consume(operation(conn, **case_kwargs))
                except InvalidInput:
                    if sent and name not in ("insert_cells", "insert_features"):
                        failures.append(f"{case}: InvalidInput after SQL")
                    elif _checksum(conn) != before:
                        failures.append(f"{case}: InvalidInput changed the tables")
                except CasdbError:
                    if _checksum(conn) != before:
                        failures.append(f"{case}: casdb error changed the tables")
                except Exception as error:  # noqa: BLE001 - collected, reported below
                    failures.append(f"{case}: {type(error).__module__}.{type(error).__name__}")
                with contextlib.suppress(Exception):
                    savepoint.rollback()
        assert not failures, "\n".join(failures)

    check()
