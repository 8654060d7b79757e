"""Raw Core round trips on every table: types map both ways, server defaults fill in."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, exc, insert, select, text

from casdb import InvalidInput
from casdb import tables as t
from tests.conftest import rolled_back

text255 = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=255)
int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text255,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(text255, children, max_size=4)
    ),
    max_leaves=12,
)
# Timestamp columns are UTCDateTime: aware UTC in Python, UTC wall-clock in the column.
utc_times = st.datetimes(
    min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
)


def _round_trip(conn: Connection, table: t.Table, row: dict[str, object]) -> dict[str, object]:
    key = conn.execute(insert(table).values(row).returning(*table.primary_key.columns)).one()
    condition = [col == value for col, value in zip(table.primary_key.columns, key, strict=True)]
    return dict(conn.execute(select(table).where(*condition)).one()._mapping)


@given(
    email=text255.filter(bool),
    username=text255,
    quota=int32,
    lifetime=st.none() | int32,
    created=utc_times,
)
def test_users_user(
    engine: Engine,
    email: str,
    username: str,
    quota: int,
    lifetime: int | None,
    created: dt.datetime,
) -> None:
    with rolled_back(engine) as conn:
        row = {
            "email": email,
            "username": username,
            "cell_quota": quota,
            "lifetime_cell_quota": lifetime,
            "created_at": created,
        }
        back = _round_trip(conn, t.users_user, row)
        assert {k: back[k] for k in row} == row
        assert (
            back["active"],
            back["is_admin"],
            back["requests_processed"],
            back["cells_processed"],
            back["quota_increased"],
            back["ask_for_feedback"],
        ) == (True, False, 0, 0, False, True)


def test_defaults_are_computed_per_row(conn: Connection) -> None:
    before = dt.datetime.now(dt.UTC)
    user = _round_trip(conn, t.users_user, {"email": "a@b", "username": "a"})
    assert user["cell_quota"] == 100000 and user["lifetime_cell_quota"] == 50000
    created = user["created_at"]
    assert isinstance(created, dt.datetime)
    assert abs(created - before) < dt.timedelta(minutes=1)
    key = _round_trip(
        conn, t.users_userkey, {"key_locator": uuid.uuid4(), "user_id": user["id"], "key_hash": "h"}
    )
    assert key["expires"] - key["created_date"] == dt.timedelta(days=180)
    assert key["active"] is True


@given(
    event=st.sampled_from(t.UserActivityEvent),
    count=int32,
    model=text255,
    method=st.none() | text255,
    request=st.none() | text255,
    finished=utc_times,
)
def test_users_useractivity(
    engine: Engine,
    event: t.UserActivityEvent,
    count: int,
    model: str,
    method: str | None,
    request: str | None,
    finished: dt.datetime,
) -> None:
    with rolled_back(engine) as conn:
        user = _round_trip(conn, t.users_user, {"email": "x@y", "username": "x"})
        row = {
            "user_id": user["id"],
            "event": event,
            "cell_count": count,
            "model_name": model,
            "method": method,
            "request_id": request,
            "finished_time": finished,
        }
        back = _round_trip(conn, t.users_useractivity, row)
        assert {k: back[k] for k in row} == row


def test_users_userkey(conn: Connection) -> None:
    user = _round_trip(conn, t.users_user, {"email": "k@y", "username": "k"})
    row = {
        "key_locator": uuid.uuid4(),
        "user_id": user["id"],
        "key_hash": "$argon2id$…",
        "active": False,
        "created_date": dt.datetime(2024, 2, 29, 12, tzinfo=dt.UTC),
        "expires": dt.datetime(2024, 8, 27, 12, tzinfo=dt.UTC),
    }
    back = _round_trip(conn, t.users_userkey, row)
    assert {k: back[k] for k in row} == row


@given(
    name=text255.filter(bool),
    description=st.none() | st.text(max_size=511).filter(lambda s: "\x00" not in s),
    dimension=int32,
)
def test_models_and_indexes(
    engine: Engine, name: str, description: str | None, dimension: int
) -> None:
    with rolled_back(engine) as conn:
        model = {
            "model_name": name,
            "model_file_path": "gs://m",
            "embedding_dimension": dimension,
            "description": description,
        }
        back = _round_trip(conn, t.ml_management_model, model)
        assert {k: back[k] for k in model} == model
        assert back["schema_name"] == "refdata-gex-GRCh38-2020-A"
        assert back["bq_dataset_name"] == "cas_50m_dataset"
        assert back["admin_use_only"] is True and back["is_default_model"] is False
        index = {
            "index_name": name,
            "description": description,
            "embedding_dimension": dimension,
            "endpoint_id": "e",
            "deployed_index_id": None,
            "num_neighbors": 100,
            "model_id": back["id"],
            "api_endpoint": None,
        }
        index_back = _round_trip(conn, t.ml_management_matchingengineindex, index)
        assert {k: index_back[k] for k in index} == index
        assert index_back["is_grpc"] is True


@given(
    ingest_id=text255.filter(bool),
    uns=json_values,
    extra=json_values,
    umis=int32,
    primary=st.none() | st.booleans(),
)
def test_cells_tables(
    engine: Engine, ingest_id: str, uns: object, extra: object, umis: int, primary: bool | None
) -> None:
    with rolled_back(engine) as conn:
        ingest = {"cas_ingest_id": ingest_id, "dataset_id": "d", "uns_metadata": uns}
        back = _round_trip(conn, t.cells_ingestinfo, ingest)
        assert {k: back[k] for k in ingest} == ingest
        feature = {
            "cas_feature_index": 1,
            "original_feature_id": "ENSG",
            "feature_name": "TP53",
            "var_metadata_extra": extra,
            "cas_ingest_id": ingest_id,
        }
        feature_back = _round_trip(conn, t.cells_featureinfo, feature)
        assert {k: feature_back[k] for k in feature} == feature
        assert feature_back["id"] is None and feature_back["feature_is_filtered"] is False
        cell = {
            "cas_cell_index": 1,
            "cas_ingest_id": ingest_id,
            "cell_type": "T cell",
            "obs_metadata_extra": extra,
            "total_mrna_umis": umis,
            "is_primary_data": primary,
        }
        cell_back = _round_trip(conn, t.cells_cellinfo, cell)
        assert {k: cell_back[k] for k in cell} == cell


def test_times_are_utc_wall_clock_in_the_column_and_aware_in_python(conn: Connection) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    user = _round_trip(
        conn,
        t.users_user,
        {
            "email": "tz@y",
            "username": "tz",
            "created_at": dt.datetime(2024, 3, 1, 1, 30, tzinfo=plus_two),
        },
    )
    assert user["created_at"] == dt.datetime(2024, 2, 29, 23, 30, tzinfo=dt.UTC)
    assert user["created_at"].tzinfo is dt.UTC
    stored = conn.execute(
        text("SELECT created_at::text FROM users_user WHERE id = :id"), {"id": user["id"]}
    ).scalar_one()
    assert stored == "2024-02-29 23:30:00"  # the column holds naive UTC wall-clock time
    # ``column + timedelta`` stays an interval expression, not a timestamp to convert
    later = conn.execute(
        select(t.users_user.c.created_at + dt.timedelta(days=1)).where(
            t.users_user.c.id == user["id"]
        )
    ).scalar_one()
    assert later.replace(tzinfo=dt.UTC) == dt.datetime(2024, 3, 1, 23, 30, tzinfo=dt.UTC)


def test_a_naive_time_is_refused_by_the_column_type(conn: Connection) -> None:
    with pytest.raises(exc.StatementError) as raised:
        conn.execute(
            insert(t.users_user).values(
                email="n@y", username="n", created_at=dt.datetime(2024, 1, 1)
            )
        )
    assert isinstance(raised.value.orig, InvalidInput)
