"""The ML model registry: models, the default model, and their matching-engine indexes.

Records first, then the statement builders (each returns a Core statement that compiles
without a database), then the operations that validate their arguments and run them.

The default model. The partial unique index ``uq_ml_management_model_is_default_model``
makes two defaults impossible. :func:`set_default_model` (and :func:`create_model` with
``is_default_model=True``) serialize on a transaction-scoped advisory lock, then clear the
old default and set the new one in two statements, inside the caller's transaction:

* A single ``UPDATE ... SET is_default_model = (id = :id)`` is not enough: PostgreSQL checks
  a non-deferrable unique index row by row, so the statement fails whenever it reaches the
  new default before the old one; and two concurrent calls each miss the default the other
  commits, so one of them hits the unique index.
* Row locks (``SELECT ... FOR UPDATE``) only lock the defaults a statement can see; a
  default committed by a third call after that statement's snapshot is missed the same way.
* Under the lock, each statement of a READ COMMITTED transaction sees the previous holder's
  committed result, so the clear always finds the one current default and the set never
  collides. Readers are not blocked and only ever see the committed before or after state.
  The lock is released when the caller's transaction ends.

Guarantees hold for writers that go through casdb. Under REPEATABLE READ or SERIALIZABLE,
the transaction's snapshot predates the lock, so a concurrent call can still end it with a
serialization failure (DatabaseError) that the caller retries; the default READ COMMITTED
never fails that way. A connection in AUTOCOMMIT mode cannot hold the lock and is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import attrs
from sqlalchemy import (
    JSON,
    BindParameter,
    Connection,
    Insert,
    Label,
    Row,
    Select,
    String,
    Update,
    bindparam,
    exists,
    func,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert

from casdb._checks import (
    check_bool,
    check_int,
    check_optional_text,
    check_optional_time,
    check_text,
    translated_errors,
)
from casdb.errors import AlreadyExists, InvalidInput, NotFound
from casdb.queries._rows import (
    Prepared,
    fetch_all,
    fetch_created,
    fetch_one,
    record_columns,
    to_record,
)
from casdb.tables import ml_management_matchingengineindex as index_table
from casdb.tables import ml_management_model as model_table

__all__ = [
    "DEFAULT_BQ_DATASET_NAME",
    "DEFAULT_MODEL_LOCK_KEY",
    "DEFAULT_SCHEMA_NAME",
    "MLModel",
    "MatchingEngineIndex",
    "build_clear_default_model",
    "build_index_name_taken",
    "build_insert_index",
    "build_insert_model",
    "build_lock_default_model",
    "build_lock_model",
    "build_select_indexes",
    "build_select_models",
    "build_set_default_model",
    "create_matching_engine_index",
    "create_model",
    "get_default_model",
    "get_index_by_name",
    "get_model_by_name",
    "list_indexes_for_model",
    "list_models",
    "set_default_model",
]

DEFAULT_SCHEMA_NAME = "refdata-gex-GRCh38-2020-A"
DEFAULT_BQ_DATASET_NAME = "cas_50m_dataset"

# Key of the transaction-scoped advisory lock that serializes changes of the default model.
# Derived from a name (not Python's salted hash()) so that every process agrees on it.
DEFAULT_MODEL_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"casdb:ml_management_model.is_default_model").digest()[:8],
    "big",
    signed=True,
)


# --- records -------------------------------------------------------------------------------


@attrs.frozen
class MatchingEngineIndex:
    """A row of ml_management_matchingengineindex."""

    id: int
    index_name: str
    description: str | None
    embedding_dimension: int
    endpoint_id: str
    deployed_index_id: str | None
    num_neighbors: int
    model_id: int
    is_grpc: bool
    api_endpoint: str | None


@attrs.frozen
class MLModel:
    """A row of ml_management_model with its matching-engine indexes, ordered by id.

    ``created_date`` is an aware UTC datetime (None for legacy rows that have none).
    """

    id: int
    model_name: str
    model_file_path: str
    description: str | None
    embedding_dimension: int
    admin_use_only: bool
    schema_name: str
    bq_dataset_name: str
    is_default_model: bool
    created_date: dt.datetime | None
    indexes: tuple[MatchingEngineIndex, ...]


_MODEL_FIELDS = tuple(field.name for field in attrs.fields(MLModel) if field.name != "indexes")


def model_from_row(row: Row[Any]) -> MLModel:
    """A row of ``_MODEL_COLUMNS`` plus the ``indexes`` JSON array as a record."""
    values = row._mapping
    return MLModel(
        **{name: values[name] for name in _MODEL_FIELDS},
        indexes=tuple(MatchingEngineIndex(**item) for item in values["indexes"] or ()),
    )


# --- statement builders --------------------------------------------------------------------

_INDEX_COLUMNS = record_columns(index_table, MatchingEngineIndex)


def _indexes_of_model() -> Label[Any]:
    """A scalar subquery: the model's indexes as a JSON array ordered by id (NULL if none).

    Correlated to ml_management_model, so it works in a SELECT and in RETURNING.
    """
    as_json = func.json_build_object(
        *(part for column in _INDEX_COLUMNS for part in (literal(column.name, String), column))
    )
    return (
        select(func.json_agg(aggregate_order_by(as_json, index_table.c.id), type_=JSON))
        .where(index_table.c.model_id == model_table.c.id)
        .correlate(model_table)
        .scalar_subquery()
        .label("indexes")
    )


_MODEL_COLUMNS = record_columns(model_table, MLModel, exclude=("indexes",))


def build_insert_model(values: dict[str, Any]) -> Insert:
    """INSERT a (non-default) model with ``values`` (columns left out take their server
    defaults); a taken model_name inserts nothing and returns no row."""
    return (
        pg_insert(model_table)
        .values({**values, "is_default_model": False})
        .on_conflict_do_nothing()
        # A new model has no indexes yet (and INSERT's RETURNING would not correlate them).
        .returning(*_MODEL_COLUMNS, null().label("indexes"))
    )


def build_select_models(
    *,
    model_name: str | BindParameter[str] | None = None,
    include_admin_only: bool = True,
    default_only: bool = False,
) -> Select[Any]:
    """SELECT models (each with its indexes) ordered by id, optionally filtered."""
    statement = select(*_MODEL_COLUMNS, _indexes_of_model()).order_by(model_table.c.id)
    if model_name is not None:
        statement = statement.where(model_table.c.model_name == model_name)
    if not include_admin_only:
        statement = statement.where(model_table.c.admin_use_only.is_(False))
    if default_only:
        statement = statement.where(model_table.c.is_default_model.is_(True))
    return statement


def _prepared_model_by_name() -> Select[Any]:
    return build_select_models(
        model_name=bindparam("model_name", type_=model_table.c.model_name.type)
    )


def _prepared_default_model() -> Select[Any]:
    return build_select_models(default_only=True)


def build_lock_default_model() -> Select[Any]:
    """Take the transaction-scoped advisory lock that serializes default-model changes."""
    return select(func.pg_advisory_xact_lock(DEFAULT_MODEL_LOCK_KEY))


def build_lock_model(*, model_id: int, key_share: bool = False) -> Select[Any]:
    """SELECT the model's id and lock the row: FOR NO KEY UPDATE, or FOR KEY SHARE.

    Either lock keeps the row from being deleted until the transaction ends.
    """
    statement = select(model_table.c.id).where(model_table.c.id == model_id)
    if key_share:
        return statement.with_for_update(read=True, key_share=True)
    return statement.with_for_update(key_share=True)


def build_clear_default_model(*, keep_model_id: int) -> Update:
    """UPDATE: every default model other than ``keep_model_id`` stops being the default."""
    return (
        update(model_table)
        .where(model_table.c.is_default_model.is_(True), model_table.c.id != keep_model_id)
        .values(is_default_model=False)
    )


def build_set_default_model(*, model_id: int) -> Update:
    """UPDATE the model to be the default, RETURNING it with its indexes."""
    return (
        update(model_table)
        .where(model_table.c.id == model_id)
        .values(is_default_model=True)
        .returning(*_MODEL_COLUMNS, _indexes_of_model())
    )


def build_insert_index(values: dict[str, Any]) -> Insert:
    """INSERT an index with ``values``; a taken index_name or deployed_index_id inserts
    nothing, no row."""
    return pg_insert(index_table).values(values).on_conflict_do_nothing().returning(*_INDEX_COLUMNS)


def build_index_name_taken(*, index_name: str) -> Select[Any]:
    """SELECT whether an index with this name exists (to name the field that collided)."""
    return select(exists().where(index_table.c.index_name == index_name))


def build_select_indexes(
    *, index_name: str | None = None, model_id: int | None = None
) -> Select[Any]:
    """SELECT indexes ordered by id, optionally by name and/or model."""
    statement = select(*_INDEX_COLUMNS).order_by(index_table.c.id)
    if index_name is not None:
        statement = statement.where(index_table.c.index_name == index_name)
    if model_id is not None:
        statement = statement.where(index_table.c.model_id == model_id)
    return statement


# --- operations ----------------------------------------------------------------------------


def _check_transactional(connection: Connection, operation: str) -> None:
    """Refuse a connection in AUTOCOMMIT mode, where the advisory lock would not hold."""
    with translated_errors(connection=connection):  # a closed connection, a lost link
        dbapi_connection = connection.connection.dbapi_connection
        autocommit = dbapi_connection is not None and connection.dialect.detect_autocommit_setting(
            dbapi_connection
        )
    if autocommit:
        raise InvalidInput(
            f"{operation} must run inside a transaction; the connection is in AUTOCOMMIT mode"
        )


def _make_default(connection: Connection, model_id: int) -> MLModel:
    """Make the model the only default and return it; an unknown id raises NotFound, unchanged."""
    with translated_errors(connection=connection):
        connection.execute(build_lock_default_model())
        if connection.execute(build_lock_model(model_id=model_id)).first() is None:
            raise NotFound(f"no model with id {model_id}")
        connection.execute(build_clear_default_model(keep_model_id=model_id))
    return fetch_one(
        connection,
        build_set_default_model(model_id=model_id),
        model_from_row,
        missing=f"no model with id {model_id}",
    )


def create_model(
    connection: Connection,
    *,
    model_name: str,
    model_file_path: str,
    embedding_dimension: int,
    description: str | None = None,
    admin_use_only: bool = True,
    schema_name: str = DEFAULT_SCHEMA_NAME,
    bq_dataset_name: str = DEFAULT_BQ_DATASET_NAME,
    is_default_model: bool = False,
    created_date: dt.datetime | None = None,
) -> MLModel:
    """Create a model and return it (with no indexes yet).

    ``is_default_model=True`` makes it the only default, as :func:`set_default_model` does.
    ``created_date`` (aware) defaults to the database's now (UTC).

    Raises InvalidInput for a bad argument (nothing is sent), AlreadyExists(field="model_name")
    when the name is taken (nothing changes and the transaction stays usable), DatabaseError.
    """
    values: dict[str, Any] = {
        "model_name": check_text("model_name", model_name),
        "model_file_path": check_text("model_file_path", model_file_path),
        "embedding_dimension": check_int("embedding_dimension", embedding_dimension, minimum=1),
        "description": check_optional_text("description", description, max_length=511),
        "admin_use_only": check_bool("admin_use_only", admin_use_only),
        "schema_name": check_text("schema_name", schema_name),
        "bq_dataset_name": check_text("bq_dataset_name", bq_dataset_name),
    }
    is_default_model = check_bool("is_default_model", is_default_model)
    if created_date is not None:
        values["created_date"] = check_optional_time("created_date", created_date)
    if is_default_model:
        _check_transactional(connection, "create_model(is_default_model=True)")
    model = fetch_created(
        connection, build_insert_model(values), model_from_row, field="model_name"
    )
    return _make_default(connection, model.id) if is_default_model else model


def list_models(connection: Connection, *, include_admin_only: bool = True) -> list[MLModel]:
    """Return the models (each with its indexes) ordered by id.

    ``include_admin_only=False`` leaves out the models with admin_use_only set.
    Raises InvalidInput for a non-bool flag, DatabaseError.
    """
    include_admin_only = check_bool("include_admin_only", include_admin_only)
    statement = build_select_models(include_admin_only=include_admin_only)
    return fetch_all(connection, statement, model_from_row)


def get_model_by_name(connection: Connection, *, model_name: str) -> MLModel:
    """Return the model with its indexes (ordered by id), read in one query.

    Raises InvalidInput for a bad name, NotFound when no model has it, DatabaseError.
    """
    model_name = check_text("model_name", model_name)
    return fetch_one(
        connection,
        Prepared(_prepared_model_by_name, {"model_name": model_name}),
        model_from_row,
        missing="no model with this model_name",
    )


def get_default_model(connection: Connection) -> MLModel:
    """Return the default model with its indexes.

    Raises NotFound when there is no default model, DatabaseError.
    """
    return fetch_one(
        connection,
        Prepared(_prepared_default_model, {}),
        model_from_row,
        missing="there is no default model",
    )


def set_default_model(connection: Connection, *, model_id: int) -> MLModel:
    """Make the model the one default model and return it (with its indexes).

    Atomic within the caller's transaction and serialized with concurrent calls (see the
    module docstring): afterwards exactly this model is the default; other transactions see
    the old default until commit, then the new one. Calling it for the current default
    changes nothing.

    Raises InvalidInput for a bad id or a connection in AUTOCOMMIT mode, NotFound for an
    unknown id (then nothing has changed and the transaction stays usable), DatabaseError.
    """
    model_id = check_int("model_id", model_id)
    _check_transactional(connection, "set_default_model")
    return _make_default(connection, model_id)


def create_matching_engine_index(
    connection: Connection,
    *,
    index_name: str,
    embedding_dimension: int,
    endpoint_id: str,
    num_neighbors: int,
    model_id: int,
    description: str | None = None,
    deployed_index_id: str | None = None,
    is_grpc: bool = True,
    api_endpoint: str | None = None,
) -> MatchingEngineIndex:
    """Create a matching-engine index of a model and return it.

    Raises InvalidInput for a bad argument (nothing is sent); NotFound when no model has
    ``model_id``; AlreadyExists(field="index_name" or "deployed_index_id") when that value
    is taken. NotFound and AlreadyExists change nothing and leave the transaction usable.
    DatabaseError for anything else.
    """
    values: dict[str, Any] = {  # checked in the order of the arguments
        "index_name": check_text("index_name", index_name),
        "embedding_dimension": check_int("embedding_dimension", embedding_dimension, minimum=1),
        "endpoint_id": check_text("endpoint_id", endpoint_id),
        "num_neighbors": check_int("num_neighbors", num_neighbors, minimum=1),
        "model_id": check_int("model_id", model_id),
        "description": check_optional_text("description", description, max_length=511),
        "deployed_index_id": check_optional_text(
            "deployed_index_id", deployed_index_id, allow_empty=False
        ),
        "is_grpc": check_bool("is_grpc", is_grpc),
        "api_endpoint": check_optional_text("api_endpoint", api_endpoint, allow_empty=False),
    }
    model_id, statement = values["model_id"], build_insert_index(values)
    with translated_errors(connection=connection):
        # FOR KEY SHARE: the model cannot vanish before the insert's foreign key check.
        if connection.execute(build_lock_model(model_id=model_id, key_share=True)).first():
            row = connection.execute(statement).first()
            if row is not None:
                return to_record(MatchingEngineIndex, row)
            name_taken = connection.execute(build_index_name_taken(index_name=values["index_name"]))
            field = "index_name" if name_taken.scalar_one() else "deployed_index_id"
            raise AlreadyExists(f"an index with this {field} already exists", field=field)
    raise NotFound(f"no model with id {model_id}")


def get_index_by_name(connection: Connection, *, index_name: str) -> MatchingEngineIndex:
    """Return the index with this name.

    Raises InvalidInput for a bad name, NotFound when no index has it, DatabaseError.
    """
    index_name = check_text("index_name", index_name)
    return fetch_one(
        connection,
        build_select_indexes(index_name=index_name),
        MatchingEngineIndex,
        missing="no matching-engine index with this index_name",
    )


def list_indexes_for_model(connection: Connection, *, model_id: int) -> list[MatchingEngineIndex]:
    """Return the model's indexes ordered by id (empty for a model without any, or unknown).

    Raises InvalidInput for a bad id, DatabaseError.
    """
    model_id = check_int("model_id", model_id)
    return fetch_all(connection, build_select_indexes(model_id=model_id), MatchingEngineIndex)
