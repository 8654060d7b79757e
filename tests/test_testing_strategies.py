"""casdb.testing.strategies: valid values fit the columns and round-trip; refused ones are
refused (InvalidInput, before any SQL)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Boolean, DateTime, Engine, Enum, Integer, String, Table, Text, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB, UUID

from casdb import InvalidInput
from casdb._checks import check_json
from casdb.queries import activity, cells, keys, ml_models, users
from casdb.queries.keys import MAX_KEY_HASH_LENGTH
from casdb.tables import (
    cells_cellinfo,
    cells_featureinfo,
    cells_ingestinfo,
    ml_management_matchingengineindex,
    ml_management_model,
    users_user,
    users_useractivity,
    users_userkey,
)
from casdb.testing import rolled_back, statements_sent
from casdb.testing import strategies as cs

INT32 = range(-(2**31), 2**31)
FILLED_IN = {"key_locator"}  # None: the operation picks a value (a random UUID)


def assert_fits(table: Table, values: Mapping[str, Any]) -> None:
    """Every value is one the column's type, length and nullability accept."""
    for name, value in values.items():
        if name not in table.c:
            continue
        column = table.c[name]
        if value is None:  # NOT NULL columns with a default take None as "the default"
            assert column.nullable or column.server_default is not None or name in FILLED_IN, name
            continue
        kind = column.type
        if isinstance(kind, TypeDecorator):  # UTCDateTime, SecretText: judge the stored type
            kind = kind.impl_instance
        if isinstance(kind, Enum):
            assert isinstance(value, kind.enum_class) or value in kind.enum_class.__members__, name
        elif isinstance(kind, String | Text):
            limit = kind.length or MAX_KEY_HASH_LENGTH
            assert isinstance(value, str) and len(value) <= limit and "\x00" not in value, name
            value.encode("utf-8")
        elif isinstance(kind, Boolean):
            assert isinstance(value, bool), name
        elif isinstance(kind, Integer):
            assert type(value) is int and value in INT32, name
        elif isinstance(kind, DateTime):
            assert isinstance(value, dt.datetime) and value.utcoffset() is not None, name
        elif isinstance(kind, JSONB):
            check_json(name, value)
        elif isinstance(kind, UUID):
            assert isinstance(value, uuid.UUID), name
        else:
            raise AssertionError(f"no check for {name} of type {kind}")


# -- arguments and rows: they fit, and casdb stores and returns them -------------------------


@given(user=cs.users())
def test_users_round_trip(engine: Engine, user: dict[str, Any]) -> None:
    assert_fits(users_user, user)
    with rolled_back(engine) as conn:
        created = users.create_user(conn, **user)
        assert users.get_user_by_email(conn, email=user["email"]) == created
        for name, value in user.items():
            assert getattr(created, name) == value, name


@given(when=cs.any_aware_times)
def test_any_aware_time_is_stored_as_the_same_instant(engine: Engine, when: dt.datetime) -> None:
    with rolled_back(engine) as conn:
        user = users.create_user(conn, email="t@cas.org", username="T", created_at=when)
        assert user.created_at == when and user.created_at.tzinfo is dt.UTC
        assert users.get_user(conn, user_id=user.id).created_at == when


@given(data=st.data())
def test_keys_and_activity_round_trip(engine: Engine, data: st.DataObject) -> None:
    with rolled_back(engine) as conn:
        user = users.create_user(conn, email="k@cas.org", username="K")
        key = data.draw(cs.keys(user_id=user.id))
        event = data.draw(cs.activities(user_id=user.id))
        assert_fits(users_userkey, key)
        assert_fits(users_useractivity, event)
        stored = keys.create_user_key(conn, **key)
        assert (
            keys.get_key_for_authentication(conn, key_locator=stored.key_locator).key_hash
            == (key["key_hash"])
        )
        logged = activity.log_user_activity(conn, **event)
        assert activity.list_user_activity(conn, user_id=user.id) == [logged]
        assert (logged.model_name, logged.cell_count) == (event["model_name"], event["cell_count"])


