"""cells: COPY round trips (escaping, JSON, NULLs, int32 edges), lookup order, all or nothing."""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import sqlalchemy
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import URL, Connection, Engine, select
from sqlalchemy.dialects import postgresql

from casdb import AlreadyExists, InvalidInput, NotFound, _copy_text
from casdb.queries import _cell_copy, cells
from casdb.queries.cells import Cell, Feature
from casdb.tables import cells_cellinfo, cells_featureinfo
from casdb.testing._values import int32, json_documents, json_objects, text255
from casdb.testing.strategies import _cell_optional
from tests.conftest import rolled_back
from tests.strategies import aware_times, characters, statements_sent

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
CELL_FIELDS = [field.name for field in attrs.fields(Cell)]
CELL_DEFAULTS = {"obs_metadata_extra": {}, "is_primary_data": True}
FEATURE_DEFAULTS = {"feature_is_filtered": False, "var_metadata_extra": {}}
REQUIRED_CELL = {"cas_cell_index", "cas_ingest_id", "cell_type"}

# -- strategies ------------------------------------------------------------------------------

# A cell without its ids: optional keys may be left out (the table's defaults then apply).
# (the test kit's own strategies: casdb.testing)
cell_bodies = st.fixed_dictionaries({"cell_type": text255}, optional=_cell_optional())
feature_bodies = st.fixed_dictionaries(
    {"original_feature_id": text255, "feature_name": text255},
    optional={
        "feature_biotype": st.none() | text255,
        "feature_is_filtered": st.none() | st.booleans(),
        "feature_reference": st.none() | text255,
        "var_metadata_extra": json_objects | json_documents.filter(lambda doc: doc is not None),
    },
)


# -- helpers ---------------------------------------------------------------------------------


def _cell(index: int, ingest: str = "ing", **values: Any) -> dict[str, Any]:
    return {
        "cas_cell_index": index,
        "cas_ingest_id": ingest,
        "cell_type": f"type {index % 7}",
        "tissue": "lung",
        "total_mrna_umis": index,
        **values,
    }


def _cells(count: int, start: int = 0, ingest: str = "ing") -> Iterator[dict[str, Any]]:
    return (_cell(index, ingest) for index in range(start, start + count))


def _feature(index: int, ingest: str = "ing") -> dict[str, Any]:
    return {
        "cas_feature_index": index,
        "cas_ingest_id": ingest,
        "original_feature_id": f"ENSG{index:011d}",
        "feature_name": f"GENE{index}",
    }


def _full_cell(row: dict[str, Any]) -> dict[str, Any]:
    """Every column of the row as stored: omitted keys take the table's defaults."""
    return {name: row.get(name, CELL_DEFAULTS.get(name)) for name in CELL_FIELDS}


def _all_cells(conn: Connection, ingest: str) -> list[dict[str, Any]]:
    ids = (
        conn.execute(
            select(cells_cellinfo.c.cas_cell_index)
            .where(cells_cellinfo.c.cas_ingest_id == ingest)
            .order_by(cells_cellinfo.c.cas_cell_index)
        )
        .scalars()
        .all()
    )
    return [found.values for found in cells.get_cell_metadata_by_ids(conn, cell_ids=ids)]


@pytest.fixture
def ingest(conn: Connection) -> str:
    cells.create_ingest(conn, cas_ingest_id="ing", dataset_id="dataset")
    return "ing"


# -- ingests ---------------------------------------------------------------------------------


@given(
    ingest_id=st.text(characters, min_size=1, max_size=255),
    dataset=text255.filter(bool),
    version=st.none() | text255,
    uns=st.none() | json_objects,
    when=st.none() | aware_times,
)
def test_ingest_round_trip(
    engine: Engine,
    ingest_id: str,
    dataset: str,
    version: str | None,
    uns: Any,
    when: dt.datetime | None,
) -> None:
    with rolled_back(engine) as conn:
        created = cells.create_ingest(
            conn,
            cas_ingest_id=ingest_id,
            dataset_id=dataset,
            dataset_version_id=version,
            uns_metadata=uns,
            ingest_timestamp=when,
        )
        assert created == cells.get_ingest(conn, cas_ingest_id=ingest_id)
        assert cells.list_ingests(conn) == [created]
        assert (created.cas_ingest_id, created.dataset_id, created.dataset_version_id) == (
            ingest_id,
            dataset,
            version,
        )
        assert created.uns_metadata == ({} if uns is None else uns)
        assert created.ingest_timestamp is not None
        assert created.ingest_timestamp.tzinfo == dt.UTC
        if when is not None:
            assert created.ingest_timestamp == when


