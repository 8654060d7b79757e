"""Cell quotas: the weekly window anchored at the signup weekday, and the lifetime cap.

The week starts at 00:00 UTC on the most recent occurrence (today included) of the weekday
the user signed up. A request counts once, with its largest cell_count among its rows in the
window, unless one of those rows is FAILED; rows without a request_id are ignored.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
from sqlalchemy import Connection, Select, func, select

from casdb._checks import from_db_time, to_db_time, translated_errors
from casdb.queries.users import User, get_user, get_user_with_usage
from casdb.tables import UserActivityEvent, users_useractivity


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


def week_start(signed_up: dt.datetime, now: dt.datetime) -> dt.datetime:
    """Return 00:00 of the most recent day, ``now``'s day included, on ``signed_up``'s weekday.

    Both arguments and the result share one convention (all naive UTC or all aware UTC).
    """
    days_back = (now.weekday() - signed_up.weekday()) % 7
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - dt.timedelta(days=days_back)


def build_cells_in_window(user_id: int, start: dt.datetime, end: dt.datetime) -> Select[Any]:
    """SELECT the cells a user's requests used between ``start`` and ``end`` (naive UTC)."""
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


def _window(connection: Connection, user: User, now: dt.datetime) -> tuple[dt.datetime, int]:
    """Return the start of the user's current week and the cells used in it up to ``now``."""
    now_db = to_db_time("now", now)
    start = week_start(user.created_at.replace(tzinfo=None), now_db)
    with translated_errors():
        cells = connection.execute(build_cells_in_window(user.id, start, now_db)).scalar_one()
    return start, int(cells)


def cells_processed_this_week(connection: Connection, *, user_id: int, now: dt.datetime) -> int:
    """Return the cells the user's requests used in the current quota week up to ``now``.

    ``now`` must be timezone-aware. Raises NotFound for an unknown user, InvalidInput for bad
    arguments.
    """
    to_db_time("now", now)  # checked before any SQL
    return _window(connection, get_user(connection, user_id=user_id), now)[1]


def get_user_quota(connection: Connection, *, user_id: int, now: dt.datetime) -> UserQuota:
    """Return the user's quota position at ``now`` (timezone-aware).

    remaining_weekly_quota = max(0, min(weekly remaining, lifetime remaining));
    quota_reset_date is the next week start strictly after ``now``;
    remaining_lifetime_quota is None for an unlimited lifetime quota, else never negative.
    Raises NotFound for an unknown user, InvalidInput for bad arguments.
    """
    to_db_time("now", now)  # checked before any SQL
    found = get_user_with_usage(connection, user_id=user_id)
    user, usage = found.user, found.usage
    start, this_week = _window(connection, user, now)
    weekly_remaining = user.cell_quota - this_week
    lifetime_remaining = (
        None
        if user.lifetime_cell_quota is None
        else max(0, user.lifetime_cell_quota - usage.total_cells_processed)
    )
    remaining = weekly_remaining if lifetime_remaining is None else min(
        weekly_remaining, lifetime_remaining
    )
    return UserQuota(
        user_id=user.id,
        weekly_quota=user.cell_quota,
        remaining_weekly_quota=max(0, remaining),
        quota_reset_date=from_db_time(start + dt.timedelta(days=7)),
        lifetime_quota=user.lifetime_cell_quota,
        remaining_lifetime_quota=lifetime_remaining,
        quota_increased=user.quota_increased,
    )


