"""Cell quotas: the weekly window anchored at the signup weekday, and the lifetime cap.

The week starts at 00:00 UTC on the most recent occurrence (today included) of the weekday
the user signed up. A request counts once, with its largest cell_count among its rows in the
window, unless one of those rows is FAILED; rows without a request_id are ignored.

A quota is read in ONE statement (the user, their lifetime usage, the week's start and the
cells used in it), so that under READ COMMITTED it comes from one snapshot: two statements
could see different activity and report a week that used more than the whole lifetime.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import attrs
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    bindparam,
    cast,
    extract,
    func,
    select,
    true,
    type_coerce,
)

from casdb._checks import check_int, check_time
from casdb.errors import InvalidInput
from casdb.queries._rows import Prepared, fetch_one
from casdb.queries.users import build_user_with_usage, user_with_usage_from_row
from casdb.tables import UserActivityEvent, UTCDateTime, users_user, users_useractivity

__all__ = [
    "UserQuota",
    "build_cells_in_window",
    "build_user_quota",
    "cells_processed_this_week",
    "get_user_quota",
]

WEEK: Final = dt.timedelta(days=7)


@attrs.frozen
class UserQuota:
    """Where a user stands against the weekly and lifetime quotas at a given moment."""

    user_id: int
    weekly_quota: int
    remaining_weekly_quota: int
    quota_reset_date: dt.datetime
    lifetime_quota: int | None
    remaining_lifetime_quota: int | None
    quota_increased: bool


def _week_start(now: ColumnElement[Any]) -> ColumnElement[dt.datetime]:
    """00:00 of the most recent day, ``now``'s day included, on the signup weekday."""
    days_back = (
        cast(extract("isodow", now), Integer)
        - cast(extract("isodow", users_user.c.created_at), Integer)
        + 7
    ) % 7
    start = func.date_trunc("day", now) - func.make_interval(0, 0, 0, days_back)
    return type_coerce(start, UTCDateTime)


def build_cells_in_window(
    user_id: int | ColumnElement[int],
    start: ColumnElement[Any] | dt.datetime,
    end: ColumnElement[Any] | dt.datetime,
) -> Select[Any]:
    """SELECT the cells a user's requests used between ``start`` and ``end`` (both included)."""
    per_request = (
        select(
            func.max(users_useractivity.c.cell_count).label("cells"),
            func.bool_or(users_useractivity.c.event == UserActivityEvent.FAILED).label("failed"),
        )
        .where(
            users_useractivity.c.user_id == user_id,
            users_useractivity.c.request_id.is_not(None),
            users_useractivity.c.finished_time.between(start, end),
        )
        .group_by(users_useractivity.c.request_id)
        .subquery()
    )
    total = func.sum(per_request.c.cells).filter(per_request.c.failed.is_(False))
    return select(func.coalesce(total, 0))


def build_user_quota(
    user_id: int | ColumnElement[int], now: dt.datetime | BindParameter[dt.datetime]
) -> Select[Any]:
    """SELECT, in one statement, a user's columns, usage totals (build_user_with_usage), the
    start of their week at ``now`` (``week_start``) and the cells used in it up to ``now``
    (``cells_this_week``). No row when the user does not exist."""
    at = now if isinstance(now, BindParameter) else bindparam("now", now, type_=UTCDateTime)
    week = (
        select(users_user.c.id, _week_start(at).label("week_start"))
        .where(users_user.c.id == user_id)
        .cte("week")
    )
    cells = build_cells_in_window(user_id, week.c.week_start, at)
    return (
        build_user_with_usage(user_id)
        .add_columns(week.c.week_start, cells.scalar_subquery().label("cells_this_week"))
        .join_from(users_user, week, true())
    )


def _prepared_user_quota() -> Select[Any]:
    return build_user_quota(
        bindparam("user_id", type_=Integer), bindparam("now", type_=UTCDateTime)
    )


def _check_now(now: object) -> dt.datetime:
    """``now`` in UTC, far enough from the ends of datetime for a week on either side."""
    now = check_time("now", now)
    if not dt.datetime.min + 2 * WEEK <= now.replace(tzinfo=None) <= dt.datetime.max - 2 * WEEK:
        raise InvalidInput("now is too close to the ends of the datetime range")
    return now


def _fetch(connection: Connection, user_id: object, now: object) -> Row[Any]:
    user_id = check_int("user_id", user_id)
    statement = Prepared(_prepared_user_quota, {"user_id": user_id, "now": _check_now(now)})
    row: Row[Any] = fetch_one(
        connection, statement, lambda found: found, missing=f"no user with id {user_id}"
    )
    return row


def cells_processed_this_week(connection: Connection, *, user_id: int, now: dt.datetime) -> int:
    """Return the cells the user's requests used in the current quota week up to ``now``.

    ``now`` must be timezone-aware. Raises NotFound for an unknown user, InvalidInput for bad
    arguments (before any SQL), DatabaseError.
    """
    return int(_fetch(connection, user_id, now).cells_this_week)


def get_user_quota(connection: Connection, *, user_id: int, now: dt.datetime) -> UserQuota:
    """Return the user's quota position at ``now`` (timezone-aware), read in one statement.

    remaining_weekly_quota = max(0, min(weekly remaining, lifetime remaining));
    quota_reset_date is the next week start strictly after ``now``;
    remaining_lifetime_quota is None for an unlimited lifetime quota, else never negative.
    Raises NotFound for an unknown user, InvalidInput for bad arguments (before any SQL),
    DatabaseError.
    """
    row = _fetch(connection, user_id, now)
    found = user_with_usage_from_row(row)
    user, usage = found.user, found.usage
    weekly_remaining = user.cell_quota - int(row.cells_this_week)
    lifetime_remaining = (
        None
        if user.lifetime_cell_quota is None
        else max(0, user.lifetime_cell_quota - usage.total_cells_processed)
    )
    remaining = (
        weekly_remaining
        if lifetime_remaining is None
        else min(weekly_remaining, lifetime_remaining)
    )
    return UserQuota(
        user_id=user.id,
        weekly_quota=user.cell_quota,
        remaining_weekly_quota=max(0, remaining),
        quota_reset_date=row.week_start + WEEK,
        lifetime_quota=user.lifetime_cell_quota,
        remaining_lifetime_quota=lifetime_remaining,
        quota_increased=user.quota_increased,
    )