def test_ingest_defaults_and_errors(conn: Connection) -> None:
    before = dt.datetime.now(dt.UTC)
    created = cells.create_ingest(conn, cas_ingest_id="a", dataset_id="d")
    assert created.uns_metadata == {} and created.dataset_version_id is None
    assert created.ingest_timestamp is not None
    assert abs(created.ingest_timestamp - before) < dt.timedelta(minutes=1)
    with pytest.raises(AlreadyExists) as error:
        cells.create_ingest(conn, cas_ingest_id="a", dataset_id="other")
    assert error.value.field == "cas_ingest_id"
    with pytest.raises(InvalidInput, match="timezone-aware"):
        cells.create_ingest(
            conn, cas_ingest_id="b", dataset_id="d", ingest_timestamp=dt.datetime(2024, 1, 1)
        )
    with pytest.raises(InvalidInput, match="uns_metadata"):
        cells.create_ingest(conn, cas_ingest_id="b", dataset_id="d", uns_metadata={"x": math.nan})
    with pytest.raises(InvalidInput, match="cas_ingest_id"):
        cells.create_ingest(conn, cas_ingest_id="x" * 256, dataset_id="d")
    with pytest.raises(NotFound):
        cells.get_ingest(conn, cas_ingest_id="b")


# -- round trips -----------------------------------------------------------------------------


@given(data=st.data())
@example(data=None)  # a fixed example with every trap at once (see the body)
def test_cells_round_trip(engine: Engine, data: st.DataObject | None) -> None:
    if data is None:
        ids = [INT32_MIN, -1, 0, INT32_MAX]
        bodies: list[dict[str, Any]] = [
            {"cell_type": text, "donor_id": text, "obs_metadata_extra": {text: [text, None]}}
            for text in ("\\N", "a\tb\nc\rd\\e", "", "漢字 \"'")
        ]
        bodies[0]["obs_metadata_extra"] = None
        bodies[1].update(total_mrna_umis=INT32_MIN, is_primary_data=None)
        as_records = [True, False, True, False]
    else:
        ids = data.draw(st.lists(int32, unique=True, max_size=8), label="ids")
        bodies = [data.draw(cell_bodies, label=f"cell {n}") for n in range(len(ids))]
        as_records = [data.draw(st.booleans(), label="as record") for _ in ids]
    rows = [
        {"cas_cell_index": index, "cas_ingest_id": "ing", **body}
        for index, body in zip(ids, bodies, strict=True)
    ]
    given_rows = [
        Cell(**row) if record else row for row, record in zip(rows, as_records, strict=True)
    ]
    with rolled_back(engine) as conn:
        cells.create_ingest(conn, cas_ingest_id="ing", dataset_id="d")
        assert cells.insert_cells(conn, rows=iter(given_rows)) == len(rows)
        found = cells.get_cell_metadata_by_ids(conn, cell_ids=ids)
        assert [cell.cas_cell_index for cell in found] == ids
        assert [cell.values for cell in found] == [_full_cell(row) for row in rows]
        assert cells.count_cells(conn, cas_ingest_id="ing") == len(rows)


@given(data=st.data())
def test_features_round_trip(engine: Engine, data: st.DataObject) -> None:
    ids = data.draw(st.lists(int32, unique=True, max_size=8), label="ids")
    rows = [
        {
            "cas_feature_index": index,
            "cas_ingest_id": "ing",
            **data.draw(feature_bodies, label=f"feature {index}"),
        }
        for index in ids
    ]
    with rolled_back(engine) as conn:
        cells.create_ingest(conn, cas_ingest_id="ing", dataset_id="d")
        cells.create_ingest(conn, cas_ingest_id="other", dataset_id="d")
        other = next(n for n in range(10) if n not in ids)
        cells.insert_features(conn, rows=[_feature(other, "other")])
        assert cells.insert_features(conn, rows=(row for row in rows)) == len(rows)
        expected = [
            Feature(**{**FEATURE_DEFAULTS, **row})
            for row in sorted(rows, key=lambda row: row["cas_feature_index"])
        ]
        assert cells.list_features_for_ingest(conn, cas_ingest_id="ing") == expected
        legacy_ids = conn.execute(select(cells_featureinfo.c.id)).scalars().all()
        assert set(legacy_ids) == {None}


