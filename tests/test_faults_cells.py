"""cells under faults: interrupts, AUTOCOMMIT, a COPY the server rejects mid-stream, broken
connections, and the lookup iterator. Every fault is real (async exceptions, signals, a TCP
proxy that resets, server-side timeouts) and every test is bounded in time."""

from __future__ import annotations

import contextlib
import ctypes
import random
import signal
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import URL, Connection, Engine, text

import casdb
from casdb import AlreadyExists, CasdbError, DatabaseError, InvalidInput
from casdb.engine import config_for_url
from casdb.queries import cells, keys, users
from tests.conftest import rolled_back
from tests.faultproxy import fault_proxy

COLUMNS = ["cell_type", "tissue", "total_mrna_umis", "obs_metadata_extra"]
STORED = 20_000  # committed cells 0..STORED-1 of ingest "faults"


def _cell(index: int, ingest: str = "faults") -> dict[str, Any]:
    return {
        "cas_cell_index": index,
        "cas_ingest_id": ingest,
        "cell_type": f"type {index % 7}",
        "tissue": "lung",
        "total_mrna_umis": index,
        "obs_metadata_extra": {"n": index},
    }


def _cells(
    start: int, count: int, ingest: str = "faults", pulled: list[int] | None = None
) -> Iterator[dict[str, Any]]:
    for index in range(start, start + count):
        if pulled is not None:
            pulled[0] += 1
        yield _cell(index, ingest)


@pytest.fixture(scope="module")
def stored(engine: Engine) -> list[tuple[uuid.UUID, int, str]]:
    """Committed: the ingest "faults" with STORED cells, and three users with a key each."""
    with engine.begin() as conn:
        cells.create_ingest(conn, cas_ingest_id="faults", dataset_id="d")
        cells.insert_cells(conn, rows=_cells(0, STORED))
        made = []
        for n in range(3):
            user = users.create_user(conn, email=f"fault-{n}@cas.org", username=f"f{n}")
            key = keys.create_user_key(conn, user_id=user.id, key_hash=f"hash-of-user-{n}")
            made.append((key.key_locator, user.id, f"hash-of-user-{n}"))
    return made


@contextlib.contextmanager
def _engine(url: URL, **options: Any) -> Iterator[Engine]:
    eng = sqlalchemy.create_engine(url, **options)
    try:
        yield eng
    finally:
        eng.dispose()


# -- defect 1: an interrupt never gives the next caller wrong rows ---------------------------


def _lookup(conn: Connection) -> None:
    ids = list(range(STORED - 1, -1, -1))
    assert len(cells.get_cell_metadata_by_ids(conn, cell_ids=ids, columns=COLUMNS)) == STORED


def _insert(conn: Connection) -> None:
    assert cells.insert_cells(conn, rows=_cells(STORED, 10_000)) == 10_000  # rolled back


def _victim(
    pool: Engine,
    work: Callable[[Connection], None],
    kind: type[BaseException],
    arm: Callable[[], None],
    sent: Callable[[], bool],
    outcomes: list[str],
) -> None:
    """Run ``work`` on a pooled connection; ``arm()`` starts the clock of the interrupt.

    Only casdb's operation is exposed to the interrupt: the connection is checked out before
    and closed after, once the interrupt has landed (an interrupt inside SQLAlchemy's own
    ``Connection.__exit__`` or pool checkout leaks the pooled connection, whatever casdb does).
    """
    conn = pool.connect()
    phase = "during"
    try:
        arm()
        work(conn)
        phase = "after"
        deadline = time.monotonic() + 10
        while not sent() and time.monotonic() < deadline:
            time.sleep(0.0005)
        time.sleep(0.05)  # delivery happens at the next check of the eval loop
        outcomes.append("lost")  # raised inside a finalizer, which Python ignores
    except kind:
        outcomes.append(phase)
    except CasdbError:  # a TimeoutError inside the driver becomes a DatabaseError
        outcomes.append(phase)
    finally:
        conn.close()