@given(model=cs.models(), data=st.data())
def test_models_and_indexes_round_trip(
    engine: Engine, model: dict[str, Any], data: st.DataObject
) -> None:
    assert_fits(ml_management_model, model)
    with rolled_back(engine) as conn:
        created = ml_models.create_model(conn, **model)
        index = data.draw(cs.indexes(model_id=created.id))
        assert_fits(ml_management_matchingengineindex, index)
        made = ml_models.create_matching_engine_index(conn, **index)
        found = ml_models.get_model_by_name(conn, model_name=model["model_name"])
        assert found == attrs.evolve(created, indexes=(made,))


# Batches of full-length rows are large by design (COPY's escaping at every length):
# Hypothesis' size health check then fires at random, not on a fault.
@settings(suppress_health_check=[*settings().suppress_health_check, HealthCheck.data_too_large])
@given(ingest=cs.ingests(), data=st.data())
def test_ingests_features_and_cells_round_trip(
    engine: Engine, ingest: dict[str, Any], data: st.DataObject
) -> None:
    assert_fits(cells_ingestinfo, ingest)
    ingest_id = ingest["cas_ingest_id"]
    batch = data.draw(cs.cell_batches(ingest_id, max_size=8))
    rows = data.draw(
        st.lists(
            cs.cell_rows(ingest_id), max_size=4, unique_by=lambda row: row["cas_cell_index"]
        ).filter(
            lambda found: (
                not {row["cas_cell_index"] for row in found}
                & {cell.cas_cell_index for cell in batch}
            )
        )
    )
    features = data.draw(
        st.lists(
            cs.features(ingest_id) | cs.feature_rows(ingest_id),
            max_size=4,
            unique_by=_feature_index,
        )
    )
    for row in [attrs.asdict(cell) for cell in batch] + rows:
        assert_fits(cells_cellinfo, row)
    for feature in features:
        assert_fits(
            cells_featureinfo, feature if isinstance(feature, dict) else attrs.asdict(feature)
        )
    with rolled_back(engine) as conn:
        created = cells.create_ingest(conn, **ingest)
        assert cells.get_ingest(conn, cas_ingest_id=ingest_id) == created
        assert cells.insert_cells(conn, rows=batch) == len(batch)
        assert cells.insert_cells(conn, rows=rows) == len(rows)
        assert cells.insert_features(conn, rows=features) == len(features)
        found = cells.get_cell_metadata_by_ids(conn, cell_ids=[c.cas_cell_index for c in batch])
        assert [cell.values for cell in found] == [attrs.asdict(cell) for cell in batch]
        assert cells.count_cells(conn, cas_ingest_id=ingest_id) == len(batch) + len(rows)


def _feature_index(feature: Any) -> int:
    return int(
        feature["cas_feature_index"] if isinstance(feature, dict) else feature.cas_feature_index
    )


# -- records: what casdb returns -------------------------------------------------------------


@given(
    user=cs.user_records(),
    key=cs.key_records(),
    event=cs.activity_records(),
    model=cs.model_records(),
    ingest=cs.ingest_records(),
)
def test_records_fit_their_tables(
    user: users.User,
    key: keys.UserKey,
    event: activity.UserActivity,
    model: ml_models.MLModel,
    ingest: cells.Ingest,
) -> None:
    assert_fits(users_user, attrs.asdict(user))
    assert_fits(users_userkey, attrs.asdict(key))
    assert_fits(users_useractivity, attrs.asdict(event, recurse=False))
    assert_fits(ml_management_model, attrs.asdict(model, recurse=False))
    for index in model.indexes:
        assert index.model_id == model.id
        assert_fits(ml_management_matchingengineindex, attrs.asdict(index))
    assert [index.id for index in model.indexes] == sorted(index.id for index in model.indexes)
    assert_fits(cells_ingestinfo, attrs.asdict(ingest))
    for when in (user.created_at, key.created_date, key.expires):
        assert when.tzinfo is dt.UTC


# -- refused values: InvalidInput before any SQL --------------------------------------------

Valid = Callable[[int], st.SearchStrategy[dict[str, Any]]]  # from the id of a parent row