def test_selected_columns_in_the_order_asked(conn: Connection, ingest: str) -> None:
    cells.insert_cells(conn, rows=[_cell(5, obs_metadata_extra={"k": [1, "é"]})])
    (found,) = cells.get_cell_metadata_by_ids(
        conn, cell_ids=[5], columns=["tissue", "obs_metadata_extra", "tissue"]
    )
    assert found == cells.CellMetadata(5, {"tissue": "lung", "obs_metadata_extra": {"k": [1, "é"]}})
    assert list(found.values) == ["tissue", "obs_metadata_extra"]
    (bare,) = cells.get_cell_metadata_by_ids(conn, cell_ids=[5], columns=[])
    assert bare == cells.CellMetadata(5, {})


def test_big_rows_shrink_the_chunks(
    conn: Connection, ingest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_copy_text, "COPY_CHUNK_ROWS", 50)
    monkeypatch.setattr(_copy_text, "COPY_CHUNK_BYTES", 20_000)
    sent: list[int] = []
    original = _copy_text.CopyLayout.chunk

    def chunk(self: Any, first_index: int, pending: list[Any]) -> bytes:
        data = original(self, first_index, pending)
        sent.append(len(data))
        return data

    monkeypatch.setattr(_copy_text.CopyLayout, "chunk", chunk)
    big = {"blob": "x\ty" * 2_000}
    rows = [_cell(n, obs_metadata_extra=big) for n in range(200)]
    assert cells.insert_cells(conn, rows=iter(rows)) == 200
    assert max(sent[1:]) < 3 * 20_000  # after the first chunk, the size adapts
    assert _all_cells(conn, ingest) == [_full_cell(row) for row in rows]


# -- lookups ---------------------------------------------------------------------------------

BASE = 1_000_000
STORED_IDS = {BASE + n for n in range(0, 600, 3)}


@pytest.fixture(scope="module")
def lookup_engine(make_database: Callable[..., URL], template_database: str) -> Iterator[Engine]:
    """A database of its own holding committed cells with gaps in their ids (BASE + 3n)."""
    engine = sqlalchemy.create_engine(make_database(template=template_database))
    with engine.begin() as conn:
        cells.create_ingest(conn, cas_ingest_id="lookup", dataset_id="d")
        cells.insert_cells(conn, rows=(_cell(n, "lookup") for n in sorted(STORED_IDS)))
    yield engine
    engine.dispose()


@given(
    ids=st.lists(
        st.integers(BASE - 5, BASE + 610)
        | st.sampled_from(sorted(STORED_IDS))
        | st.sampled_from([INT32_MIN, -1, 0, INT32_MAX]),
        max_size=60,
    ),
    chunk=st.integers(1, 9),
)
def test_lookup_order_repeats_and_gaps(
    lookup_engine: Engine, ids: list[int], chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cells, "LOOKUP_CHUNK_SIZE", chunk)  # many chunks per call
    with rolled_back(lookup_engine) as conn:
        found = cells.get_cell_metadata_by_ids(conn, cell_ids=ids, columns=["total_mrna_umis"])
    assert [cell.cas_cell_index for cell in found] == [n for n in ids if n in STORED_IDS]
    assert all(cell.values == {"total_mrna_umis": cell.cas_cell_index} for cell in found)


def test_lookup_of_many_ids_in_default_chunks(lookup_engine: Engine) -> None:
    ids = [BASE + n % 700 for n in range(cells.LOOKUP_CHUNK_SIZE * 2 + 17)][::-1]
    with rolled_back(lookup_engine) as conn:
        found = cells.get_cell_metadata_by_ids(conn, cell_ids=ids, columns=["cell_type"])
        assert [cell.cas_cell_index for cell in found] == [n for n in ids if n in STORED_IDS]
        assert cells.get_cell_metadata_by_ids(conn, cell_ids=[]) == []
        assert (
            cells.get_cell_metadata_by_ids(conn, cell_ids=iter(sorted(STORED_IDS)))[-1]
            == (cells.get_cell_metadata_by_ids(conn, cell_ids=[max(STORED_IDS)])[0])
        )


