"""activity: log and list, enum names accepted, times aware UTC."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine

from casdb import InvalidInput, NotFound, UserActivityEvent
from casdb.queries import activity, users
from tests.conftest import rolled_back
from tests.strategies import aware_times, counts, nonempty255, statements_sent, text255

events = st.sampled_from(UserActivityEvent) | st.sampled_from([e.name for e in UserActivityEvent])


@given(
    rows=st.lists(
        st.tuples(
            nonempty255, st.none() | text255, counts, events, st.none() | text255, aware_times
        ),
        min_size=1,
        max_size=8,
    )
)
def test_round_trip(
    engine: Engine,
    rows: list[tuple[str, str | None, int, UserActivityEvent | str, str | None, dt.datetime]],
) -> None:
    with rolled_back(engine) as conn:
        user = users.create_user(conn, email="a@cas.org", username="A")
        logged = []
        for model, method, cells, event, request, finished in rows:
            record = activity.log_user_activity(
                conn,
                user_id=user.id,
                model_name=model,
                method=method,
                cell_count=cells,
                event=event,
                request_id=request,
                finished_time=finished,
            )
            assert (
                record.model_name,
                record.method,
                record.cell_count,
                record.request_id,
                record.finished_time,
                record.user_id,
            ) == (model, method, cells, request, finished, user.id)
            assert (
                record.event is UserActivityEvent[event if isinstance(event, str) else event.name]
            )
            logged.append(record)
        assert activity.list_user_activity(conn, user_id=user.id) == logged
        since = sorted(r.finished_time for r in logged if r.finished_time)[len(logged) // 2]
        assert activity.list_user_activity(conn, user_id=user.id, since=since) == [
            r for r in logged if r.finished_time and r.finished_time >= since
        ]


def test_finished_time_defaults_to_now(conn: Connection) -> None:
    user = users.create_user(conn, email="n@cas.org", username="N")
    record = activity.log_user_activity(
        conn,
        user_id=user.id,
        model_name="m",
        method=None,
        cell_count=1,
        event="STARTED",
        request_id="r",
    )
    assert record.finished_time is not None
    assert abs(record.finished_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def test_unknown_user(conn: Connection) -> None:
    with pytest.raises(NotFound):
        activity.log_user_activity(
            conn,
            user_id=999999,
            model_name="m",
            method=None,
            cell_count=1,
            event="STARTED",
            request_id=None,
        )
    # The caller's transaction is still usable, and nothing was written.
    assert activity.list_user_activity(conn, user_id=999999) == []


@pytest.mark.parametrize(
    "change",
    [
        {"event": "DONE"},
        {"event": "succeeded"},
        {"event": 1},
        {"cell_count": -1},
        {"cell_count": 2**31},
        {"model_name": ""},
        {"model_name": "m" * 256},
        {"request_id": "r\x00"},
        {"finished_time": dt.datetime(2024, 1, 1)},
    ],
)
def test_bad_input_before_sql(conn: Connection, change: dict[str, object]) -> None:
    kwargs: dict[str, object] = {
        "user_id": 1,
        "model_name": "m",
        "method": None,
        "cell_count": 1,
        "event": "STARTED",
        "request_id": "r",
    }
    with statements_sent(conn) as sent, pytest.raises(InvalidInput):
        activity.log_user_activity(conn, **{**kwargs, **change})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        activity.list_user_activity(conn, user_id=1, since=dt.datetime(2024, 1, 1))
    assert sent == []