def _interrupt_in_thread(
    pool: Engine, work: Callable[[Connection], None], delay: float, outcomes: list[str]
) -> None:
    """KeyboardInterrupt raised in a worker thread by PyThreadState_SetAsyncExc."""
    armed, sent = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=_victim,
        daemon=True,
        args=(pool, work, KeyboardInterrupt, armed.set, sent.is_set, outcomes),
    )
    thread.start()
    assert armed.wait(timeout=10)
    time.sleep(delay)
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
    )
    sent.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


def _interrupt_by_signal(
    pool: Engine, work: Callable[[Connection], None], delay: float, outcomes: list[str]
) -> None:
    """TimeoutError raised by a SIGALRM handler in the main thread, as deadline code does."""
    fired: list[bool] = []

    def alarm(signum: int, frame: object) -> None:
        fired.append(True)
        raise TimeoutError("deadline")

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        _victim(
            pool,
            work,
            TimeoutError,
            lambda: signal.setitimer(signal.ITIMER_REAL, max(delay, 1e-4)) and None,
            lambda: bool(fired),
            outcomes,
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# An interrupt that lands inside a finalizer (a weakref callback) is ignored by Python, which
# reports it as unraisable: such a round is "lost", not a failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("work", [_lookup, _insert], ids=["lookup", "insert"])
@pytest.mark.parametrize(
    "interrupt",
    [_interrupt_in_thread, _interrupt_by_signal],
    ids=["async-KeyboardInterrupt", "SIGALRM-TimeoutError"],
)
def test_an_interrupt_never_gives_the_next_caller_wrong_rows(
    engine: Engine,
    stored: list[tuple[uuid.UUID, int, str]],
    work: Callable[[Connection], None],
    interrupt: Callable[..., None],
) -> None:
    rng = random.Random(20261201)
    with _engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=10) as pool:
        with pool.connect() as conn:
            started = time.monotonic()
            work(conn)
            limit = time.monotonic() - started
        outcomes: list[str] = []
        wrong, failed = [], []
        for _ in range(25):
            interrupt(pool, work, rng.uniform(0, limit), outcomes)
            # Keep most interrupts inside the operation whatever the machine's load.
            limit = limit * 0.7 if outcomes[-1] == "after" else limit * 1.1
            with pool.connect() as conn:  # the same pooled connection, unless invalidated
                for locator, user_id, key_hash in rng.sample(stored, len(stored)):
                    try:
                        found = keys.get_key_for_authentication(conn, key_locator=locator)
                    except Exception as error:  # noqa: BLE001 - counted, asserted below
                        failed.append(repr(error))
                        break
                    if (found.key.key_locator, found.key.user_id, found.key_hash) != (
                        locator,
                        user_id,
                        key_hash,
                    ):
                        wrong.append(found.key.key_locator)
    assert wrong == [] and failed == []
    assert outcomes.count("during") >= 10, outcomes  # most rounds hit the operation


# -- defect 2: AUTOCOMMIT writes are committed when the call returns, or not at all ----------


def _count(engine: Engine, ingest: str) -> int:
    with engine.connect() as other:
        return cells.count_cells(other, cas_ingest_id=ingest)