def test_bad_lookups_are_refused_before_sql(engine: Engine) -> None:
    closed = engine.connect()
    closed.close()  # any SQL would fail with a SQLAlchemy error, not InvalidInput
    with pytest.raises(InvalidInput, match="'nope'.*valid: cas_cell_index, cas_ingest_id"):
        cells.get_cell_metadata_by_ids(closed, cell_ids=[1], columns=["cell_type", "nope"])
    with pytest.raises(InvalidInput, match=r"unknown cells_cellinfo column\(s\) \['x'\], 3"):
        cells.get_cell_metadata_by_ids(closed, cell_ids=[1], columns=[["x"], 3])
    with pytest.raises(InvalidInput, match="one string"):
        cells.get_cell_metadata_by_ids(closed, cell_ids=[1], columns="cell_type")
    for bad in ([1, INT32_MAX + 1], [INT32_MIN - 1], [True], ["1"], [1.0], [None]):
        with pytest.raises(InvalidInput, match="cell"):
            cells.get_cell_metadata_by_ids(closed, cell_ids=bad)
    with pytest.raises(InvalidInput):
        cells.insert_cells(closed, rows=[_cell(1, bogus=1)])


# -- all or nothing --------------------------------------------------------------------------


def _assert_usable(conn: Connection, ingest: str, start: int) -> None:
    """The caller's transaction still works: a later insert succeeds and is counted."""
    before = cells.count_cells(conn, cas_ingest_id=ingest)
    assert cells.insert_cells(conn, rows=_cells(3, start, ingest)) == 3
    assert cells.count_cells(conn, cas_ingest_id=ingest) == before + 3


def test_bad_row_deep_in_a_large_batch_leaves_nothing(conn: Connection, ingest: str) -> None:
    cells.insert_cells(conn, rows=_cells(10))
    before = cells.count_cells(conn)

    def rows() -> Iterator[dict[str, Any]]:
        for index in range(100, 20_100):
            yield _cell(index, cell_type="x" * 256) if index == 100 + 12_345 else _cell(index)

    with pytest.raises(InvalidInput, match=r"^row 12345: cell_type is 256 characters long") as e:
        cells.insert_cells(conn, rows=rows())
    assert (e.value.row, e.value.field) == (12_345, "cell_type")
    assert cells.count_cells(conn) == before
    _assert_usable(conn, ingest, 50_000)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cell_type", None, "cell_type must be a string, got NoneType"),
        ("cas_ingest_id", 7, "cas_ingest_id must be a string"),
        ("tissue", "a\x00b", "tissue must not contain NUL"),
        ("tissue", "\ud800", "tissue contains a lone surrogate"),
        ("total_mrna_umis", INT32_MAX + 1, "total_mrna_umis must be between"),
        ("total_mrna_umis", True, "total_mrna_umis must be an integer, got bool"),
        ("total_mrna_umis", 1.5, "total_mrna_umis must be an integer, got float"),
        ("is_primary_data", 1, "is_primary_data must be true or false, got int"),
        ("obs_metadata_extra", {"x": math.inf}, "obs_metadata_extra holds inf"),
        ("obs_metadata_extra", {"x": [{1: 2}]}, "obs_metadata_extra has a non-string key"),
        ("obs_metadata_extra", {"x": "\x00"}, "obs_metadata_extra must not contain NUL"),
        ("obs_metadata_extra", {"x": {1, 2}}, "obs_metadata_extra holds a set"),
        ("nonsense", 1, "unknown field.s. 'nonsense'"),
    ],
)
@pytest.mark.parametrize("position", [3, 5_500])  # before any SQL / mid-COPY
def test_each_kind_of_bad_value(
    conn: Connection, ingest: str, field: str, value: Any, message: str, position: int
) -> None:
    def rows() -> Iterator[dict[str, Any]]:
        for index in range(6_000):
            yield {**_cell(index), field: value} if index == position else _cell(index)

    with (
        statements_sent(conn) as sent,
        pytest.raises(InvalidInput, match=f"^row {position}: {message}") as raised,
    ):
        cells.insert_cells(conn, rows=rows())
    assert raised.value.row == position
    assert raised.value.field == (None if field == "nonsense" else field)
    if position < 256:  # the first chunk is checked before any SQL is sent
        assert sent == []
    else:  # mid-COPY: the savepoint was rolled back
        assert any(statement.startswith("ROLLBACK TO SAVEPOINT") for statement in sent)
    assert cells.count_cells(conn, cas_ingest_id=ingest) == 0
    _assert_usable(conn, ingest, 10_000)