REFUSED: list[tuple[Callable[..., Any], Valid, str, st.SearchStrategy[Any]]] = [
    (users.create_user, lambda _: cs.users(), "email", cs.refused_emails),
    (users.create_user, lambda _: cs.users(), "username", cs.refused_text()),
    (users.create_user, lambda _: cs.users(), "cell_quota", cs.refused_ints(0)),
    (users.create_user, lambda _: cs.users(), "lifetime_cell_quota", cs.refused_ints(0)),
    (users.create_user, lambda _: cs.users(), "created_at", cs.refused_times),
    (keys.create_user_key, cs.keys, "key_hash", cs.refused_text(MAX_KEY_HASH_LENGTH)),
    (keys.create_user_key, cs.keys, "key_locator", cs.refused_uuids),
    (keys.create_user_key, cs.keys, "expires", cs.refused_times),
    (activity.log_user_activity, cs.activities, "model_name", cs.refused_text()),
    (activity.log_user_activity, cs.activities, "method", cs.refused_text(allow_empty=True)),
    (activity.log_user_activity, cs.activities, "cell_count", cs.refused_ints(0)),
    (activity.log_user_activity, cs.activities, "finished_time", cs.refused_times),
    (
        ml_models.create_model,
        lambda _: cs.models(),
        "description",
        cs.refused_text(511, allow_empty=True),
    ),
    (ml_models.create_model, lambda _: cs.models(), "embedding_dimension", cs.refused_ints(1)),
    (ml_models.create_matching_engine_index, cs.indexes, "num_neighbors", cs.refused_ints(1)),
    (ml_models.create_matching_engine_index, cs.indexes, "deployed_index_id", cs.refused_text()),
    (cells.create_ingest, lambda _: cs.ingests(), "dataset_id", cs.refused_text()),
    (cells.create_ingest, lambda _: cs.ingests(), "uns_metadata", cs.refused_json),
]


@pytest.mark.parametrize(
    ("operation", "valid", "argument", "refused"),
    REFUSED,
    ids=[f"{op.__name__}-{arg}" for op, _, arg, _ in REFUSED],
)
def test_refused_values_are_refused_before_any_sql(
    engine: Engine,
    operation: Callable[..., Any],
    valid: Valid,
    argument: str,
    refused: st.SearchStrategy[Any],
) -> None:
    with rolled_back(engine) as conn:
        parent = users.create_user(conn, email="p@cas.org", username="P").id
        if operation is ml_models.create_matching_engine_index:
            parent = ml_models.create_model(
                conn, model_name="m", model_file_path="f", embedding_dimension=2
            ).id

        @given(kwargs=valid(parent), bad=refused)
        def check(kwargs: dict[str, Any], bad: Any) -> None:
            with statements_sent(conn) as sent, pytest.raises(InvalidInput):
                operation(conn, **(kwargs | {argument: bad}))
            assert sent == []

        check()


@pytest.mark.parametrize(
    ("field", "refused"),
    [
        ("cell_type", cs.refused_text(255, allow_empty=True)),
        ("donor_id", cs.refused_text(255, allow_empty=True)),
        ("total_mrna_umis", cs.refused_ints()),
        ("is_primary_data", cs.hostile.filter(lambda value: not isinstance(value, bool | None))),
        ("obs_metadata_extra", cs.refused_json),
    ],
)
def test_refused_cell_values_are_refused_and_nothing_stays(
    engine: Engine, field: str, refused: st.SearchStrategy[Any]
) -> None:
    with rolled_back(engine) as conn:
        cells.create_ingest(conn, cas_ingest_id="ing", dataset_id="d")

        @given(
            batch=cs.cell_batches("ing", min_size=1, max_size=5), bad=refused, at=st.integers(0, 4)
        )
        def check(batch: list[cells.Cell], bad: Any, at: int) -> None:
            at %= len(batch)
            batch[at] = attrs.evolve(batch[at], **{field: bad})
            with pytest.raises(InvalidInput) as raised:
                cells.insert_cells(conn, rows=batch)
            assert raised.value.row == at and raised.value.field == field
            assert cells.count_cells(conn) == 0

        check()
