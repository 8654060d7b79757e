"""users: round trips, flags, lifetime quota increase, usage totals, errors."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, func, select

from casdb import AlreadyExists, InvalidInput, NotFound, UserActivityEvent
from casdb.queries import activity, users
from casdb.tables import users_user
from tests.conftest import rolled_back
from tests.strategies import aware_times, counts, emails, nonempty255, statements_sent


@given(
    email=emails,
    username=nonempty255,
    cell_quota=counts,
    lifetime=st.none() | counts,
    flags=st.tuples(*[st.booleans()] * 4),
    created=aware_times,
    processed=st.tuples(counts, counts),
)
def test_create_and_read_back(
    engine: Engine,
    email: str,
    username: str,
    cell_quota: int,
    lifetime: int | None,
    flags: tuple[bool, bool, bool, bool],
    created: dt.datetime,
    processed: tuple[int, int],
) -> None:
    active, is_admin, increased, feedback = flags
    with rolled_back(engine) as conn:
        user = users.create_user(
            conn,
            email=email,
            username=username,
            cell_quota=cell_quota,
            lifetime_cell_quota=lifetime,
            active=active,
            is_admin=is_admin,
            quota_increased=increased,
            ask_for_feedback=feedback,
            created_at=created,
            requests_processed=processed[0],
            cells_processed=processed[1],
        )
        expected = users.User(
            id=user.id,
            email=email,
            username=username,
            active=active,
            requests_processed=processed[0],
            cells_processed=processed[1],
            is_admin=is_admin,
            cell_quota=cell_quota,
            lifetime_cell_quota=lifetime,
            quota_increased=increased,
            created_at=created.replace(microsecond=created.microsecond),
            ask_for_feedback=feedback,
        )
        assert user == expected
        assert users.get_user(conn, user_id=user.id) == expected
        assert users.get_user_by_email(conn, email=email) == expected
        assert users.list_users(conn) == [expected]
        assert user.created_at.tzinfo == dt.UTC


def test_defaults_of_a_new_user(conn: Connection) -> None:
    before = dt.datetime.now(dt.UTC)
    user = users.create_user(conn, email="new@cas.org", username="New")
    assert (
        user.active,
        user.is_admin,
        user.cell_quota,
        user.lifetime_cell_quota,
        user.quota_increased,
        user.ask_for_feedback,
        user.requests_processed,
        user.cells_processed,
    ) == (True, False, 100000, 50000, False, True, 0, 0)
    assert abs(user.created_at - before) < dt.timedelta(minutes=1)


def test_flags(conn: Connection) -> None:
    user = users.create_user(conn, email="f@cas.org", username="F")
    assert users.set_user_active(conn, user_id=user.id, active=False).active is False
    assert users.set_admin(conn, user_id=user.id, is_admin=True).is_admin is True
    assert users.opt_out_of_feedback(conn, user_id=user.id).ask_for_feedback is False
    assert users.get_user(conn, user_id=user.id).active is False


@given(current=st.none() | counts, new=st.none() | counts, second=st.none() | counts)
def test_increase_lifetime_quota(
    engine: Engine, current: int | None, new: int | None, second: int | None
) -> None:
    with rolled_back(engine) as conn:
        user = users.create_user(conn, email="q@cas.org", username="Q", lifetime_cell_quota=current)
        raised = users.increase_lifetime_quota(conn, user_id=user.id, new_quota=new)
        expected = None if current is None or new is None else max(current, new)
        assert raised.lifetime_cell_quota == expected
        assert raised.quota_increased is True
        again = users.increase_lifetime_quota(conn, user_id=user.id, new_quota=second)
        assert again == raised  # a second call is a no-op


@given(
    legacy=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    rows=st.lists(
        st.tuples(st.sampled_from(UserActivityEvent), st.integers(0, 10**6)), max_size=15
    ),
)
def test_usage_totals(
    engine: Engine, legacy: tuple[int, int], rows: list[tuple[UserActivityEvent, int]]
) -> None:
    with rolled_back(engine) as conn:
        user = users.create_user(
            conn,
            email="u@cas.org",
            username="U",
            requests_processed=legacy[0],
            cells_processed=legacy[1],
        )
        for n, (event, cells) in enumerate(rows):
            activity.log_user_activity(
                conn,
                user_id=user.id,
                model_name="m",
                method="annotate",
                cell_count=cells,
                event=event,
                request_id=f"r{n % 4}",
            )
        usage = users.get_user_usage(conn, user_id=user.id)
        succeeded = [cells for event, cells in rows if event is UserActivityEvent.SUCCEEDED]
        assert usage == users.UserUsage(
            user_id=user.id,
            total_cells_processed=legacy[1] + sum(succeeded),
            total_requests_processed=legacy[0] + len(succeeded),
        )


def test_duplicate_email_is_already_exists_and_changes_nothing(conn: Connection) -> None:
    users.create_user(conn, email="dup@cas.org", username="A")
    before = conn.execute(select(func.count()).select_from(users_user)).scalar_one()
    with pytest.raises(AlreadyExists) as raised:
        users.create_user(conn, email="dup@cas.org", username="B")
    assert raised.value.field == "email"
    # Nothing was written and the caller's transaction is still usable.
    assert conn.execute(select(func.count()).select_from(users_user)).scalar_one() == before
    assert users.get_user_by_email(conn, email="dup@cas.org").username == "A"


def test_unknown_ids_and_emails(conn: Connection) -> None:
    with pytest.raises(NotFound):
        users.get_user(conn, user_id=2**31 - 1)
    with pytest.raises(NotFound):
        users.get_user_by_email(conn, email="nobody@cas.org")
    for call in (users.set_user_active, users.set_admin):
        with pytest.raises(NotFound):
            call(
                conn,
                user_id=123456,
                **{"active" if call is users.set_user_active else "is_admin": True},
            )
    with pytest.raises(NotFound):
        users.opt_out_of_feedback(conn, user_id=123456)
    with pytest.raises(NotFound):
        users.increase_lifetime_quota(conn, user_id=123456, new_quota=5)
    with pytest.raises(NotFound):
        users.get_user_usage(conn, user_id=123456)


BAD_CREATE = [
    {"email": "", "username": "x"},
    {"email": "no-at-sign", "username": "x"},
    {"email": "two@@cas.org", "username": "x"},
    {"email": "a b@cas.org", "username": "x"},
    {"email": "tab\t@cas.org", "username": "x"},
    {"email": "@cas.org", "username": "x"},
    {"email": "a@", "username": "x"},
    {"email": "a@" + "b" * 254, "username": "x"},
    {"email": "a@cas.org", "username": ""},
    {"email": "a@cas.org", "username": "x" * 256},
    {"email": "a@cas.org", "username": "nul\x00"},
    {"email": "a@cas.org", "username": 5},
    {"email": "a@cas.org", "username": "x", "cell_quota": -1},
    {"email": "a@cas.org", "username": "x", "cell_quota": 2**31},
    {"email": "a@cas.org", "username": "x", "cell_quota": True},
    {"email": "a@cas.org", "username": "x", "lifetime_cell_quota": -5},
    {"email": "a@cas.org", "username": "x", "cells_processed": -1},
    {"email": "a@cas.org", "username": "x", "active": "yes"},
    {"email": "a@cas.org", "username": "x", "created_at": dt.datetime(2024, 1, 1)},
    {"email": "a@cas.org", "username": "x", "created_at": "2024-01-01"},
]


@pytest.mark.parametrize("kwargs", BAD_CREATE, ids=lambda kw: repr(kw)[:60])
def test_bad_input_is_rejected_before_any_sql(conn: Connection, kwargs: dict[str, object]) -> None:
    with statements_sent(conn) as sent, pytest.raises(InvalidInput):
        users.create_user(conn, **kwargs)  # type: ignore[arg-type]
    assert sent == []


def test_bad_arguments_of_other_operations(conn: Connection) -> None:
    with statements_sent(conn) as sent:
        for call in (
            lambda: users.get_user(conn, user_id="1"),  # type: ignore[arg-type]
            lambda: users.get_user(conn, user_id=2**40),
            lambda: users.get_user_by_email(conn, email=""),
            lambda: users.set_user_active(conn, user_id=1, active=1),  # type: ignore[arg-type]
            lambda: users.increase_lifetime_quota(conn, user_id=1, new_quota=-1),
        ):
            with pytest.raises(InvalidInput):
                call()
    assert sent == []


def test_records_repr_shows_no_secret(conn: Connection) -> None:
    user = users.create_user(conn, email="r@cas.org", username="R")
    assert "r@cas.org" in repr(user)  # records are plain data; only secrets are hidden