def test_missing_required_field_and_bad_rows(conn: Connection, ingest: str) -> None:
    with pytest.raises(InvalidInput, match="^row 1: cell_type must be a string, got nothing"):
        cells.insert_cells(conn, rows=[_cell(0), {"cas_cell_index": 1, "cas_ingest_id": ingest}])
    with pytest.raises(InvalidInput, match="^row 0: must be a Cell or a mapping"):
        cells.insert_cells(conn, rows=[("not", "a", "row")])
    with pytest.raises(InvalidInput, match="iterable of records"):
        cells.insert_cells(conn, rows=_cell(0))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="^row 0: original_feature_id must be a string"):
        cells.insert_features(conn, rows=[{**_feature(1), "original_feature_id": None}])
    with pytest.raises(InvalidInput, match="unknown field.s. 'id'"):
        cells.insert_features(conn, rows=[{**_feature(1), "id": 1}])
    assert cells.count_cells(conn, cas_ingest_id=ingest) == 0
    _assert_usable(conn, ingest, 0)


def test_integer_and_string_look_alikes_are_accepted(conn: Connection, ingest: str) -> None:
    class Index:  # what numpy integers look like to casdb
        def __init__(self, value: int) -> None:
            self.value = value

        def __index__(self) -> int:
            return self.value

    class Label(str):
        pass

    class Count(enum.IntEnum):
        MANY = 12

    rows = [_cell(1, tissue=Label("lung")), _cell(2, total_mrna_umis=Count.MANY)]
    rows.append({**_cell(0), "cas_cell_index": Index(3), "total_mrna_umis": Index(INT32_MAX)})
    assert cells.insert_cells(conn, rows=rows) == 3
    found = cells.get_cell_metadata_by_ids(
        conn, cell_ids=[Index(3), Count.MANY, 1, 2], columns=["tissue", "total_mrna_umis"]
    )
    assert [(cell.cas_cell_index, cell.values) for cell in found] == [
        (3, {"tissue": "lung", "total_mrna_umis": INT32_MAX}),
        (1, {"tissue": "lung", "total_mrna_umis": 1}),
        (2, {"tissue": "lung", "total_mrna_umis": 12}),
    ]
    with pytest.raises(InvalidInput, match="^row 0: total_mrna_umis must be between"):
        cells.insert_cells(conn, rows=[_cell(9, total_mrna_umis=Index(INT32_MAX + 1))])


def test_callers_own_error_mid_stream_propagates_and_leaves_nothing(
    conn: Connection, ingest: str
) -> None:
    class Stop(Exception):
        pass

    def rows() -> Iterator[dict[str, Any]]:
        yield from _cells(7_000)
        raise Stop

    with pytest.raises(Stop):
        cells.insert_cells(conn, rows=rows())
    assert cells.count_cells(conn, cas_ingest_id=ingest) == 0
    _assert_usable(conn, ingest, 0)


def test_database_refusals_map_to_casdb_errors(conn: Connection, ingest: str) -> None:
    cells.insert_cells(conn, rows=_cells(5))
    with pytest.raises(AlreadyExists) as error:
        cells.insert_cells(conn, rows=_cells(10, 3))  # 3 and 4 exist
    assert error.value.field == "cas_cell_index"
    with pytest.raises(AlreadyExists):
        cells.insert_cells(conn, rows=[_cell(100), _cell(100)])
    with pytest.raises(NotFound, match="create_ingest"):
        cells.insert_cells(conn, rows=_cells(6_000, 200, ingest="no-such-ingest"))
    cells.insert_features(conn, rows=[_feature(1)])
    with pytest.raises(AlreadyExists) as error:
        cells.insert_features(conn, rows=[_feature(1)])
    assert error.value.field == "cas_feature_index"
    with pytest.raises(NotFound):
        cells.insert_features(conn, rows=[_feature(2, "no-such-ingest")])
    assert cells.count_cells(conn, cas_ingest_id=ingest) == 5
    _assert_usable(conn, ingest, 1_000)


