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

import datetime as dt
import math
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
from hypothesis import strategies as st

from casdb.queries.activity import UserActivity
from casdb.queries.cells import CellRecord, FeatureRecord, IngestRecord
from casdb.queries.keys import MAX_KEY_HASH_LENGTH, UserKey
from casdb.queries.ml_models import MatchingEngineIndex, MLModel
from casdb.queries.users import User
from casdb.tables import UserActivityEvent

T = TypeVar("T")
Strategy = st.SearchStrategy

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
UTC = dt.UTC

# -- building blocks -----------------------------------------------------------------------

# Any Unicode PostgreSQL can store in text: no NUL, no lone surrogates.
characters = st.characters(codec="utf-8", exclude_characters="\x00")

# Strings that COPY's text format must escape, or that look like its markers or like SQL.
TRICKY_TEXT = (
    "", "\\N", "\\", "\\\\N", "\t", "\n", "\r", "\r\n", "a\tb\nc\\d", "\\.", '"q"', "'",
    "NULL", "\\x41", "é ü 漢字 🧬", "\u2028", "\x01\x7f", "'; drop table users_user; --",
)


def varchar(max_length: int = 255, *, min_size: int = 0) -> Strategy[str]:
    """Strings that fit a varchar(max_length) column: the tricky ones, short, and full length."""
    tricky = [text for text in TRICKY_TEXT if min_size <= len(text) <= max_length]
    return st.one_of(
        st.sampled_from(tricky) if tricky else st.nothing(),
        st.text(characters, min_size=min_size, max_size=min(max_length, 30)),
        st.text(characters, min_size=max_length, max_size=max_length),
        st.text(st.sampled_from("\\\t\n\rxé"), min_size=min_size, max_size=max_length),
    )


text255 = varchar(255)
nonempty255 = varchar(255, min_size=1)
text511 = varchar(511)
int32 = st.sampled_from([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX]) | (
    st.integers(INT32_MIN, INT32_MAX)
)
# Non-negative int32: counters and quotas.
counts = st.integers(min_value=0, max_value=INT32_MAX) | st.sampled_from([0, 1, INT32_MAX])
# Positive int32: dimensions, neighbour counts.
positive_int32 = st.sampled_from([1, 2, INT32_MAX - 1, INT32_MAX]) | st.integers(1, INT32_MAX)

_email_chars = st.characters(
    codec="utf-8", exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"], exclude_characters="@\x85"
).filter(lambda ch: not ch.isspace())
# 1-255 characters, one @ with text on both sides, no whitespace or control characters.
emails = st.tuples(
    st.text(_email_chars, min_size=1, max_size=120), st.text(_email_chars, min_size=1, max_size=120)
).map(lambda parts: f"{parts[0]}@{parts[1]}") | st.text(
    _email_chars, min_size=253, max_size=253
).map(lambda s: f"a@{s}")

# Aware UTC times (what casdb returns); ``any_aware_times`` adds other offsets and years.
aware_times = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC)
)
# Fixed offsets (no tz database needed), to the minute, within +-14 hours.
_offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: dt.timezone(dt.timedelta(
    minutes=minutes)))
any_aware_times = st.datetimes(
    min_value=dt.datetime(2, 1, 1),
    max_value=dt.datetime(9998, 12, 31),
    timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=-7, minutes=-30))]) | _offsets,
)

_json_text = st.sampled_from(TRICKY_TEXT) | st.text(characters, max_size=20)
# jsonb stores numbers as numeric: floats within +-1e15 come back equal (larger ones may
# return as the decimal the float printed as, which is not the float).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | _json_text
    | st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False)
)
json_documents = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_json_text, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(_json_text, json_documents, max_size=5)

