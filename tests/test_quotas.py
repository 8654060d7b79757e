"""quotas: the weekly window and the remaining quota against a plain-Python reference."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine

from casdb import InvalidInput, NotFound, UserActivityEvent
from casdb.queries import activity, quotas, users
from tests.conftest import rolled_back
from tests.strategies import aware_times, counts, statements_sent

Row = tuple[str | None, int, UserActivityEvent, dt.datetime]


def reference_week_start(signup: dt.datetime, now: dt.datetime) -> dt.datetime:
    day = now.date() - dt.timedelta(days=(now.weekday() - signup.weekday()) % 7)
    return dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)


def reference_this_week(rows: list[Row], signup: dt.datetime, now: dt.datetime) -> int:
    start = reference_week_start(signup, now)
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row[0] is not None and start <= row[3] <= now:
            groups.setdefault(row[0], []).append(row)
    return sum(
        max(cells for _, cells, _, _ in group)
        for group in groups.values()
        if not any(event is UserActivityEvent.FAILED for _, _, event, _ in group)
    )


# Offsets from now that hit the window's edges often: exact week starts, now itself, the future.
offsets = st.one_of(
    st.integers(-15 * 24 * 60, 24 * 60).map(lambda m: dt.timedelta(minutes=m)),
    st.sampled_from([dt.timedelta(0), dt.timedelta(microseconds=1), dt.timedelta(days=-7)]),
)


def _log(
    conn: Connection, user_id: int, request: str | None, cells: int, event: Any, at: dt.datetime
) -> None:
    """One activity row of model "m" (what the quota rules read)."""
    activity.log_user_activity(
        conn,
        user_id=user_id,
        model_name="m",
        method=None,
        cell_count=cells,
        event=event,
        request_id=request,
        finished_time=at,
    )


@given(
    signup=aware_times,
    now=aware_times,
    edge=st.booleans(),
    quota=counts,
    lifetime=st.none() | counts,
    legacy_cells=st.integers(0, 10**6),
    raw_rows=st.lists(
        st.tuples(
            st.none() | st.sampled_from(["r1", "r2", "r3", "r4"]),
            st.integers(0, 10**6),
            st.sampled_from(UserActivityEvent),
            offsets,
            st.booleans(),
        ),
        max_size=20,
    ),
)
def test_matches_reference(
    engine: Engine,
    signup: dt.datetime,
    now: dt.datetime,
    edge: bool,
    quota: int,
    lifetime: int | None,
    legacy_cells: int,
    raw_rows: list[tuple[str | None, int, UserActivityEvent, dt.timedelta, bool]],
) -> None:
    week_start = reference_week_start(signup, now)
    rows: list[Row] = [
        # ``at_start`` pins a row on the week start itself, a boundary the window includes.
        (request, cells, event, week_start if at_start and edge else now + offset)
        for request, cells, event, offset, at_start in raw_rows
    ]
    with rolled_back(engine) as conn:
        user = users.create_user(
            conn,
            email="q@cas.org",
            username="Q",
            created_at=signup,
            cell_quota=quota,
            lifetime_cell_quota=lifetime,
            cells_processed=legacy_cells,
        )
        for row in rows:
            _log(conn, user.id, *row)
        this_week = reference_this_week(rows, signup, now)
        assert quotas.cells_processed_this_week(conn, user_id=user.id, now=now) == this_week

        succeeded = sum(c for _, c, e, _ in rows if e is UserActivityEvent.SUCCEEDED)
        lifetime_left = None if lifetime is None else max(0, lifetime - legacy_cells - succeeded)
        weekly_left = quota - this_week
        expected = quotas.UserQuota(
            user_id=user.id,
            weekly_quota=quota,
            remaining_weekly_quota=max(
                0, weekly_left if lifetime_left is None else min(weekly_left, lifetime_left)
            ),
            quota_reset_date=week_start + dt.timedelta(days=7),
            lifetime_quota=lifetime,
            remaining_lifetime_quota=lifetime_left,
            quota_increased=False,
        )
        assert quotas.get_user_quota(conn, user_id=user.id, now=now) == expected


def test_reset_date_is_the_next_week_start_after_now(conn: Connection) -> None:
    monday = dt.datetime(2024, 1, 1, 15, 30, tzinfo=dt.UTC)  # signed up on a Monday afternoon
    user = users.create_user(conn, email="r@cas.org", username="R", created_at=monday)
    wednesday = dt.datetime(2024, 3, 13, 9, 0, tzinfo=dt.UTC)
    quota = quotas.get_user_quota(conn, user_id=user.id, now=wednesday)
    assert quota.quota_reset_date == dt.datetime(2024, 3, 18, tzinfo=dt.UTC)
    on_the_start = dt.datetime(2024, 3, 18, tzinfo=dt.UTC)
    assert quotas.get_user_quota(conn, user_id=user.id, now=on_the_start).quota_reset_date == (
        dt.datetime(2024, 3, 25, tzinfo=dt.UTC)
    )


def test_failed_request_counts_zero_and_started_only_counts(conn: Connection) -> None:
    user = users.create_user(
        conn, email="f@cas.org", username="F", created_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    )
    now = dt.datetime(2024, 1, 3, 12, tzinfo=dt.UTC)
    at = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    for request, cells, event in [
        ("a", 100, "STARTED"),
        ("a", 100, "SUCCEEDED"),
        ("b", 50, "STARTED"),
        ("b", 50, "FAILED"),
        ("c", 7, "STARTED"),
        (None, 1000, "SUCCEEDED"),
    ]:
        _log(conn, user.id, request, cells, event, at)
    assert quotas.cells_processed_this_week(conn, user_id=user.id, now=now) == 107


def test_errors(conn: Connection) -> None:
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(NotFound):
        quotas.get_user_quota(conn, user_id=987654, now=now)
    with pytest.raises(InvalidInput):
        quotas.get_user_quota(conn, user_id=1, now=now.replace(tzinfo=None))
    with pytest.raises(InvalidInput):
        quotas.cells_processed_this_week(conn, user_id=1, now="now")  # type: ignore[arg-type]


def test_quota_takes_one_statement(conn: Connection) -> None:
    user = users.create_user(conn, email="two@cas.org", username="T")
    for operation in (quotas.get_user_quota, quotas.cells_processed_this_week):
        with statements_sent(conn) as sent:
            operation(conn, user_id=user.id, now=dt.datetime.now(dt.UTC))
        assert len(sent) == 1  # one snapshot: user, usage totals, week start and week's cells
    both = users.get_user_with_usage(conn, user_id=user.id)
    assert both.user == user and both.usage == users.get_user_usage(conn, user_id=user.id)


def test_a_quota_is_read_from_one_snapshot_while_activity_is_written(engine: Engine) -> None:
    """Under READ COMMITTED, writers log requests (each adds the same cells to the week and to
    the lifetime) while readers read quotas: with equal weekly and lifetime quotas and every
    request in this week, every quota must show equal remainders. Two statements (the user's
    totals, then the week) mixed snapshots: the week ran ahead of the lifetime."""
    signup = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    finished = dt.datetime(2024, 1, 9, 12, tzinfo=dt.UTC)
    now = finished + dt.timedelta(hours=1)
    with engine.begin() as conn:
        user = users.create_user(
            conn,
            email=f"snap-{uuid.uuid4()}@cas.org",
            username="S",
            created_at=signup,
            cell_quota=10**9,
            lifetime_cell_quota=10**9,
        )
    done = threading.Event()
    mixed: list[quotas.UserQuota] = []
    reads: list[int] = []
    errors: list[BaseException] = []

    def write(n: int) -> None:
        for i in range(150):
            with engine.begin() as conn:
                activity.log_user_activity(
                    conn,
                    user_id=user.id,
                    model_name="m",
                    method=None,
                    cell_count=1 + i % 5,
                    event="SUCCEEDED",
                    request_id=f"w{n}-{i}",
                    finished_time=finished,
                )

    def read() -> None:
        while not done.is_set():
            with engine.connect() as conn:
                quota = quotas.get_user_quota(conn, user_id=user.id, now=now)
            reads.append(1)
            if quota.remaining_weekly_quota != quota.remaining_lifetime_quota:
                mixed.append(quota)

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
                done.set()

        return run

    writers = [threading.Thread(target=guarded(lambda n=n: write(n))) for n in range(2)]
    readers = [threading.Thread(target=guarded(read)) for _ in range(2)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    done.set()
    for thread in readers:
        thread.join(timeout=30)
    assert not errors
    assert len(reads) > 50
    assert not mixed, f"{len(mixed)} of {len(reads)} quotas mixed two snapshots: {mixed[0]}"
