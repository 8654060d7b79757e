"""The bulk (server-serialised JSON) lookup path returns exactly what plain SQLAlchemy does.

Issue 12: chunks of BULK_MIN_IDS ids or more are fetched by one ``= ANY(ids)`` scan as one
JSON text of columns (``json_agg`` per column) parsed by ``json.loads`` and put in the order
of the ids in Python. Every column type must come back equal (and of the same Python type)
to ``connection.execute(select(...))`` on the same ids: varchar with tabs, newlines,
backslashes, quotes, ``\\N`` and non-BMP characters, int32 edges, bools, NULLs, nested jsonb
with floats, big ints and empty objects; ids repeated and missing; no column at all.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, select

from casdb.queries import _cell_lookup, cells
from casdb.queries.cells import Cell
from casdb.tables import cells_cellinfo
from casdb.testing.strategies import INT32_MAX, INT32_MIN, TRICKY_TEXT, cell_batches, int32
from tests.conftest import rolled_back

_TRAPS = [
    Cell(
        cas_cell_index=INT32_MIN,
        cas_ingest_id="bulk",
        cell_type="a\tb\nc\rd\\e\"f'g\\N",
        donor_id="\\N",
        obs_metadata_extra={"nested": {"deep": [1.5, -0.0, 10**20, {}, [], None, "\\N\t"]}},
        total_mrna_umis=INT32_MAX,
        is_primary_data=False,
        tissue="😀 漢字 \U0010fffd",
    ),
    Cell(cas_cell_index=INT32_MAX, cas_ingest_id="bulk", cell_type="", obs_metadata_extra={}),
    Cell(
        cas_cell_index=0,
        cas_ingest_id="bulk",
        cell_type=TRICKY_TEXT[1],
        obs_metadata_extra=None,
        is_primary_data=None,
        total_mrna_umis=INT32_MIN,
        sex="\u2028\u2029\x7f\x01",
    ),
    Cell(cas_cell_index=-1, cas_ingest_id="bulk", cell_type="x", obs_metadata_extra=[1e-7, 3e14]),
]


def _plain(conn: Connection, ids: list[int], names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The reference: plain SQLAlchemy, one row per id found in the order of ``ids``."""
    wanted = [cells_cellinfo.c[name] for name in names]
    statement = select(cells_cellinfo.c.cas_cell_index, *wanted).where(
        cells_cellinfo.c.cas_cell_index.in_(set(ids))
    )
    by_id = {row[0]: tuple(row) for row in conn.execute(statement)}
    return [by_id[n] for n in ids if n in by_id]


def _typed(rows: list[tuple[Any, ...]]) -> list[tuple[tuple[type, Any], ...]]:
    """Values with their types (so that True != 1 and 1.0 != 1 count as differences)."""

    def typed(value: Any) -> Any:
        if isinstance(value, dict):
            return (dict, sorted((k, typed(v)) for k, v in value.items()))
        if isinstance(value, list):
            return (list, [typed(v) for v in value])
        return (type(value), repr(value))

    return [tuple(typed(value) for value in row) for row in rows]


@given(
    batch=cell_batches("bulk", max_size=12),
    extra_ids=st.lists(int32, max_size=6),
    data=st.data(),
)
@example(batch=_TRAPS, extra_ids=[5, 6], data=None)
@pytest.mark.parametrize("bulk_min", [1, 10**9], ids=["bulk", "plain"])
def test_lookup_paths_equal_plain_sqlalchemy(
    engine: Engine,
    batch: list[Cell],
    extra_ids: list[int],
    data: st.DataObject | None,
    bulk_min: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_cell_lookup, "BULK_MIN_IDS", bulk_min)
    stored = [cell.cas_cell_index for cell in batch]
    pool = stored + extra_ids
    if data is None:
        ids = pool + stored[::-1] + pool
        names = cells.CELL_COLUMN_NAMES
    else:
        ids = data.draw(st.lists(st.sampled_from(pool), max_size=30) if pool else st.just([]))
        names = tuple(
            data.draw(
                st.lists(st.sampled_from(cells.CELL_COLUMN_NAMES), unique=True)
                | st.just(cells.CELL_COLUMN_NAMES)
            )
        )
    with rolled_back(engine) as conn:
        cells.create_ingest(conn, cas_ingest_id="bulk", dataset_id="d")
        cells.insert_cells(conn, rows=batch)
        expected = _typed(_plain(conn, ids, names))
        found = cells.get_cell_metadata_by_ids(conn, cell_ids=ids, columns=names)
        assert _typed([(c.cas_cell_index, *c.values.values()) for c in found]) == expected
        assert all(tuple(c.values) == names for c in found)
        iterated = list(cells.iter_cell_metadata_by_ids(conn, cell_ids=iter(ids), columns=names))
        assert iterated == found


