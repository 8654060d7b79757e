"""Cells under faults and concurrency: a killed backend mid-COPY leaves nothing, concurrent
ingests and deletes keep exact counts."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

import casdb
from casdb import CasdbError
from casdb.engine import config_for_url
from casdb.queries import cells


def _rows(ingest: str, start: int, count: int) -> Iterator[cells.Cell]:
    for index in range(start, start + count):
        yield cells.Cell(
            cas_cell_index=index,
            cas_ingest_id=ingest,
            cell_type="T cell",
            tissue="blood",
            obs_metadata_extra={"n": index},
        )


@pytest.fixture
def pinged_engine(engine: Engine) -> Iterator[Engine]:
    """An engine as services make it: casdb.create_engine, pool pre-ping on."""
    eng = casdb.create_engine(config_for_url(engine.url, pool_size=2))
    yield eng
    eng.dispose()


def test_backend_killed_mid_insert_leaves_nothing_and_the_next_call_works(
    pinged_engine: Engine,
) -> None:
    with pinged_engine.begin() as conn:
        cells.create_ingest(conn, cas_ingest_id="fault", dataset_id="d")
    with pinged_engine.connect() as conn:
        before = cells.count_cells(conn)
        conn.rollback()
        victim = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        conn.rollback()

        def killing_rows() -> Iterator[cells.Cell]:
            for n, row in enumerate(_rows("fault", 10_000_000, 200_000)):
                if n == 50_000:  # well into the COPY stream
                    with pinged_engine.connect() as killer:
                        killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
                        killer.commit()
                yield row

        conn.begin()
        with pytest.raises(CasdbError) as raised:
            cells.insert_cells(conn, rows=killing_rows())
        assert not isinstance(raised.value, casdb.InvalidInput)
    # Nothing partial is visible, and a fresh connection from the same engine works.
    with pinged_engine.connect() as conn:
        assert cells.count_cells(conn) == before
        assert cells.count_cells(conn, cas_ingest_id="fault") == 0
    with pinged_engine.begin() as conn:
        assert cells.insert_cells(conn, rows=_rows("fault", 20_000_000, 1_000)) == 1_000
        cells.delete_ingest(conn, cas_ingest_id="fault")


def test_concurrent_ingests_and_a_delete(engine: Engine) -> None:
    with engine.begin() as conn:
        for n in range(9):
            cells.create_ingest(conn, cas_ingest_id=f"conc-{n}", dataset_id="d")
        cells.insert_cells(conn, rows=_rows("conc-8", 30_000_000, 20_000))
    errors: list[BaseException] = []

    def ingest(n: int) -> None:
        try:
            for batch in range(3):
                with engine.begin() as conn:
                    start = 40_000_000 + n * 100_000 + batch * 10_000
                    cells.insert_cells(conn, rows=_rows(f"conc-{n}", start, 10_000))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def delete() -> None:
        try:
            with engine.begin() as conn:
                cells.delete_ingest(conn, cas_ingest_id="conc-8")
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=ingest, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=delete))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    with engine.begin() as conn:
        for n in range(8):
            assert cells.count_cells(conn, cas_ingest_id=f"conc-{n}") == 30_000
        assert cells.count_cells(conn, cas_ingest_id="conc-8") == 0
        with pytest.raises(casdb.NotFound):
            cells.get_ingest(conn, cas_ingest_id="conc-8")
        for n in range(8):
            cells.delete_ingest(conn, cas_ingest_id=f"conc-{n}")
