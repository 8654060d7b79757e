"""Usage activity: one row per event of a user's request (STARTED, SUCCEEDED, FAILED)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
from sqlalchemy import Connection, Insert, Select, bindparam, insert, select

from casdb._checks import (
    check_enum,
    check_int,
    check_optional_text,
    check_optional_time,
    check_text,
    row_exists,
    values_where,
)
from casdb.queries._rows import Prepared, fetch_all, fetch_one, record_columns
from casdb.tables import UserActivityEvent, users_user, users_useractivity

__all__ = [
    "UserActivity",
    "build_list_user_activity",
    "build_log_user_activity",
    "list_user_activity",
    "log_user_activity",
]


@attrs.frozen
class UserActivity:
    """A row of users_useractivity; finished_time is aware UTC."""

    id: int
    user_id: int | None
    request_id: str | None
    cell_count: int
    model_name: str
    method: str | None
    finished_time: dt.datetime | None
    event: UserActivityEvent


_ACTIVITY_COLUMNS = record_columns(users_useractivity, UserActivity)


def build_log_user_activity(columns: tuple[str, ...]) -> Insert:
    """INSERT one activity row, its ``columns`` bound by name, if its user (``:user_id``)
    exists (finished_time, when not among them, is the server's now)."""
    values = {name: bindparam(name, type_=users_useractivity.c[name].type) for name in columns}
    user_exists = row_exists(users_user, "id", values["user_id"])
    source = values_where(users_useractivity, values, user_exists)
    return insert(users_useractivity).from_select(columns, source).returning(*_ACTIVITY_COLUMNS)


def build_list_user_activity(user_id: int, since: dt.datetime | None) -> Select[Any]:
    """SELECT one user's activity (finished at or after ``since``), ordered by id."""
    statement = select(*_ACTIVITY_COLUMNS).where(users_useractivity.c.user_id == user_id)
    if since is not None:
        statement = statement.where(users_useractivity.c.finished_time >= since)
    return statement.order_by(users_useractivity.c.id)


def log_user_activity(
    connection: Connection,
    *,
    user_id: int,
    model_name: str,
    method: str | None,
    cell_count: int,
    event: UserActivityEvent | str,
    request_id: str | None,
    finished_time: dt.datetime | None = None,
) -> UserActivity:
    """Record one event of a request; ``finished_time`` defaults to the server's now (UTC).

    ``event`` is a UserActivityEvent or its name. Returns the stored UserActivity.
    Raises InvalidInput for a bad argument (before any SQL), NotFound for an unknown user.
    """
    values = {
        "user_id": check_int("user_id", user_id),
        "model_name": check_text("model_name", model_name),
        "method": check_optional_text("method", method),
        "cell_count": check_int("cell_count", cell_count, minimum=0),
        "event": check_enum("event", event, UserActivityEvent),
        "request_id": check_optional_text("request_id", request_id),
    }
    if finished_time is not None:
        values["finished_time"] = check_optional_time("finished_time", finished_time)
    return fetch_one(
        connection,
        Prepared(build_log_user_activity, values, shape=(tuple(values),)),
        UserActivity,
        missing=f"no user with id {values['user_id']}",
    )


def list_user_activity(
    connection: Connection, *, user_id: int, since: dt.datetime | None = None
) -> list[UserActivity]:
    """Return the user's activity, ordered by id; only rows finished at/after ``since`` if given.

    An unknown user has no activity (empty list). Raises InvalidInput for bad arguments.
    """
    user_id = check_int("user_id", user_id)
    statement = build_list_user_activity(user_id, check_optional_time("since", since))
    return fetch_all(connection, statement, UserActivity)