def test_small_lookups_take_the_plain_statement(engine: Engine) -> None:
    """Below BULK_MIN_IDS the plain statement runs; at it, the JSON one (both in one trip)."""
    sent: list[str] = []
    with rolled_back(engine) as conn:
        cells.create_ingest(conn, cas_ingest_id="bulk", dataset_id="d")
        cells.insert_cells(conn, rows=_TRAPS)
        original = _cell_lookup._driver.fetch_all

        def spy(connection: Connection, statement: str, parameters: Any) -> Any:
            sent.append(statement)
            return original(connection, statement, parameters)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_cell_lookup._driver, "fetch_all", spy)
            few = cells.get_cell_metadata_by_ids(conn, cell_ids=[0] * 3)
            many = cells.get_cell_metadata_by_ids(conn, cell_ids=[0] * _cell_lookup.BULK_MIN_IDS)
    assert len(sent) == 2
    assert "json_agg" not in sent[0] and "json_agg" in sent[1]
    assert few == many[:3] and len(many) == _cell_lookup.BULK_MIN_IDS


@pytest.mark.parametrize("bulk_min", [1, 10**9], ids=["bulk", "plain"])
def test_a_repeated_id_gets_records_of_its_own(
    engine: Engine, bulk_min: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records of a repeated id share no mutable value: changing one's jsonb leaves the other."""
    monkeypatch.setattr(_cell_lookup, "BULK_MIN_IDS", bulk_min)
    with rolled_back(engine) as conn:
        cells.create_ingest(conn, cas_ingest_id="bulk", dataset_id="d")
        cells.insert_cells(conn, rows=_TRAPS)
        ids = [0, INT32_MIN, 5, INT32_MIN, -1, INT32_MIN, -1]
        found = cells.get_cell_metadata_by_ids(conn, cell_ids=ids)
        iterated = list(cells.iter_cell_metadata_by_ids(conn, cell_ids=ids))
    assert [c.cas_cell_index for c in found] == [0, INT32_MIN, INT32_MIN, -1, INT32_MIN, -1]
    assert iterated == found
    for records in (found, iterated):
        first, second, third = records[1], records[2], records[4]
        assert first == second == third
        first.values["obs_metadata_extra"]["nested"]["deep"].append("changed")
        records[3].values["obs_metadata_extra"].append("changed")
        assert second.values["obs_metadata_extra"] == _TRAPS[0].obs_metadata_extra
        assert third.values["obs_metadata_extra"] == _TRAPS[0].obs_metadata_extra
        assert records[5].values["obs_metadata_extra"] == _TRAPS[3].obs_metadata_extra


def test_bulk_lookups_across_chunks_keep_the_order_of_the_ids(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many ids over several bulk chunks (each its own = ANY scan): the order of the ids."""
    monkeypatch.setattr(cells, "LOOKUP_CHUNK_SIZE", 700)
    monkeypatch.setattr(cells, "ITER_CHUNK_SIZE", 300)
    stored = [
        Cell(cas_cell_index=n, cas_ingest_id="bulk", cell_type=f"t{n}", total_mrna_umis=-n)
        for n in range(-1000, 1000, 3)
    ]
    ids = [n for n in range(2000, -2000, -7)] + [n // 2 for n in range(-2100, 2100, 5)]
    with rolled_back(engine) as conn:
        cells.create_ingest(conn, cas_ingest_id="bulk", dataset_id="d")
        cells.insert_cells(conn, rows=stored)
        names = ("total_mrna_umis", "cas_cell_index", "cell_type")
        expected = _plain(conn, ids, names)
        found = cells.get_cell_metadata_by_ids(conn, cell_ids=ids, columns=names)
        iterated = list(cells.iter_cell_metadata_by_ids(conn, cell_ids=ids, columns=names))
    assert len(ids) > 2 * 700 and len(expected) > 300
    assert [(c.cas_cell_index, *c.values.values()) for c in found] == expected
    assert iterated == found