def test_autocommit_insert_is_committed_on_return_and_all_or_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        cells.create_ingest(conn, cas_ingest_id="auto", dataset_id="d")
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            assert cells.insert_cells(conn, rows=_cells(600_000, 12_000, "auto")) == 12_000
            assert _count(engine, "auto") == 12_000  # visible to another connection at once
            assert (
                cells.insert_features(
                    conn,
                    rows=[
                        {
                            "cas_feature_index": 600_000 + n,
                            "cas_ingest_id": "auto",
                            "original_feature_id": f"f{n}",
                            "feature_name": "F",
                        }
                        for n in range(3)
                    ],
                )
                == 3
            )
            assert len(cells.list_features_for_ingest(conn, cas_ingest_id="auto")) == 3

            def bad_mid_stream() -> Iterator[dict[str, Any]]:
                for index in range(700_000, 710_000):
                    yield (
                        {**_cell(index, "auto"), "cell_type": None}
                        if index == 707_000
                        else (_cell(index, "auto"))
                    )

            with pytest.raises(InvalidInput, match="^row 7000: cell_type"):
                cells.insert_cells(conn, rows=bad_mid_stream())
            with pytest.raises(AlreadyExists):  # the server refuses row 9,000 of 10,000
                cells.insert_cells(conn, rows=_cells(611_000 - 9_000, 10_000, "auto"))
            assert _count(engine, "auto") == 12_000
            assert conn.execute(text("SELECT 1")).scalar_one() == 1  # still usable
        assert _count(engine, "auto") == 12_000  # kept after the connection is returned
    finally:
        with engine.begin() as conn:
            cells.delete_ingest(conn, cas_ingest_id="auto")


def test_autocommit_with_a_transaction_block_open_is_refused_before_any_sql(engine: Engine) -> None:
    with engine.begin() as conn:
        cells.create_ingest(conn, cas_ingest_id="auto-tx", dataset_id="d")
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("BEGIN")
            with pytest.raises(InvalidInput, match="AUTOCOMMIT.*transaction block open"):
                cells.insert_cells(conn, rows=_cells(800_000, 10, "auto-tx"))
            conn.exec_driver_sql("COMMIT")
            assert cells.insert_cells(conn, rows=_cells(800_000, 10, "auto-tx")) == 10
        assert _count(engine, "auto-tx") == 10
    finally:
        with engine.begin() as conn:
            cells.delete_ingest(conn, cas_ingest_id="auto-tx")


def test_autocommit_on_a_reused_pre_pinged_connection_never_loses_rows(engine: Engine) -> None:
    """Pre-ping on pg8000 could leave a stray transaction under AUTOCOMMIT (issue 10, defect
    3): the insert then either commits or refuses, never reports rows that vanish."""
    pinged = casdb.create_engine(config_for_url(engine.url, pool_size=1))
    try:
        with pinged.begin() as conn:
            cells.create_ingest(conn, cas_ingest_id="auto-ping", dataset_id="d")
        written = 0
        for attempt in range(3):
            with pinged.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                with contextlib.suppress(InvalidInput):
                    written += cells.insert_cells(
                        conn, rows=_cells(810_000 + attempt, 1, "auto-ping")
                    )
            assert _count(engine, "auto-ping") == written
    finally:
        with pinged.begin() as conn:
            cells.delete_ingest(conn, cas_ingest_id="auto-ping")
        pinged.dispose()


# -- defect 6: a COPY the server rejected stops streaming within a chunk ---------------------


def test_a_duplicate_in_row_0_stops_a_million_row_stream(engine: Engine, stored: list[Any]) -> None:
    pulled = [0]
    started = time.monotonic()
    with rolled_back(engine) as conn, pytest.raises(AlreadyExists):
        cells.insert_cells(conn, rows=_cells(STORED - 1, 1_000_000, pulled=pulled))
    assert pulled[0] <= 20_000  # chunks of 256, 512, 1,024, ... rows: a few chunks at most
    assert time.monotonic() - started < 10


def test_a_statement_timeout_stops_a_million_row_stream(engine: Engine, stored: list[Any]) -> None:
    pulled = [0]
    started = time.monotonic()
    with rolled_back(engine) as conn:
        conn.execute(text("SET LOCAL statement_timeout = '100ms'"))
        with pytest.raises(DatabaseError, match="statement timeout") as raised:
            cells.insert_cells(conn, rows=_cells(1_000_000, 1_000_000, pulled=pulled))
        assert "57014" in str(raised.value)
    assert pulled[0] <= 100_000
    assert time.monotonic() - started < 10


# -- defect 5: odd connection states and broken networks end in casdb errors -----------------


