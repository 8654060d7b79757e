"""Hypothesis strategies for every row casdb stores, and the hostile values it refuses.

Valid strategies are valid by construction for the columns' types and lengths (varchar
lengths counted in characters, no NUL, no lone surrogate, int32 ranges, timezone-aware
times, JSON that jsonb stores and returns equal), and lean towards the awkward cases:
COPY's escape characters, the largest values, empty strings where allowed.

* Arguments of casdb's create operations, as dicts: ``users()``, ``keys()``,
  ``activities()``, ``models()``, ``indexes()``, ``ingests()``; rows for the bulk inserts:
  ``features()`` and ``cells()`` (records) or ``feature_rows()`` and ``cell_rows()``
  (mappings that leave optional columns out).
* Records as operations return them, for code that consumes casdb's records:
  ``user_records()``, ``key_records()``, ``activity_records()``, ``index_records()``,
  ``model_records()``, ``ingest_records()``.
* Column values: ``characters``, ``varchar(n)``, ``text255``, ``nonempty255``, ``int32``,
  ``counts``, ``positive_int32``, ``emails``, ``aware_times``, ``any_aware_times`` (other
  offsets, years 2-9998), ``json_documents``, ``json_objects``, ``key_hashes``, ``events``.
* Refused values (casdb raises InvalidInput before any SQL): ``refused_text()``,
  ``refused_emails``, ``refused_ints()``, ``refused_times``, ``refused_json``,
  ``refused_uuids``; and ``hostile``, anything at all (valid or not).

Example::

    @given(user=strategies.users())
    def test_signup(casdb_engine, user):
        with casdb.testing.rolled_back(casdb_engine) as conn:
            assert my_service.sign_up(conn, **user).email == user["email"]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
from hypothesis import strategies as st

from casdb.queries.activity import UserActivity
from casdb.queries.cells import Cell, Feature, Ingest
from casdb.queries.keys import UserKey
from casdb.queries.ml_models import MatchingEngineIndex, MLModel
from casdb.queries.users import User
from casdb.tables import UserActivityEvent
from casdb.testing._values import (
    INT32_MAX,
    INT32_MIN,
    TRICKY_TEXT,
    UTC,
    any_aware_times,
    aware_times,
    characters,
    counts,
    emails,
    events,
    hostile,
    ids,
    int32,
    json_documents,
    json_objects,
    json_scalars,
    key_hashes,
    nonempty255,
    positive_int32,
    refused_emails,
    refused_ints,
    refused_json,
    refused_text,
    refused_times,
    refused_uuids,
    text255,
    text511,
    varchar,
)

T = TypeVar("T")
Strategy = st.SearchStrategy

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "TRICKY_TEXT",
    "UTC",
    "activities",
    "activity_records",
    "any_aware_times",
    "aware_times",
    "cell_batches",
    "cell_rows",
    "cells",
    "characters",
    "counts",
    "emails",
    "events",
    "feature_rows",
    "features",
    "hostile",
    "ids",
    "index_records",
    "indexes",
    "ingest_records",
    "ingests",
    "int32",
    "json_documents",
    "json_objects",
    "json_scalars",
    "key_hashes",
    "key_records",
    "keys",
    "model_records",
    "models",
    "nonempty255",
    "positive_int32",
    "refused_emails",
    "refused_ints",
    "refused_json",
    "refused_text",
    "refused_times",
    "refused_uuids",
    "text255",
    "text511",
    "user_records",
    "users",
    "varchar",
]


def _strategy(value: T | Strategy[T]) -> Strategy[T]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def _arguments(
    required: Mapping[str, Strategy[Any]], optional: Mapping[str, Strategy[Any]]
) -> Strategy[dict[str, Any]]:
    return st.fixed_dictionaries(dict(required), optional=dict(optional))


# -- arguments of the create operations ----------------------------------------------------


def users() -> Strategy[dict[str, Any]]:
    """Keyword arguments of ``users.create_user`` (optional ones sometimes left out)."""
    return _arguments(
        {"email": emails, "username": nonempty255},
        {
            "active": st.booleans(),
            "is_admin": st.booleans(),
            "cell_quota": counts,
            "lifetime_cell_quota": st.none() | counts,
            "quota_increased": st.booleans(),
            "requests_processed": counts,
            "cells_processed": counts,
            "ask_for_feedback": st.booleans(),
            "created_at": aware_times,
        },
    )


def keys(user_id: int | Strategy[int] = ids) -> Strategy[dict[str, Any]]:
    """Keyword arguments of ``keys.create_user_key`` for ``user_id``."""
    return _arguments(
        {"user_id": _strategy(user_id), "key_hash": key_hashes},
        {"expires": st.none() | aware_times, "key_locator": st.none() | st.uuids(version=4)},
    )


def activities(user_id: int | Strategy[int] = ids) -> Strategy[dict[str, Any]]:
    """Keyword arguments of ``activity.log_user_activity`` for ``user_id``."""
    return _arguments(
        {
            "user_id": _strategy(user_id),
            "model_name": nonempty255,
            "method": st.none() | text255,
            "cell_count": counts,
            "event": events,
            "request_id": st.none() | text255,
        },
        {"finished_time": st.none() | aware_times},
    )


def models() -> Strategy[dict[str, Any]]:
    """Keyword arguments of ``ml_models.create_model`` (never ``is_default_model=True``)."""
    return _arguments(
        {
            "model_name": nonempty255,
            "model_file_path": nonempty255,
            "embedding_dimension": positive_int32,
        },
        {
            "description": st.none() | text511,
            "admin_use_only": st.booleans(),
            "schema_name": nonempty255,
            "bq_dataset_name": nonempty255,
            "created_date": st.none() | aware_times,
        },
    )


_INDEX_REQUIRED: dict[str, Strategy[Any]] = {
    "index_name": nonempty255,
    "embedding_dimension": positive_int32,
    "endpoint_id": nonempty255,
    "num_neighbors": positive_int32,
}
_INDEX_OPTIONAL: dict[str, Strategy[Any]] = {
    "description": st.none() | text511,
    "deployed_index_id": st.none() | nonempty255,
    "is_grpc": st.booleans(),
    "api_endpoint": st.none() | nonempty255,
}


def indexes(model_id: int | Strategy[int] = ids) -> Strategy[dict[str, Any]]:
    """Keyword arguments of ``ml_models.create_matching_engine_index`` for ``model_id``."""
    return _arguments({**_INDEX_REQUIRED, "model_id": _strategy(model_id)}, _INDEX_OPTIONAL)


def ingests() -> Strategy[dict[str, Any]]:
    """Keyword arguments of ``cells.create_ingest``."""
    return _arguments(
        {"cas_ingest_id": nonempty255, "dataset_id": nonempty255},
        {
            "dataset_version_id": st.none() | text255,
            "uns_metadata": st.none() | json_objects,
            "ingest_timestamp": st.none() | aware_times,
        },
    )


# -- rows of the bulk inserts --------------------------------------------------------------

_FEATURE_OPTIONAL: dict[str, Strategy[Any]] = {
    "feature_biotype": st.none() | text255,
    "feature_is_filtered": st.none() | st.booleans(),
    "feature_reference": st.none() | text255,
    "var_metadata_extra": json_objects | json_documents.filter(lambda doc: doc is not None),
}


def _cell_optional() -> dict[str, Strategy[Any]]:
    fields: dict[str, Strategy[Any]] = {}
    for name in (field.name for field in attrs.fields(Cell)):
        if name in ("cas_cell_index", "cas_ingest_id", "cell_type"):
            continue
        if name == "obs_metadata_extra":
            fields[name] = st.none() | json_objects | json_documents
        elif name == "is_primary_data":
            fields[name] = st.none() | st.booleans()
        elif name == "total_mrna_umis":
            fields[name] = st.none() | int32
        else:
            fields[name] = st.none() | text255
    return fields


def _bulk_rows(
    key: str,
    index: int | Strategy[int],
    cas_ingest_id: str | Strategy[str],
    required: Mapping[str, Strategy[Any]],
    optional: Mapping[str, Strategy[Any]],
) -> Strategy[dict[str, Any]]:
    """Rows of a bulk-insert table: its ``key`` column, its ingest, the other columns."""
    return _arguments(
        {key: _strategy(index), "cas_ingest_id": _strategy(cas_ingest_id), **required}, optional
    )


def feature_rows(
    cas_ingest_id: str | Strategy[str], cas_feature_index: int | Strategy[int] = int32
) -> Strategy[dict[str, Any]]:
    """Mappings for ``cells.insert_features`` (optional columns sometimes left out)."""
    required = {"original_feature_id": text255, "feature_name": text255}
    return _bulk_rows(
        "cas_feature_index", cas_feature_index, cas_ingest_id, required, _FEATURE_OPTIONAL
    )


def features(
    cas_ingest_id: str | Strategy[str], cas_feature_index: int | Strategy[int] = int32
) -> Strategy[Feature]:
    """Feature records for ``cells.insert_features``."""
    return feature_rows(cas_ingest_id, cas_feature_index).map(lambda row: Feature(**row))


def cell_rows(
    cas_ingest_id: str | Strategy[str], cas_cell_index: int | Strategy[int] = int32
) -> Strategy[dict[str, Any]]:
    """Mappings for ``cells.insert_cells`` (optional columns sometimes left out)."""
    required = {"cell_type": text255}
    return _bulk_rows("cas_cell_index", cas_cell_index, cas_ingest_id, required, _cell_optional())


def cells(
    cas_ingest_id: str | Strategy[str], cas_cell_index: int | Strategy[int] = int32
) -> Strategy[Cell]:
    """Cell records for ``cells.insert_cells``."""
    return cell_rows(cas_ingest_id, cas_cell_index).map(lambda row: Cell(**row))


def cell_batches(
    cas_ingest_id: str | Strategy[str], *, min_size: int = 0, max_size: int = 50
) -> Strategy[list[Cell]]:
    """Lists of Cell records with distinct cas_cell_index, ready for one insert_cells call."""
    return st.lists(
        cells(cas_ingest_id),
        min_size=min_size,
        max_size=max_size,
        unique_by=lambda cell: cell.cas_cell_index,
    )


# -- records as casdb returns them -----------------------------------------------------------

_stored_times = aware_times.map(lambda when: when.replace(tzinfo=UTC))


def user_records() -> Strategy[User]:
    """Users as ``users.get_user`` returns them."""
    return st.builds(
        User,
        id=ids,
        email=emails,
        username=nonempty255,
        active=st.booleans(),
        requests_processed=counts,
        cells_processed=counts,
        is_admin=st.booleans(),
        cell_quota=counts,
        lifetime_cell_quota=st.none() | counts,
        quota_increased=st.booleans(),
        created_at=_stored_times,
        ask_for_feedback=st.booleans(),
    )


def key_records() -> Strategy[UserKey]:
    """Keys (never their hash) as ``keys.list_user_keys`` returns them."""
    return st.builds(
        UserKey,
        id=ids,
        key_locator=st.uuids(version=4),
        user_id=ids,
        created_date=_stored_times,
        active=st.booleans(),
        expires=_stored_times,
    )


def activity_records() -> Strategy[UserActivity]:
    """Activity rows as ``activity.list_user_activity`` returns them."""
    return st.builds(
        UserActivity,
        id=ids,
        user_id=st.none() | ids,
        request_id=st.none() | text255,
        cell_count=counts,
        model_name=nonempty255,
        method=st.none() | text255,
        finished_time=st.none() | _stored_times,
        event=st.sampled_from(UserActivityEvent),
    )


def index_records(model_id: int | Strategy[int] = ids) -> Strategy[MatchingEngineIndex]:
    """Matching-engine indexes as ``ml_models.get_index_by_name`` returns them."""
    return st.builds(
        MatchingEngineIndex,
        id=ids,
        model_id=_strategy(model_id),
        **_INDEX_REQUIRED,
        **_INDEX_OPTIONAL,
    )


@st.composite
def model_records(draw: st.DrawFn, *, max_indexes: int = 3) -> MLModel:
    """Models with their indexes (ordered by id) as ``ml_models.get_model_by_name`` returns."""
    model_id = draw(ids)
    found = draw(
        st.lists(
            index_records(model_id),
            max_size=max_indexes,
            unique_by=(lambda index: index.id, lambda index: index.index_name),
        )
    )
    return MLModel(
        id=model_id,
        model_name=draw(nonempty255),
        model_file_path=draw(nonempty255),
        description=draw(st.none() | text511),
        embedding_dimension=draw(positive_int32),
        admin_use_only=draw(st.booleans()),
        schema_name=draw(nonempty255),
        bq_dataset_name=draw(nonempty255),
        is_default_model=draw(st.booleans()),
        created_date=draw(st.none() | _stored_times),
        indexes=tuple(sorted(found, key=lambda index: index.id)),
    )


def ingest_records() -> Strategy[Ingest]:
    """Ingests as ``cells.get_ingest`` returns them."""
    return st.builds(
        Ingest,
        cas_ingest_id=nonempty255,
        dataset_id=nonempty255,
        dataset_version_id=st.none() | text255,
        uns_metadata=json_objects,
        ingest_timestamp=st.none() | _stored_times,
    )
