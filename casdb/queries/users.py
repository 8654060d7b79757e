"""Users of the CAS: create, read, flags, lifetime quota increase, usage totals."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import attrs
from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Row,
    Select,
    Update,
    bindparam,
    case,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from casdb._checks import (
    check_bool,
    check_email,
    check_int,
    check_optional_int,
    check_text,
    check_time,
)
from casdb.queries._rows import (
    Prepared,
    fetch_all,
    fetch_created,
    fetch_one,
    fetch_optional,
    record_columns,
    to_record,
)
from casdb.tables import UserActivityEvent, users_user, users_useractivity

__all__ = [
    "UNSET",
    "User",
    "UserUsage",
    "UserWithUsage",
    "build_create_user",
    "build_increase_lifetime_quota",
    "build_select_users",
    "build_update_user",
    "build_user_with_usage",
    "create_user",
    "get_user",
    "get_user_by_email",
    "get_user_usage",
    "get_user_with_usage",
    "increase_lifetime_quota",
    "list_users",
    "opt_out_of_feedback",
    "set_admin",
    "set_user_active",
    "set_weekly_cell_quota",
]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""Leave a column to its server default (distinct from None, which is a value)."""


@attrs.frozen
class User:
    """A row of users_user; times are aware UTC."""

    id: int
    email: str
    username: str
    active: bool
    requests_processed: int
    cells_processed: int
    is_admin: bool
    cell_quota: int
    lifetime_cell_quota: int | None
    quota_increased: bool
    created_at: dt.datetime
    ask_for_feedback: bool


@attrs.frozen
class UserUsage:
    """A user's all-time totals: legacy counters plus SUCCEEDED activity."""

    user_id: int
    total_cells_processed: int
    total_requests_processed: int


@attrs.frozen
class UserWithUsage:
    """A user together with their usage totals (what quota checks need, in one query)."""

    user: User
    usage: UserUsage


_USER_COLUMNS = record_columns(users_user, User)


def user_with_usage_from_row(row: Row[Any]) -> UserWithUsage:
    """A row of build_user_with_usage as a record."""
    usage = UserUsage(
        user_id=row.id,
        total_cells_processed=int(row.total_cells),
        total_requests_processed=int(row.total_requests),
    )
    return UserWithUsage(user=to_record(User, row), usage=usage)


def build_create_user(values: dict[str, Any]) -> Insert:
    """INSERT a user with ``values`` (columns left out take their server defaults).

    A taken email inserts nothing and returns no row, so the caller's transaction stays usable.
    """
    return pg_insert(users_user).values(values).on_conflict_do_nothing().returning(*_USER_COLUMNS)


def build_select_users() -> Select[Any]:
    """SELECT every user column, ordered by id."""
    return select(*_USER_COLUMNS).order_by(users_user.c.id)


def build_update_user(user_id: int, values: dict[str, Any]) -> Update:
    """UPDATE one user's ``values``, returning the whole row."""
    return (
        update(users_user)
        .where(users_user.c.id == user_id)
        .values(values)
        .returning(*_USER_COLUMNS)
    )


def build_increase_lifetime_quota(user_id: int, new_quota: int | None) -> Update:
    """Raise the lifetime quota once: only where quota_increased is false; never lowers it."""
    raised = (
        None
        if new_quota is None
        else case(
            (users_user.c.lifetime_cell_quota.is_(None), None),
            else_=func.greatest(users_user.c.lifetime_cell_quota, new_quota),
        )
    )
    return (
        update(users_user)
        .where(users_user.c.id == user_id, users_user.c.quota_increased.is_(False))
        .values(quota_increased=True, lifetime_cell_quota=raised)
        .returning(*_USER_COLUMNS)
    )


def build_user_with_usage(user_id: int | ColumnElement[int]) -> Select[Any]:
    """SELECT one user's columns and usage totals (no row when the user does not exist)."""
    succeeded = select().where(
        users_useractivity.c.user_id == user_id,
        users_useractivity.c.event == UserActivityEvent.SUCCEEDED,
    )
    cells = succeeded.add_columns(func.coalesce(func.sum(users_useractivity.c.cell_count), 0))
    requests = succeeded.add_columns(func.count())
    return select(
        *_USER_COLUMNS,
        (users_user.c.cells_processed + cells.scalar_subquery()).label("total_cells"),
        (users_user.c.requests_processed + requests.scalar_subquery()).label("total_requests"),
    ).where(users_user.c.id == user_id)


def _update_user(connection: Connection, user_id: int, values: dict[str, Any]) -> User:
    user_id = check_int("user_id", user_id)
    return fetch_one(
        connection, build_update_user(user_id, values), User, missing=f"no user with id {user_id}"
    )