def test_insert_in_an_aborted_transaction_is_a_database_error(
    conn: Connection, stored: list[Any]
) -> None:
    with pytest.raises(sqlalchemy.exc.DBAPIError):
        conn.execute(text("SELECT 1/0"))
    with pytest.raises(DatabaseError, match="25P02"):
        cells.insert_cells(conn, rows=_cells(900_000, 10))
    with pytest.raises(DatabaseError, match="25P02"):
        cells.get_cell_metadata_by_ids(conn, cell_ids=[1])


def test_operations_on_a_closed_or_invalidated_connection_are_database_errors(
    engine: Engine, stored: list[Any]
) -> None:
    closed = engine.connect()
    closed.close()
    for call in (
        lambda c: cells.insert_cells(c, rows=_cells(900_000, 10)),
        lambda c: cells.insert_features(
            c,
            rows=[
                {
                    "cas_feature_index": 900_000,
                    "cas_ingest_id": "faults",
                    "original_feature_id": "f",
                    "feature_name": "F",
                }
            ],
        ),
        lambda c: cells.get_cell_metadata_by_ids(c, cell_ids=[1]),
        lambda c: list(cells.iter_cell_metadata_by_ids(c, cell_ids=[1])),
    ):
        with pytest.raises(DatabaseError, match="closed"):
            call(closed)
    with engine.connect() as conn:
        conn.begin()
        conn.invalidate()
        with pytest.raises(DatabaseError, match="rolled back"):
            cells.get_cell_metadata_by_ids(conn, cell_ids=[1])
        with pytest.raises(DatabaseError, match="rolled back"):
            cells.insert_cells(conn, rows=_cells(900_000, 10))
        conn.rollback()
        assert len(cells.get_cell_metadata_by_ids(conn, cell_ids=[1, 2])) == 2


def test_a_tcp_reset_mid_copy_or_mid_lookup_is_a_database_error_and_invalidates(
    engine: Engine, stored: list[Any]
) -> None:
    with fault_proxy(engine.url) as proxy, _engine(proxy.url(engine.url)) as through:
        with through.connect() as conn:
            conn.begin()

            def resetting() -> Iterator[dict[str, Any]]:
                for n, row in enumerate(_cells(950_000, 200_000)):
                    if n == 30_000:
                        proxy.reset()
                    yield row

            with pytest.raises(DatabaseError):
                cells.insert_cells(conn, rows=resetting())
            assert conn.invalidated
            conn.rollback()

            many = list(range(STORED)) * 10
            timer = threading.Timer(0.2, proxy.reset)
            timer.start()
            try:
                with pytest.raises(DatabaseError):
                    for _ in range(20):  # 200,000 ids a call: the reset comes mid-lookup
                        cells.get_cell_metadata_by_ids(conn, cell_ids=many, columns=COLUMNS)
            finally:
                timer.cancel()
            assert conn.invalidated
            conn.rollback()
            assert [
                c.cas_cell_index for c in cells.get_cell_metadata_by_ids(conn, cell_ids=[3, 1])
            ] == [3, 1]  # reconnected
    with engine.connect() as conn:
        assert cells.count_cells(conn, cas_ingest_id="faults") == STORED


def test_a_generator_raising_mid_copy_leaves_the_connection_in_step(
    engine: Engine, stored: list[tuple[uuid.UUID, int, str]]
) -> None:
    class Broken(Exception):
        pass

    def breaking() -> Iterator[dict[str, Any]]:
        yield from _cells(960_000, 30_000)
        raise Broken

    with _engine(engine.url, pool_size=1, max_overflow=0) as pool:
        with pool.connect() as conn:
            conn.begin()
            with pytest.raises(Broken):
                cells.insert_cells(conn, rows=breaking())
            assert not conn.invalidated
            locator, user_id, key_hash = stored[1]
            found = keys.get_key_for_authentication(conn, key_locator=locator)
            assert (found.key.user_id, found.key_hash) == (user_id, key_hash)
            assert cells.count_cells(conn, cas_ingest_id="faults") == STORED


