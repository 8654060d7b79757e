"""Cell metadata: ingests, features and cells, written in bulk with COPY and read back by id.

Bulk writes stream any iterable of rows into ``COPY ... FROM STDIN`` (queries._cell_copy; the
text codec is casdb._copy_text), validated as they stream, all or nothing. Lookups bind the ids
as ONE int[] array per chunk: one round trip per chunk, the input's order kept. A chunk of 30
ids or more is one ``= ANY(ids)`` index scan serialised by the server as one JSON text, parsed
in C and ordered in Python (the checks, chunking and ordering are queries._cell_lookup); a
smaller one joins ``unnest(ids) WITH ORDINALITY``, rows decoded by pg8000. Both talk to
pg8000 through casdb._driver, which keeps the connection in step with the server whatever
happens.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import attrs
from sqlalchemy import (
    Connection,
    Delete,
    Insert,
    Integer,
    Select,
    Text,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql

from casdb._checks import (
    check_int,
    check_json,
    check_optional_text,
    check_optional_time,
    check_text,
    describe,
)
from casdb._copy_text import CopyLayout
from casdb.errors import NotFound
from casdb.queries._cell_copy import copy_rows
from casdb.queries._cell_lookup import (
    CELL_COLUMN_NAMES,
    Lookup,
    check_columns,
    checked_ids,
    compiled_sql,
    fetch_by_ids,
    fetch_values_by_ids,
    id_iterator,
    index_column,
    index_sequence,
    iter_by_ids,
)
from casdb.queries._rows import (
    execute,
    fetch_all,
    fetch_created,
    fetch_one,
    fetch_scalar,
    record_columns,
)
from casdb.tables import cells_cellinfo, cells_featureinfo, cells_ingestinfo

__all__ = [
    "CELL_COLUMN_NAMES",
    "ITER_CHUNK_SIZE",
    "LOOKUP_CHUNK_SIZE",
    "MAX_RESERVED_INDEXES",
    "CellMetadata",
    "Cell",
    "Feature",
    "Ingest",
    "advance_index_sequence",
    "build_advance_index_sequence",
    "build_count_cells",
    "build_create_ingest",
    "build_delete_ingest",
    "build_existing_indexes",
    "build_list_features_for_ingest",
    "build_list_ingests",
    "build_reserve_indexes",
    "build_select_cells_by_ids",
    "build_select_ingest",
    "count_cells",
    "create_ingest",
    "delete_ingest",
    "find_existing_indexes",
    "get_cell_metadata_by_ids",
    "get_ingest",
    "insert_cells",
    "insert_features",
    "iter_cell_metadata_by_ids",
    "list_features_for_ingest",
    "list_ingests",
    "reserve_indexes",
]

LOOKUP_CHUNK_SIZE = 50_000
"""Ids bound per lookup statement (one int[] parameter, one round trip per chunk)."""

ITER_CHUNK_SIZE = 20_000
"""Ids per statement of iter_cell_metadata_by_ids: its memory bound (peak RSS +29 MB with five
columns, +142 MB with all 24, reply and records of one chunk; 10,000 ids: +14 / +68 MB). Fewer
ids per statement cost more server time per id (a heap page holding two of them is read by
two statements): with five columns 10,000 took 1.2x as long (benchmarks.bench_lookup)."""

_INDEX_CHUNK: Final = 50_000
MAX_RESERVED_INDEXES: Final = 10_000_000
"""Ids one reserve_indexes call takes at most (about 5 s of nextval on the server)."""

# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Ingest:
    """A row of cells_ingestinfo; ingest_timestamp is aware UTC."""

    cas_ingest_id: str
    dataset_id: str
    dataset_version_id: str | None
    uns_metadata: Any
    ingest_timestamp: dt.datetime | None


@attrs.frozen(kw_only=True)
class Feature:
    """A row of cells_featureinfo (the legacy ``id`` column is not part of it: it stays NULL).

    Defaults are those of the table: feature_is_filtered False, var_metadata_extra {}.
    """

    cas_feature_index: int
    cas_ingest_id: str
    original_feature_id: str
    feature_name: str
    feature_biotype: str | None = None
    feature_is_filtered: bool | None = False
    feature_reference: str | None = None
    var_metadata_extra: Any = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Cell:
    """A row of cells_cellinfo, as :func:`insert_cells` takes it.

    Defaults are those of the table: obs_metadata_extra {}, is_primary_data True, every other
    optional column None (NULL).
    """

    cas_cell_index: int
    cas_ingest_id: str
    cell_type: str
    original_cell_id: str | None = None
    obs_metadata_extra: Any = attrs.field(factory=dict)
    is_primary_data: bool | None = True
    donor_id: str | None = None
    assay: str | None = None
    development_stage: str | None = None
    tissue: str | None = None
    disease: str | None = None
    organism: str | None = None
    self_reported_ethnicity: str | None = None
    sex: str | None = None
    suspension_type: str | None = None
    total_mrna_umis: int | None = None
    cell_type_ontology_term_id: str | None = None
    assay_ontology_term_id: str | None = None
    development_stage_ontology_term_id: str | None = None
    tissue_ontology_term_id: str | None = None
    disease_ontology_term_id: str | None = None
    organism_ontology_term_id: str | None = None
    self_reported_ethnicity_ontology_term_id: str | None = None
    sex_ontology_term_id: str | None = None


@attrs.frozen
class CellMetadata:
    """One cell found by :func:`get_cell_metadata_by_ids`.

    ``values`` maps each requested column name, in the order requested, to its value (jsonb
    columns decoded; NULL is None). cas_cell_index is always set, requested or not.
    """

    cas_cell_index: int
    values: dict[str, Any]


_INGEST_COLUMNS = record_columns(cells_ingestinfo, Ingest)
_FEATURE_COLUMNS = record_columns(cells_featureinfo, Feature)
_CELL_LAYOUT: Final = CopyLayout.of(cells_cellinfo, Cell)
_FEATURE_LAYOUT: Final = CopyLayout.of(cells_featureinfo, Feature)


# --------------------------------------------------------------------------------------------
# Statement builders (each compiles without a database)
# --------------------------------------------------------------------------------------------


def build_create_ingest(values: dict[str, Any]) -> Insert:
    """INSERT one ingest with ``values`` (columns left out take their server defaults).

    ON CONFLICT DO NOTHING: an existing id returns no row (and aborts no transaction).
    """
    return (
        postgresql.insert(cells_ingestinfo)
        .values(values)
        .on_conflict_do_nothing()
        .returning(*_INGEST_COLUMNS)
    )


def build_select_ingest(cas_ingest_id: str) -> Select[Any]:
    """SELECT one ingest by id."""
    return select(*_INGEST_COLUMNS).where(cells_ingestinfo.c.cas_ingest_id == cas_ingest_id)


def build_list_ingests() -> Select[Any]:
    """SELECT every ingest, ordered by cas_ingest_id."""
    return select(*_INGEST_COLUMNS).order_by(cells_ingestinfo.c.cas_ingest_id)


def build_delete_ingest(cas_ingest_id: str) -> Delete:
    """DELETE one ingest; its cells and features go with it (ON DELETE CASCADE)."""
    return delete(cells_ingestinfo).where(cells_ingestinfo.c.cas_ingest_id == cas_ingest_id)


def build_list_features_for_ingest(cas_ingest_id: str) -> Select[Any]:
    """SELECT the features of one ingest, ordered by cas_feature_index."""
    return (
        select(*_FEATURE_COLUMNS)
        .where(cells_featureinfo.c.cas_ingest_id == cas_ingest_id)
        .order_by(cells_featureinfo.c.cas_feature_index)
    )


def build_count_cells(cas_ingest_id: str | None = None) -> Select[Any]:
    """SELECT the number of cells, of one ingest or (None) of all."""
    statement = select(func.count()).select_from(cells_cellinfo)
    if cas_ingest_id is not None:
        statement = statement.where(cells_cellinfo.c.cas_ingest_id == cas_ingest_id)
    return statement


def build_select_cells_by_ids(columns: Sequence[str]) -> Select[Any]:
    """SELECT ``columns`` and then cas_cell_index of the cells whose ids the array ``:ids`` holds.

    The one parameter, ``ids``, is an int[]: ``unnest(:ids) WITH ORDINALITY`` joined to the
    table returns one row per id found, in the order of the array (a repeated id repeats).
    ``columns`` must be names of cells_cellinfo columns (KeyError otherwise).
    """
    ids = (
        func.unnest(bindparam("ids", type_=postgresql.ARRAY(Integer)))
        .table_valued("id", with_ordinality="ord")
        .render_derived(name="q")
    )
    wanted = [cells_cellinfo.c[name] for name in columns]
    return (
        select(*wanted, cells_cellinfo.c.cas_cell_index)
        .select_from(ids.join(cells_cellinfo, cells_cellinfo.c.cas_cell_index == ids.c.id))
        .order_by(ids.c.ord)
    )


def build_select_cells_json_by_ids(columns: Sequence[str]) -> Select[Any]:
    """The cells :func:`build_select_cells_by_ids` finds, as ONE JSON text, column by column.

    ``[[cas_cell_index...], [column 1...], ...]``: one array per column (``json_agg``, all fed
    the same rows in the same order), one entry per DISTINCT id of ``:ids`` found, in no
    particular order (NULLs when none is found); the caller puts them in the order of the ids.
    ``= ANY(:ids)`` is one index scan (the server sorts the ids), where the unnest join gets a
    merge join over the whole table. The server serialises, ``json.loads`` parses in C: jsonb
    columns arrive as the server's jsonb text, which pg8000 parses with ``json.loads`` too.
    """
    index = cells_cellinfo.c.cas_cell_index
    arrays = [func.json_agg(cells_cellinfo.c[name]) for name in ("cas_cell_index", *columns)]
    ids = bindparam("ids", type_=postgresql.ARRAY(Integer))
    return select(func.json_build_array(*arrays).cast(Text)).where(index == func.any(ids))


def build_reserve_indexes(table: str, count: int) -> Select[Any]:
    """SELECT the runs (first, last) of ``count`` new values of the table's index sequence.

    nextval is atomic, so concurrent callers never share a value; under concurrency the
    values may come in several runs, which are returned in order.
    """
    values = (
        select(func.nextval(index_sequence(table)).label("id"))
        .select_from(func.generate_series(1, count))
        .cte("reserved")
    )
    runs = select(
        values.c.id, (values.c.id - func.row_number().over(order_by=values.c.id)).label("run")
    ).cte("runs")
    return (
        select(func.min(runs.c.id), func.max(runs.c.id))
        .group_by(runs.c.run)
        .order_by(func.min(runs.c.id))
    )


def build_advance_index_sequence(table: str, past: int) -> Select[Any]:
    """SELECT setval(sequence, past) only where the sequence is below ``past`` (never back)."""
    sequence = index_sequence(table)
    return select(func.setval(sequence, past)).where(
        func.coalesce(func.pg_sequence_last_value(sequence), 0) < past
    )


def build_existing_indexes(table: str) -> Select[Any]:
    """SELECT which of the ids bound as ``:ids`` (one int[]) are in the table, ordered."""
    target, column = index_column(table)
    ids = bindparam("ids", type_=postgresql.ARRAY(Integer))
    return (
        select(target.c[column]).where(target.c[column] == func.any(ids)).order_by(target.c[column])
    )


def _lookup(connection: Connection, names: tuple[str, ...]) -> Lookup[CellMetadata]:
    statement = compiled_sql(build_select_cells_by_ids, names, connection.dialect)
    bulk = compiled_sql(build_select_cells_json_by_ids, names, connection.dialect)
    return Lookup(statement, names, CellMetadata, bulk)


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------


def create_ingest(
    connection: Connection,
    *,
    cas_ingest_id: str,
    dataset_id: str,
    dataset_version_id: str | None = None,
    uns_metadata: Any = None,
    ingest_timestamp: dt.datetime | None = None,
) -> Ingest:
    """Create an ingest and return it.

    uns_metadata None stores {}; ingest_timestamp None stores the server's now (UTC); an
    explicit one must be timezone-aware. Raises InvalidInput (bad argument, before any SQL),
    AlreadyExists(field="cas_ingest_id"), DatabaseError.
    """
    values: dict[str, Any] = {
        "cas_ingest_id": check_text("cas_ingest_id", cas_ingest_id),
        "dataset_id": check_text("dataset_id", dataset_id),
        "dataset_version_id": check_optional_text("dataset_version_id", dataset_version_id),
        "uns_metadata": {} if uns_metadata is None else check_json("uns_metadata", uns_metadata),
    }
    if ingest_timestamp is not None:
        values["ingest_timestamp"] = check_optional_time("ingest_timestamp", ingest_timestamp)
    return fetch_created(connection, build_create_ingest(values), Ingest, field="cas_ingest_id")


def get_ingest(connection: Connection, *, cas_ingest_id: str) -> Ingest:
    """Return the ingest ``cas_ingest_id``. Raises NotFound, InvalidInput, DatabaseError."""
    cas_ingest_id = check_text("cas_ingest_id", cas_ingest_id)
    return fetch_one(
        connection,
        build_select_ingest(cas_ingest_id),
        Ingest,
        missing=f"no ingest {describe(cas_ingest_id)}",
    )


def list_ingests(connection: Connection) -> list[Ingest]:
    """Return every ingest, ordered by cas_ingest_id. Raises DatabaseError."""
    return fetch_all(connection, build_list_ingests(), Ingest)


def delete_ingest(connection: Connection, *, cas_ingest_id: str) -> None:
    """Delete an ingest together with its cells and features, in one statement.

    Returns None. Raises NotFound (unknown ingest; nothing changes), InvalidInput,
    DatabaseError.
    """
    cas_ingest_id = check_text("cas_ingest_id", cas_ingest_id)
    if execute(connection, build_delete_ingest(cas_ingest_id)).rowcount == 0:
        raise NotFound(f"no ingest {describe(cas_ingest_id)}")


def insert_features(connection: Connection, *, rows: Iterable[Feature | Mapping[str, Any]]) -> int:
    """Bulk-write features with COPY, streaming ``rows``; return the number of rows written.

    ``rows`` is any iterable (a generator is fine: memory stays bounded) of Feature or
    mappings with Feature's field names; cas_feature_index is required (the caller
    assigns the ids); omitted optional keys take the table's defaults. All or nothing, within
    a savepoint: the caller's transaction stays usable after any error (on an AUTOCOMMIT
    connection: one COPY, committed when this returns, or nothing). Raises InvalidInput
    (a bad row: the message names its index and field; an unknown key), NotFound (an unknown
    cas_ingest_id), AlreadyExists(field="cas_feature_index"), DatabaseError.
    """
    return copy_rows(connection, _FEATURE_LAYOUT, rows)


def insert_cells(connection: Connection, *, rows: Iterable[Cell | Mapping[str, Any]]) -> int:
    """Bulk-write cells with COPY, streaming ``rows``; return the number of rows written.

    ``rows`` is any iterable (a generator is fine: memory stays bounded) of Cell or
    mappings with Cell's field names. cas_cell_index, cas_ingest_id and cell_type are
    required (the caller assigns cas_cell_index: the column's sequence is not used); omitted
    optional keys take the table's defaults (obs_metadata_extra {}, is_primary_data True,
    others NULL). Strings must fit varchar(255) and hold no NUL; integers are int32 (numpy
    integers accepted, bools not); JSON must be serialisable with finite floats. All or
    nothing, within a savepoint: the caller's transaction stays usable after any error (on an
    AUTOCOMMIT connection: one COPY, committed when this returns, or nothing). A COPY the
    server rejects mid-stream (duplicate key, timeout) stops pulling ``rows`` within a chunk.
    Raises InvalidInput (a bad row: the message names its index and field), NotFound (an
    unknown cas_ingest_id), AlreadyExists(field="cas_cell_index"), DatabaseError; an
    exception raised by ``rows`` itself propagates unchanged (nothing written).
    """
    return copy_rows(connection, _CELL_LAYOUT, rows)


def list_features_for_ingest(connection: Connection, *, cas_ingest_id: str) -> list[Feature]:
    """Return the features of an ingest ordered by cas_feature_index ([] for an unknown ingest).

    Raises InvalidInput, DatabaseError.
    """
    cas_ingest_id = check_text("cas_ingest_id", cas_ingest_id)
    return fetch_all(connection, build_list_features_for_ingest(cas_ingest_id), Feature)


def count_cells(connection: Connection, *, cas_ingest_id: str | None = None) -> int:
    """Return the number of cells of one ingest, or of all when cas_ingest_id is None.

    Raises InvalidInput, DatabaseError.
    """
    cas_ingest_id = check_optional_text("cas_ingest_id", cas_ingest_id)
    return int(fetch_scalar(connection, build_count_cells(cas_ingest_id)))


def get_cell_metadata_by_ids(
    connection: Connection,
    *,
    cell_ids: Iterable[int],
    columns: Iterable[str] | None = None,
) -> list[CellMetadata]:
    """Return one CellMetadata per id of ``cell_ids`` that exists, in the order of ``cell_ids``.

    A repeated id is repeated; missing ids are left out. ``columns`` (None: every column) are
    cells_cellinfo column names, in the order ``values`` will hold them; cas_cell_index is
    always set. Any number of ids, LOOKUP_CHUNK_SIZE per statement (each its own snapshot
    unless the transaction is REPEATABLE READ). Ids are int32 integers (int subclasses and
    numpy integers too, bools not), all checked before any SQL.

    Memory: the whole result at once, plus the ids as a list: about 0.7 KB per cell found
    with five short columns and 3.3 KB with all 24 (peaks measured with realistic rows; 2M
    cells with every column took 4.5 GB); :func:`iter_cell_metadata_by_ids` is bounded by one
    chunk of ITER_CHUNK_SIZE ids instead.

    Raises InvalidInput (an unknown column, naming the valid ones; an id that is not an
    int32; both before any SQL), DatabaseError.
    """
    names = check_columns(columns)
    ids = checked_ids(list(id_iterator(cell_ids)))
    if not ids:
        return []
    return fetch_by_ids(connection, _lookup(connection, names), ids, LOOKUP_CHUNK_SIZE)


def iter_cell_metadata_by_ids(
    connection: Connection,
    *,
    cell_ids: Iterable[int],
    columns: Iterable[str] | None = None,
) -> Iterator[CellMetadata]:
    """Yield what :func:`get_cell_metadata_by_ids` returns, in the same order, chunk by chunk.

    ``cell_ids`` may be any iterable (a generator too), consumed ITER_CHUNK_SIZE ids at a
    time: each chunk is checked, then looked up in one statement read whole before its first
    record is yielded. Memory stays bounded by one chunk (its ids and records). ``columns``
    and the type of ``cell_ids`` are checked at the call; a bad id raises InvalidInput when
    its chunk is reached, before that chunk's SQL. Between two records nothing is pending on
    the connection: the caller may use it meanwhile, or abandon the iterator at any point
    (``break``, ``close()``, garbage collection) with the connection in step.

    Raises InvalidInput, DatabaseError.
    """
    names = check_columns(columns)
    lookup = _lookup(connection, names)
    return iter_by_ids(connection, lookup, id_iterator(cell_ids), ITER_CHUNK_SIZE)


def reserve_indexes(connection: Connection, *, table: str, count: int) -> list[range]:
    """Reserve ``count`` ids from the sequence of cells_cellinfo.cas_cell_index (``table``
    "cells") or cells_featureinfo.cas_feature_index ("features"), in one statement.

    Returns the reserved ids as ranges in increasing order (one range unless concurrent
    callers interleaved). Reserved ids stay used even if the transaction rolls back.
    ``count`` is at most MAX_RESERVED_INDEXES. Raises InvalidInput for a bad argument,
    DatabaseError.
    """
    index_column(table)
    count = check_int("count", count, minimum=0, maximum=MAX_RESERVED_INDEXES)
    if count == 0:
        return []
    reserved = build_reserve_indexes(table, count)
    return fetch_all(connection, reserved, lambda row: range(row[0], row[1] + 1))


def advance_index_sequence(connection: Connection, *, table: str, past: int) -> None:
    """Move the table's index sequence forward so that nextval gives more than ``past``.

    Used after rows with explicit ids were written; never moves the sequence back. Returns
    None. Raises InvalidInput for a bad argument, DatabaseError.
    """
    index_column(table)
    past = check_int("past", past, minimum=1)
    execute(connection, build_advance_index_sequence(table, past)).all()


def find_existing_indexes(connection: Connection, *, table: str, ids: Iterable[int]) -> list[int]:
    """Return which of ``ids`` are already in the table (cells or features), ordered.

    Raises InvalidInput for a bad argument, DatabaseError.
    """
    index_column(table)
    wanted = sorted(set(checked_ids(list(id_iterator(ids, "ids")), name="ids")))
    return fetch_values_by_ids(connection, build_existing_indexes(table), wanted, _INDEX_CHUNK)
