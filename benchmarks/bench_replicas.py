"""A primary and a streaming standby: storage per million cells, lookups per replica, lag.

    python -m benchmarks.bench_replicas --rows 1000000 --ids 100000

Starts a throwaway primary and a hot standby of it (casdb.local.temporary_primary_and_standby:
pg_basebackup -R, streaming, fsync off, synchronous_commit on), migrates, then:

* storage     N realistic cells ingested with insert_cells, VACUUM ANALYZE;
              pg_total_relation_size of cells_cellinfo (heap + TOAST + its 14 indexes) and
              pg_relation_size of the heap alone, per million rows.
* replay      the seconds wait_for_replica waits after the N-cell COPY commits.
* lookups     get_cell_metadata_by_ids of K random ids (5 columns) on the primary and on the
              standby, interleaved, best of --repeat; the ratio standby/primary.
* read-your-writes  create_user on the writer then at once get_user on the standby, --trials
              times, without and with wait_for_replica, idle and during a bulk ingest: the
              misses and the wait.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time

from sqlalchemy import Engine, text

import casdb
from benchmarks import _common
from casdb.local import temporary_primary_and_standby
from casdb.queries import cells, users
from casdb.testing.databases import migrate_to_head

COLUMNS = ["cell_type", "tissue", "disease", "donor_id", "total_mrna_umis"]


def storage(writer: Engine, rows: int) -> None:
    started = time.perf_counter()
    with writer.begin() as conn:
        cells.create_ingest(conn, cas_ingest_id=_common.INGEST_ID, dataset_id="bench-dataset")
        cells.insert_cells(conn, rows=_common.cell_rows(rows))
    took = time.perf_counter() - started
    with writer.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE cells_cellinfo"
        )
        total, heap = conn.execute(
            text(
                "SELECT pg_total_relation_size('cells_cellinfo'), "
                "pg_relation_size('cells_cellinfo')"
            )
        ).one()
    per_million = 1_000_000 / rows
    print(f"ingested {rows:,} cells in {took:.1f} s ({rows / took:,.0f} rows/s)")
    print(
        f"cells_cellinfo: {total * per_million / 2**20:,.0f} MiB per million cells in all "
        f"(heap {heap * per_million / 2**20:,.0f} MiB, indexes and TOAST "
        f"{(total - heap) * per_million / 2**20:,.0f} MiB)"
    )


def replay_after_copy(writer: Engine, reader: Engine) -> None:
    with writer.connect() as w, reader.connect() as r:
        print(
            f"wait_for_replica after the COPY and VACUUM: "
            f"{casdb.wait_for_replica(w, r, timeout=600) * 1000:.1f} ms"
        )


def lookups(writer: Engine, reader: Engine, rows: int, ids: int, repeat: int) -> None:
    wanted = random.Random(7).choices(range(int(rows * 1.1)), k=ids)
    best = {"primary": float("inf"), "standby": float("inf")}
    for _ in range(repeat):
        for name, engine in (("primary", writer), ("standby", reader)):
            with engine.connect() as conn:
                started = time.perf_counter()
                found = cells.get_cell_metadata_by_ids(conn, cell_ids=wanted, columns=COLUMNS)
                best[name] = min(best[name], time.perf_counter() - started)
    print(
        f"lookup of {ids:,} ids ({len(found):,} found), best of {repeat}: primary "
        f"{best['primary']:.3f} s, standby {best['standby']:.3f} s "
        f"(standby/primary {best['standby'] / best['primary']:.2f}x)"
    )


def read_your_writes(writer: Engine, reader: Engine, trials: int, label: str) -> None:
    for waiting in (False, True):
        misses, waits = 0, []
        with writer.connect() as w, reader.connect() as r:
            for trial in range(trials):
                stem = f"ryw-{label.replace(' ', '-')}-{waiting}-{trial}-{time.monotonic_ns()}"
                email = f"{stem}@example.org"
                user = users.create_user(w, email=email, username="ryw")
                w.commit()
                if waiting:
                    waits.append(casdb.wait_for_replica(w, r, timeout=30))
                try:
                    users.get_user(r, user_id=user.id)
                except casdb.NotFound:
                    misses += 1
                r.rollback()
        line = f"{label}: get_user on the standby right after create_user, {trials} trials, "
        line += "with" if waiting else "without"
        line += f" wait_for_replica: {misses} misses ({100 * misses / trials:.0f}%)"
        if waits:
            line += (
                f"; wait median {statistics.median(waits) * 1000:.2f} ms, "
                f"max {max(waits) * 1000:.1f} ms"
            )
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ids", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trials", type=int, default=300)
    args = parser.parse_args()
    with temporary_primary_and_standby() as (primary, standby):
        migrate_to_head(primary.url())
        writer, reader = casdb.create_engines(
            casdb.config_for_url(primary.url()), reader_config=casdb.config_for_url(standby.url())
        )
        with writer.connect() as conn:
            print(f"server: PostgreSQL {conn.exec_driver_sql('SHOW server_version').scalar()}")
        storage(writer, args.rows)
        replay_after_copy(writer, reader)
        lookups(writer, reader, args.rows, args.ids, args.repeat)
        read_your_writes(writer, reader, args.trials, "idle")
        done = threading.Event()

        def ingest() -> None:
            with writer.begin() as conn:
                cells.create_ingest(conn, cas_ingest_id="bench-busy", dataset_id="busy")
            first = args.rows + 10
            while not done.is_set():
                with writer.begin() as conn:
                    rows = _common.cell_rows(50_000, start=first)
                    cells.insert_cells(
                        conn, rows=(r | {"cas_ingest_id": "bench-busy"} for r in rows)
                    )
                first += 50_000

        thread = threading.Thread(target=ingest)
        thread.start()
        try:
            read_your_writes(writer, reader, args.trials, "during a bulk ingest")
        finally:
            done.set()
            thread.join()
        writer.dispose()
        reader.dispose()


if __name__ == "__main__":
    main()