# -- defect 9: the lookup iterator -----------------------------------------------------------


@given(
    ids=st.lists(st.integers(-3, STORED + 3) | st.sampled_from([0, STORED - 1]), max_size=40),
    chunk=st.integers(1, 7),
    columns=st.none() | st.lists(st.sampled_from(COLUMNS)),
)
def test_the_iterator_yields_what_the_list_holds(
    engine: Engine,
    stored: list[Any],
    ids: list[int],
    chunk: int,
    columns: list[str] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cells, "LOOKUP_CHUNK_SIZE", chunk)
    monkeypatch.setattr(cells, "ITER_CHUNK_SIZE", 8 - chunk)
    with rolled_back(engine) as conn:
        listed = cells.get_cell_metadata_by_ids(conn, cell_ids=ids, columns=columns)
        iterated = cells.iter_cell_metadata_by_ids(conn, cell_ids=iter(ids), columns=columns)
        assert list(iterated) == listed
    assert [cell.cas_cell_index for cell in listed] == [n for n in ids if 0 <= n < STORED]


def test_the_iterator_checks_each_chunk_and_can_be_abandoned(
    engine: Engine, stored: list[tuple[uuid.UUID, int, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cells, "ITER_CHUNK_SIZE", 3)
    with _engine(engine.url, pool_size=1, max_overflow=0) as pool, pool.connect() as conn:
        with pytest.raises(InvalidInput, match="valid:"):  # at the call, before any SQL
            cells.iter_cell_metadata_by_ids(conn, cell_ids=[1], columns=["nope"])
        with pytest.raises(InvalidInput, match="iterable"):
            cells.iter_cell_metadata_by_ids(conn, cell_ids=5)  # type: ignore[arg-type]
        found = cells.iter_cell_metadata_by_ids(conn, cell_ids=[1, 2, 3, 4, "x", 6])
        assert [next(found).cas_cell_index for _ in range(3)] == [1, 2, 3]
        with pytest.raises(InvalidInput, match=r"cell_ids\[4\] must be an integer"):
            list(found)
        # Abandoned midway, with another query in between: the connection stays in step.
        first = cells.iter_cell_metadata_by_ids(conn, cell_ids=range(10, 20))
        assert next(first).cas_cell_index == 10
        locator, user_id, _ = stored[2]
        assert keys.get_key_for_authentication(conn, key_locator=locator).key.user_id == user_id
        assert [cell.cas_cell_index for cell in first] == list(range(11, 20))
        abandoned = cells.iter_cell_metadata_by_ids(conn, cell_ids=range(30, 40))
        assert next(abandoned).cas_cell_index == 30
        abandoned.close()
        del abandoned
        assert not conn.invalidated
        assert cells.count_cells(conn, cas_ingest_id="faults") == STORED


def test_the_iterator_memory_is_bounded_by_its_chunk(
    engine: Engine, stored: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cells, "ITER_CHUNK_SIZE", 2_000)

    def ids(count: int) -> Iterator[int]:
        return (n % STORED for n in range(count))

    def peak(run: Callable[[], None]) -> int:
        tracemalloc.start()
        try:
            run()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    with rolled_back(engine) as conn:

        def consume(count: int) -> Callable[[], None]:
            def run() -> None:
                seen = 0
                for _ in cells.iter_cell_metadata_by_ids(
                    conn, cell_ids=ids(count), columns=COLUMNS
                ):
                    seen += 1
                assert seen == count

            return run

        one_chunk = peak(consume(2_000))
        many_chunks = peak(consume(60_000))  # 30 chunks
        listed = peak(
            lambda: (
                cells.get_cell_metadata_by_ids(conn, cell_ids=ids(60_000), columns=COLUMNS) and None
            )
        )
    assert many_chunks < 2 * one_chunk + 1_000_000, (one_chunk, many_chunks)
    assert listed > 5 * many_chunks, (listed, many_chunks)  # the bound is real
