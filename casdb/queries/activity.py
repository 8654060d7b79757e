"""Usage activity: one row per event of a user's request (STARTED, SUCCEEDED, FAILED)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import attrs
from sqlalchemy import Connection, Insert, Row, Select, insert, select

from casdb._checks import (
    check_enum,
    check_int,
    check_optional_text,
    check_text,
    optional_from_db_time,
    optional_to_db_time,
    row_exists,
    translated_errors,
    values_where,
)
from casdb.errors import NotFound
from casdb.tables import UserActivityEvent, users_user, users_useractivity

FOREIGN_KEYS: Final = {"fk_users_useractivity_user_id_users_user": "no user with this id"}


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


_ACTIVITY_COLUMNS = [users_useractivity.c[field.name] for field in attrs.fields(UserActivity)]


def _activity_from_row(row: Row[Any]) -> UserActivity:
    return UserActivity(
        **{**row._mapping, "finished_time": optional_from_db_time(row.finished_time)}
    )


def build_log_user_activity(values: dict[str, Any]) -> Insert:
    """INSERT one activity row if its user exists (finished_time left out: the server's now)."""
    user_exists = row_exists(users_user, "id", values["user_id"])
    source = values_where(users_useractivity, values, user_exists)
    return insert(users_useractivity).from_select(list(values), source).returning(
        *_ACTIVITY_COLUMNS
    )


def build_list_user_activity(user_id: int, since: dt.datetime | None) -> Select[Any]:
    """SELECT one user's activity (finished at or after ``since``, naive UTC), ordered by id."""
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
        values["finished_time"] = optional_to_db_time("finished_time", finished_time)
    with translated_errors(foreign_keys=FOREIGN_KEYS):
        row = connection.execute(build_log_user_activity(values)).one_or_none()
    if row is None:
        raise NotFound(f"no user with id {user_id}")
    return _activity_from_row(row)


def list_user_activity(
    connection: Connection, *, user_id: int, since: dt.datetime | None = None
) -> list[UserActivity]:
    """Return the user's activity, ordered by id; only rows finished at/after ``since`` if given.

    An unknown user has no activity (empty list). Raises InvalidInput for bad arguments.
    """
    check_int("user_id", user_id)
    statement = build_list_user_activity(user_id, optional_to_db_time("since", since))
    with translated_errors():
        rows = connection.execute(statement).all()
    return [_activity_from_row(row) for row in rows]