def create_user(
    connection: Connection,
    *,
    email: str,
    username: str,
    active: bool | _Unset = UNSET,
    is_admin: bool | _Unset = UNSET,
    cell_quota: int | _Unset = UNSET,
    lifetime_cell_quota: int | None | _Unset = UNSET,
    quota_increased: bool | _Unset = UNSET,
    requests_processed: int | _Unset = UNSET,
    cells_processed: int | _Unset = UNSET,
    ask_for_feedback: bool | _Unset = UNSET,
    created_at: dt.datetime | _Unset = UNSET,
) -> User:
    """Create a user; omitted columns take the schema's defaults (lifetime quota None = unlimited).

    Returns the new User. Raises InvalidInput for a bad argument (before any SQL) and
    AlreadyExists(field="email") when the email is taken.
    """
    values: dict[str, Any] = {
        "email": check_email(email),
        "username": check_text("username", username),
    }
    for name, flag in (
        ("active", active),
        ("is_admin", is_admin),
        ("quota_increased", quota_increased),
        ("ask_for_feedback", ask_for_feedback),
    ):
        if not isinstance(flag, _Unset):
            values[name] = check_bool(name, flag)
    for name, count in (
        ("cell_quota", cell_quota),
        ("requests_processed", requests_processed),
        ("cells_processed", cells_processed),
    ):
        if not isinstance(count, _Unset):
            values[name] = check_int(name, count, minimum=0)
    if not isinstance(lifetime_cell_quota, _Unset):
        values["lifetime_cell_quota"] = check_optional_int(
            "lifetime_cell_quota", lifetime_cell_quota, minimum=0
        )
    if not isinstance(created_at, _Unset):
        values["created_at"] = check_time("created_at", created_at)
    return fetch_created(connection, build_create_user(values), User, field="email")


def build_select_user_by_id() -> Select[Any]:
    """SELECT one user by ``:user_id`` (a prepared statement's shape: the value bound later)."""
    return build_select_users().where(users_user.c.id == bindparam("user_id"))


def build_select_user_by_email() -> Select[Any]:
    """SELECT one user by ``:email`` (a prepared statement's shape: the value bound later)."""
    return build_select_users().where(users_user.c.email == bindparam("email"))


def get_user(connection: Connection, *, user_id: int) -> User:
    """Return the user with ``user_id``. Raises NotFound, or InvalidInput for a bad id."""
    user_id = check_int("user_id", user_id)
    statement = Prepared(build_select_user_by_id, {"user_id": user_id})
    return fetch_one(connection, statement, User, missing=f"no user with id {user_id}")


def get_user_by_email(connection: Connection, *, email: str) -> User:
    """Return the user whose email is exactly ``email``. Raises NotFound or InvalidInput."""
    email = check_text("email", email)
    statement = Prepared(build_select_user_by_email, {"email": email})
    return fetch_one(connection, statement, User, missing="no user with this email")


def list_users(connection: Connection) -> list[User]:
    """Return every user, ordered by id."""
    return fetch_all(connection, build_select_users(), User)


def set_user_active(connection: Connection, *, user_id: int, active: bool) -> User:
    """Set whether the user may use the service; return the updated User.

    Raises NotFound for an unknown id, InvalidInput for bad arguments.
    """
    return _update_user(connection, user_id, {"active": check_bool("active", active)})


def set_admin(connection: Connection, *, user_id: int, is_admin: bool) -> User:
    """Grant or revoke admin rights; return the updated User. Raises NotFound, InvalidInput."""
    return _update_user(connection, user_id, {"is_admin": check_bool("is_admin", is_admin)})


def opt_out_of_feedback(connection: Connection, *, user_id: int) -> User:
    """Stop asking the user for feedback; return the updated User. Raises NotFound."""
    return _update_user(connection, user_id, {"ask_for_feedback": False})


def increase_lifetime_quota(connection: Connection, *, user_id: int, new_quota: int | None) -> User:
    """Raise the user's lifetime cell quota, once.

    When quota_increased is already true this is a no-op. Otherwise it sets quota_increased and
    the lifetime quota to max(current, new_quota): it never lowers a quota, an unlimited (None)
    quota stays unlimited, and ``new_quota=None`` makes it unlimited.
    Returns the User as it is afterwards. Raises NotFound for an unknown id, InvalidInput for a
    negative or non-integer quota.
    """
    user_id = check_int("user_id", user_id)
    new_quota = check_optional_int("new_quota", new_quota, minimum=0)
    user = fetch_optional(connection, build_increase_lifetime_quota(user_id, new_quota), User)
    return user or get_user(connection, user_id=user_id)  # already increased (or NotFound)


def get_user_with_usage(connection: Connection, *, user_id: int) -> UserWithUsage:
    """Return the user and their usage totals, read in one query.

    Raises NotFound for an unknown id, InvalidInput for a bad id.
    """
    user_id = check_int("user_id", user_id)
    return fetch_one(
        connection,
        build_user_with_usage(user_id),
        user_with_usage_from_row,
        missing=f"no user with id {user_id}",
    )


def get_user_usage(connection: Connection, *, user_id: int) -> UserUsage:
    """Return the user's totals: legacy counters plus count and cells of SUCCEEDED activity.

    Raises NotFound for an unknown id, InvalidInput for a bad id.
    """
    return get_user_with_usage(connection, user_id=user_id).usage


def set_weekly_cell_quota(connection: Connection, *, user_id: int, cell_quota: int) -> User:
    """Set the user's weekly cell quota (users_user.cell_quota); return the updated User.

    Raises NotFound for an unknown id, InvalidInput for a negative or non-integer quota.
    """
    return _update_user(
        connection, user_id, {"cell_quota": check_int("cell_quota", cell_quota, minimum=0)}
    )