key_hashes = st.text(characters, min_size=1, max_size=200).map(lambda s: "$argon2id$" + s) | (
    st.text(characters, min_size=MAX_KEY_HASH_LENGTH, max_size=MAX_KEY_HASH_LENGTH)
)
events = st.sampled_from(UserActivityEvent) | st.sampled_from([e.name for e in UserActivityEvent])
ids = st.integers(1, INT32_MAX)


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
        {"model_name": nonempty255, "model_file_path": nonempty255,
         "embedding_dimension": positive_int32},
        {
            "description": st.none() | text511,
            "admin_use_only": st.booleans(),
            "schema_name": nonempty255,
            "bq_dataset_name": nonempty255,
            "created_date": st.none() | aware_times,
        },
    )


def indexes(model_id: int | Strategy[int] = ids) -> Strategy[dict[str, Any]]:
    """Keyword arguments of ``ml_models.create_matching_engine_index`` for ``model_id``."""
    return _arguments(
        {
            "index_name": nonempty255,
            "embedding_dimension": positive_int32,
            "endpoint_id": nonempty255,
            "num_neighbors": positive_int32,
            "model_id": _strategy(model_id),
        },
        {
            "description": st.none() | text511,
            "deployed_index_id": st.none() | nonempty255,
            "is_grpc": st.booleans(),
            "api_endpoint": st.none() | nonempty255,
        },
    )


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
    for name in (field.name for field in attrs.fields(CellRecord)):
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


def feature_rows(
    cas_ingest_id: str | Strategy[str], cas_feature_index: int | Strategy[int] = int32
) -> Strategy[dict[str, Any]]:
    """Mappings for ``cells.insert_features`` (optional columns sometimes left out)."""
    return _arguments(
        {
            "cas_feature_index": _strategy(cas_feature_index),
            "cas_ingest_id": _strategy(cas_ingest_id),
            "original_feature_id": text255,
            "feature_name": text255,
        },
        _FEATURE_OPTIONAL,
    )


def features(
    cas_ingest_id: str | Strategy[str], cas_feature_index: int | Strategy[int] = int32
) -> Strategy[FeatureRecord]:
    """FeatureRecords for ``cells.insert_features``."""
    return feature_rows(cas_ingest_id, cas_feature_index).map(lambda row: FeatureRecord(**row))


def cell_rows(
    cas_ingest_id: str | Strategy[str], cas_cell_index: int | Strategy[int] = int32
) -> Strategy[dict[str, Any]]:
    """Mappings for ``cells.insert_cells`` (optional columns sometimes left out)."""
    return _arguments(
        {
            "cas_cell_index": _strategy(cas_cell_index),
            "cas_ingest_id": _strategy(cas_ingest_id),
            "cell_type": text255,
        },
        _cell_optional(),
    )


def cells(
    cas_ingest_id: str | Strategy[str], cas_cell_index: int | Strategy[int] = int32
) -> Strategy[CellRecord]:
    """CellRecords for ``cells.insert_cells``."""
    return cell_rows(cas_ingest_id, cas_cell_index).map(lambda row: CellRecord(**row))


def cell_batches(
    cas_ingest_id: str | Strategy[str], *, min_size: int = 0, max_size: int = 50
) -> Strategy[list[CellRecord]]:
    """Lists of CellRecords with distinct cas_cell_index, ready for one insert_cells call."""
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
        index_name=nonempty255,
        description=st.none() | text511,
        embedding_dimension=positive_int32,
        endpoint_id=nonempty255,
        deployed_index_id=st.none() | nonempty255,
        num_neighbors=positive_int32,
        model_id=_strategy(model_id),
        is_grpc=st.booleans(),
        api_endpoint=st.none() | nonempty255,
    )


@st.composite
def model_records(draw: st.DrawFn, *, max_indexes: int = 3) -> MLModel:
    """Models with their indexes (ordered by id) as ``ml_models.get_model_by_name`` returns."""
    model_id = draw(ids)
    found = draw(st.lists(index_records(model_id), max_size=max_indexes, unique_by=(
        lambda index: index.id, lambda index: index.index_name)))
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


