"""Errors: the argument checks (int32 via operator.index, aware times, JSON copies) and the
translation of database failures into DatabaseError with its SQLSTATE and retryability."""

from __future__ import annotations

import datetime as dt
import threading
import types
import uuid

import numpy as np
import pytest
from sqlalchemy import Engine, text

from casdb import DatabaseError, InvalidInput
from casdb._checks import check_int, check_json, check_time, describe
from casdb.queries import users
from casdb.tables import FOREIGN_KEY_MESSAGES, UNIQUE_FIELDS


def test_database_error_signature() -> None:
    error = DatabaseError("database error: x", sqlstate="40001", retryable=True)
    assert (str(error), error.sqlstate, error.retryable) == ("database error: x", "40001", True)
    plain = DatabaseError("y")
    assert (plain.sqlstate, plain.retryable) == (None, False)


class _Index:
    def __index__(self) -> int:
        return 7


def test_check_int_takes_what_operator_index_takes_except_bools() -> None:
    for value in (np.int64(5), np.int32(-5), np.uint16(5), type("I", (int,), {})(5), _Index()):
        number = check_int("n", value)
        assert type(number) is int
    for value in (True, np.bool_(False), "5", 5.0, np.float64(5), None, [5]):
        with pytest.raises(InvalidInput, match="must be an integer"):
            check_int("n", value)
    for huge in (10**5000, -(10**5000), np.int64(2**40)):
        with pytest.raises(InvalidInput, match="between") as raised:
            check_int("n", huge)
        assert len(str(raised.value)) < 200


def test_check_time_refuses_naive_and_broken_offsets() -> None:
    assert check_time(
        "t", dt.datetime(2024, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    ) == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(InvalidInput, match="naive"):
        check_time("t", dt.datetime(2024, 1, 1))

    class Broken(dt.tzinfo):
        def __init__(self, offset: object) -> None:
            self.offset = offset

        def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
            if isinstance(self.offset, Exception):
                raise self.offset
            return self.offset  # type: ignore[return-value]

    for offset in (RuntimeError("x"), "1h", dt.timedelta(days=2)):
        with pytest.raises(InvalidInput, match="utcoffset"):
            check_time("t", dt.datetime(2024, 1, 1, tzinfo=Broken(offset)))
    with pytest.raises(InvalidInput, match="out of range"):
        check_time("t", dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))))


def test_check_json_returns_plain_json_and_refuses_what_json_cannot_write() -> None:
    copy = check_json("j", types.MappingProxyType({"a": (1, 2.5, True, None)}))
    assert copy == {"a": [1, 2.5, True, None]} and type(copy) is dict
    with pytest.raises(InvalidInput, match="too long"):
        check_json("j", {"a": 10**5000})
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested"):
        check_json("j", deep)


def test_describe_is_short_and_never_raises() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError

    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    for value in (10**5000, deep, Hostile(), "x" * 10**6, {"k": deep}):
        assert len(describe(value)) < 100


def test_constraint_maps_come_from_the_metadata() -> None:
    assert UNIQUE_FIELDS["uq_users_user_email"] == "email"
    assert UNIQUE_FIELDS["pk_cells_cellinfo"] == "cas_cell_index"
    assert "uq_ml_management_model_is_default_model" not in UNIQUE_FIELDS  # a rule, not a value
    assert FOREIGN_KEY_MESSAGES["fk_ml_management_matchingengineindex_model_id"] == (
        "no model with this id"
    )


def _user(engine: Engine) -> users.User:
    with engine.begin() as conn:
        return users.create_user(conn, email=f"{uuid.uuid4()}@cas.org", username="e")


def test_a_serialization_failure_is_retryable(engine: Engine) -> None:
    user = _user(engine)
    repeatable = engine.execution_options(isolation_level="REPEATABLE READ")
    with repeatable.connect() as first, engine.connect() as second:
        first.begin()
        users.get_user(first, user_id=user.id)  # takes the snapshot
        with second.begin():
            users.set_admin(second, user_id=user.id, is_admin=True)
        with pytest.raises(DatabaseError) as raised:
            users.set_user_active(first, user_id=user.id, active=False)
        first.rollback()
    assert (raised.value.sqlstate, raised.value.retryable) == ("40001", True)
    assert "could not serialize" in str(raised.value)


def test_a_deadlock_is_retryable(engine: Engine) -> None:
    a, b = _user(engine), _user(engine)
    barrier = threading.Barrier(2, timeout=30)
    raised: list[DatabaseError] = []

    def cross(first: int, second: int) -> None:
        with engine.connect() as conn:
            conn.begin()
            users.set_admin(conn, user_id=first, is_admin=True)
            barrier.wait()
            try:
                users.set_admin(conn, user_id=second, is_admin=True)
            except DatabaseError as error:
                raised.append(error)
            conn.rollback()

    threads = [threading.Thread(target=cross, args=pair) for pair in ((a.id, b.id), (b.id, a.id))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [(e.sqlstate, e.retryable) for e in raised] == [("40P01", True)]


def test_a_terminated_session_is_retryable_and_drops_the_connection(engine: Engine) -> None:
    with engine.connect() as victim, engine.connect() as admin:
        victim.begin()
        pid = victim.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DatabaseError) as raised:
            users.list_users(victim)
        assert raised.value.retryable
        assert victim.invalidated
        victim.rollback()


def test_a_timeout_carries_the_server_message_never_the_parameters(engine: Engine) -> None:
    secret_email = f"private-{uuid.uuid4()}@cas.org"
    with engine.connect() as holder, engine.connect() as waiter:
        holder.begin()
        holder.execute(text("LOCK TABLE users_user IN ACCESS EXCLUSIVE MODE"))
        waiter.execute(text("SET lock_timeout = 200"))
        with pytest.raises(DatabaseError) as raised:
            users.get_user_by_email(waiter, email=secret_email)
        holder.rollback()
        waiter.rollback()
    assert raised.value.sqlstate == "55P03" and not raised.value.retryable
    assert "lock timeout" in str(raised.value)
    assert secret_email not in str(raised.value)