def test_insert_from_a_generator_without_a_transaction(engine: Engine) -> None:
    produced = 0

    def rows() -> Iterator[Cell]:
        nonlocal produced
        for index in range(12_000):
            produced += 1
            yield Cell(cas_cell_index=index, cas_ingest_id="gen", cell_type="t")

    with engine.connect() as conn:  # no begin(): the operation autobegins, the caller decides
        cells.create_ingest(conn, cas_ingest_id="gen", dataset_id="d")
        assert cells.insert_cells(conn, rows=rows()) == 12_000 == produced
        assert cells.count_cells(conn, cas_ingest_id="gen") == 12_000
        conn.rollback()
        assert cells.count_cells(conn, cas_ingest_id="gen") == 0
        with statements_sent(conn) as sent:
            assert cells.insert_cells(conn, rows=iter([])) == 0
        assert sent == []
        conn.rollback()


# -- delete ----------------------------------------------------------------------------------


def test_delete_ingest_removes_exactly_its_cells_and_features(conn: Connection) -> None:
    for name in ("keep", "drop"):
        cells.create_ingest(conn, cas_ingest_id=name, dataset_id="d")
    cells.insert_cells(conn, rows=_cells(50, 0, "keep"))
    cells.insert_cells(conn, rows=_cells(70, 50, "drop"))
    cells.insert_features(conn, rows=[_feature(n, "keep") for n in range(3)])
    cells.insert_features(conn, rows=[_feature(n, "drop") for n in range(3, 8)])
    kept = _all_cells(conn, "keep")
    total = cells.count_cells(conn)

    assert cells.delete_ingest(conn, cas_ingest_id="drop") is None
    assert cells.count_cells(conn, cas_ingest_id="drop") == 0
    assert cells.count_cells(conn) == total - 70
    assert _all_cells(conn, "keep") == kept
    assert cells.list_features_for_ingest(conn, cas_ingest_id="drop") == []
    assert len(cells.list_features_for_ingest(conn, cas_ingest_id="keep")) == 3
    with pytest.raises(NotFound):
        cells.get_ingest(conn, cas_ingest_id="drop")
    with pytest.raises(NotFound):
        cells.delete_ingest(conn, cas_ingest_id="drop")
    assert cells.count_cells(conn, cas_ingest_id="keep") == 50


# -- statements ------------------------------------------------------------------------------


def test_statements_compile_without_a_database() -> None:
    dialect = postgresql.dialect()
    lookup = str(cells.build_select_cells_by_ids(["cell_type"]).compile(dialect=dialect))
    assert "unnest(%(ids)s::INTEGER[]) WITH ORDINALITY AS q(id, ord)" in lookup
    assert lookup.rstrip().endswith("ORDER BY q.ord")
    with pytest.raises(KeyError):
        cells.build_select_cells_by_ids(["cell_type; DROP TABLE x"])
    copy = _cell_copy.build_copy_from_stdin(cells_cellinfo, cells._CELL_LAYOUT.columns)
    assert copy.startswith("COPY cells_cellinfo (cas_cell_index, cas_ingest_id, cell_type,")
    assert copy.endswith(") FROM STDIN")
    features = _cell_copy.build_copy_from_stdin(cells_featureinfo, cells._FEATURE_LAYOUT.columns)
    assert " id," not in features and "(id" not in features
    for statement in (
        cells.build_count_cells("x"),
        cells.build_delete_ingest("x"),
        cells.build_list_features_for_ingest("x"),
        cells.build_select_ingest("x"),
    ):
        assert str(statement.compile(dialect=dialect))


def test_find_existing_indexes_names_its_own_argument_in_errors(conn: Connection) -> None:
    with statements_sent(conn) as sent:
        with pytest.raises(InvalidInput, match=r"^ids\[1\] must be an integer"):
            cells.find_existing_indexes(conn, table="cells", ids=[1, "2"])
        with pytest.raises(InvalidInput, match=r"^ids\[0\]"):
            cells.find_existing_indexes(conn, table="features", ids=[2**31])
        with pytest.raises(InvalidInput, match=r"^ids must be an iterable"):
            cells.find_existing_indexes(conn, table="cells", ids="12")
    assert sent == []
    with pytest.raises(InvalidInput, match=r"^cell_ids\[1\]"):
        cells.get_cell_metadata_by_ids(conn, cell_ids=[1, "2"])