def ingest_records() -> Strategy[IngestRecord]:
    """Ingests as ``cells.get_ingest`` returns them."""
    return st.builds(
        IngestRecord,
        cas_ingest_id=nonempty255,
        dataset_id=nonempty255,
        dataset_version_id=st.none() | text255,
        uns_metadata=json_objects,
        ingest_timestamp=st.none() | _stored_times,
    )


# -- values casdb refuses (InvalidInput, before any SQL) -------------------------------------

_not_str = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.binary(max_size=8),
    st.lists(st.text(max_size=3), max_size=2), st.uuids(),
)


def refused_text(max_length: int = 255, *, allow_empty: bool = False) -> Strategy[object]:
    """Values a text argument refuses: not a str (None aside: optional arguments take it),
    too long, NUL, a lone surrogate, and "" unless ``allow_empty``."""
    options = [
        _not_str.filter(lambda value: value is not None),
        st.text(characters, min_size=max_length + 1, max_size=max_length + 20),
        st.tuples(st.text(characters, max_size=10), st.text(characters, max_size=10)).map(
            lambda parts: f"{parts[0]}\x00{parts[1]}"
        ),
        st.text(characters, max_size=10).map(lambda text: text + "\ud800"),
    ]
    if not allow_empty:
        options.append(st.just(""))
    return st.one_of(options)


# Not one @ with text on both sides, whitespace or control characters, too long, not a str.
refused_emails: Strategy[object] = st.one_of(
    refused_text(255),
    st.sampled_from(["plain", "@cas.org", "user@", "a@b@c", "a b@cas.org", "a@cas.org\n",
                     "tab\t@cas.org", "a@cas\x7f.org", "\u2003a@cas.org", "a@\x85cas.org"]),
    emails.map(lambda email: email.replace("@", "@@", 1)),
    st.text(_email_chars, min_size=254, max_size=300).map(lambda s: f"a@{s}"),
)


def refused_ints(minimum: int = INT32_MIN, maximum: int = INT32_MAX) -> Strategy[object]:
    """Values an integer argument in [minimum, maximum] refuses: out of range, bools, floats,
    digit strings (None aside: optional arguments take it)."""
    return st.one_of(
        st.integers(max_value=minimum - 1),
        st.integers(min_value=maximum + 1),
        st.sampled_from([minimum - 1, maximum + 1, 2**63, -(2**63) - 1, 10**100]),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(minimum, maximum).map(str),
    )


# Naive datetimes (no zone), dates, strings, numbers: refused by every time argument.
refused_times: Strategy[object] = st.one_of(
    st.datetimes(),
    st.dates(),
    st.datetimes(timezones=st.just(UTC)).map(lambda when: when.isoformat()),
    st.integers(),
    st.floats(),
)

# NaN and infinities, non-string keys, NUL, Python objects JSON has no form for, too deep.
refused_json: Strategy[object] = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.dictionaries(st.integers(), json_scalars, min_size=1, max_size=3),
    st.just({"key": "nul\x00inside"}),
    st.just({"nul\x00key": 1}),
    st.just([1, math.nan]),
    st.sets(st.integers(), max_size=3),
    st.binary(max_size=5),
    st.datetimes(),
    st.just(object()),
    st.integers(101, 150).map(lambda depth: _nested(depth)),
)


def _nested(depth: int) -> Any:
    document: Any = 1
    for _ in range(depth):
        document = [document]
    return document


# Locators that are not UUIDs: refused by every key_locator argument.
refused_uuids: Strategy[object] = st.one_of(
    st.text(max_size=40).filter(lambda text: not _is_uuid(text)),
    st.integers(),
    st.binary(min_size=16, max_size=16),
)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# Anything at all, for "never a driver exception, never a hang" tests: valid or not.
hostile: Strategy[object] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, -1, 10**100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(st.sampled_from("\x00\t\n\\'\"%;")),
    st.sampled_from(TRICKY_TEXT),
    st.just("x" * (10 * 1024 * 1024)),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.uuids(),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.sampled_from(["SUCCEEDED", "succeeded", "id", "cell_type; --"]),
)
