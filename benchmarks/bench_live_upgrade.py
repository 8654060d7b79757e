"""How long does `casdb db upgrade` stall a live CAS database's readers and writers?

Loads a database at casdb's baseline (the live CAS schema) with ``--cells`` cells and
realistic rows in every table, starts one probe thread per table that reads and writes it
the way the CAS services do (a read, then a write, every few milliseconds, each statement
its own transaction), upgrades the database to head, and prints the longest time any probe
statement took per table while the upgrade ran, and the upgrade's duration.

    python -m benchmarks.bench_live_upgrade --cells 2000000    # from the repository root

The "before" figure comes from the same script run against an older checkout
(``PYTHONPATH=/path/to/old/checkout``): a ``casdb.migrate`` without the online-safe path is
upgraded the way its CLI did it, in one transaction. ``--one-transaction`` forces that.
Without ``--url`` a throwaway embedded PostgreSQL is used.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, text

from casdb import migrate
from casdb.local import temporary_server

INGESTS = 20
FEATURES_PER_INGEST = 2000
USERS = 5000
ACTIVITY_PER_USER = 40
MODELS = 6

_LOAD = [
    "INSERT INTO users_user (id, email, username, active, requests_processed, cells_processed, "
    "is_admin, cell_quota, lifetime_cell_quota, quota_increased, created_at, ask_for_feedback) "
    "SELECT g, 'user' || g || '@example.org', 'user ' || g, g % 50 <> 0, g % 97, g * 13 % 100000, "
    "g % 500 = 0, 100000, 50000, g % 7 = 0, timestamp '2023-01-01' + g * interval '1 hour', "
    f"g % 3 <> 0 FROM generate_series(1, {USERS}) g",
    "SELECT setval('user_id_seq', (SELECT max(id) FROM users_user))",
    "INSERT INTO users_userkey (key_locator, user_id, created_date, active, expires, key_hash) "
    "SELECT md5('k' || g)::uuid, g, timestamp '2024-01-01', true, timestamp '2030-01-01', "
    f"'$argon2id$v=19$m=65536,t=3,p=4$' || md5('h' || g) FROM generate_series(1, {USERS}) g",
    "INSERT INTO users_useractivity (user_id, request_id, cell_count, model_name, method, "
    "finished_time, event) SELECT 1 + g % " + str(USERS) + ", 'req-' || (g / 2), g % 5000, "
    "'cas-model-' || (g % " + str(MODELS) + "), 'annotate', "
    "timestamp '2024-01-01' + g * interval '10 seconds', "
    "(ARRAY['STARTED', 'SUCCEEDED', 'FAILED'])[1 + (g % 2) + (g % 11 = 0)::int]::useractivityevent "
    f"FROM generate_series(1, {USERS * ACTIVITY_PER_USER}) g",
    "INSERT INTO ml_management_model (model_name, model_file_path, description, "
    "embedding_dimension, admin_use_only, schema_name, bq_dataset_name, is_default_model, "
    "created_date) SELECT 'cas-model-' || g, 'gs://cas-models/' || g || '.pt', 'model ' || g, "
    "512, g % 2 = 0, 'refdata-gex-GRCh38-2020-A', 'cas_50m_dataset', g = 1, now() "
    f"FROM generate_series(0, {MODELS - 1}) g",
    "INSERT INTO ml_management_matchingengineindex (index_name, description, embedding_dimension, "
    "endpoint_id, deployed_index_id, num_neighbors, model_id, is_grpc, api_endpoint) "
    "SELECT 'index-' || id, NULL, 512, 'endpoint-' || id, 'deployed-' || id, 100, id, true, "
    "'10.0.0.' || id FROM ml_management_model",
    "INSERT INTO cells_ingestinfo (cas_ingest_id, dataset_id, dataset_version_id, uns_metadata, "
    "ingest_timestamp) SELECT 'ingest-' || g, 'dataset-' || g, 'v' || g, "
    "jsonb_build_object('title', 'dataset ' || g), now() FROM generate_series(1, "
    f"{INGESTS}) g",
    "INSERT INTO cells_featureinfo (id, original_feature_id, feature_name, feature_biotype, "
    "feature_is_filtered, feature_reference, var_metadata_extra, cas_ingest_id) "
    "SELECT g, 'ENSG' || lpad(g::text, 11, '0'), 'GENE' || g, 'gene', false, 'NCBITaxon:9606', "
    f"'{{}}', 'ingest-' || (1 + g % {INGESTS}) "
    f"FROM generate_series(1, {INGESTS * FEATURES_PER_INGEST}) g",
]

_CELLS = (
    "INSERT INTO cells_cellinfo (cas_cell_index, cas_ingest_id, original_cell_id, "
    "obs_metadata_extra, is_primary_data, donor_id, cell_type, assay, development_stage, tissue, "
    "disease, organism, self_reported_ethnicity, sex, suspension_type, total_mrna_umis, "
    "cell_type_ontology_term_id, assay_ontology_term_id, development_stage_ontology_term_id, "
    "tissue_ontology_term_id, disease_ontology_term_id, organism_ontology_term_id, "
    "self_reported_ethnicity_ontology_term_id, sex_ontology_term_id) "
    "SELECT g, 'ingest-' || (1 + g % " + str(INGESTS) + "), 'AAACCTGAGAAGGCCT-' || g, "
    "jsonb_build_object('n_genes', g % 4000), g % 10 <> 0, 'donor-' || (g % 300), "
    "'cell type ' || (g % 40), (ARRAY['10x 3'' v3', '10x 5'' v2', 'Smart-seq2'])[1 + g % 3], "
    "(20 + g % 70) || '-year-old human stage', "
    "(ARRAY['blood', 'lung', 'liver', 'brain', 'kidney', 'bone marrow', 'skin'])[1 + g % 7], "
    "(ARRAY['normal', 'COVID-19', 'lung adenocarcinoma'])[1 + g % 3], 'Homo sapiens', "
    "'European', (ARRAY['female', 'male'])[1 + g % 2], 'cell', 1000 + g % 20000, "
    "'CL:' || lpad((g % 40)::text, 7, '0'), 'EFO:0009922', 'HsapDv:0000' || (g % 90), "
    "'UBERON:000' || (g % 7), 'PATO:0000461', 'NCBITaxon:9606', 'HANCESTRO:0005', "
    "'PATO:000038' || (g % 2) FROM generate_series({low}, {high}) g"
)


def load(engine: Engine, cells: int) -> None:
    """Fill a database at the baseline with realistic rows; VACUUM ANALYZE it."""
    started = time.perf_counter()
    with engine.begin() as conn:
        for statement in _LOAD:
            conn.execute(text(statement))
    step = 500_000
    for low in range(1, cells + 1, step):
        with engine.begin() as conn:
            conn.execute(text(_CELLS.format(low=int(low), high=int(min(cells, low + step - 1)))))
    with engine.begin() as conn:
        conn.execute(text("SELECT setval('cells_cellinfo_cas_cell_index_seq', :n)"), {"n": cells})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    print(f"loaded {cells:,} cells and every other table in {time.perf_counter() - started:.0f} s")


class Probe(threading.Thread):
    """Runs one table's read and write, each its own transaction, timing every statement."""

    def __init__(self, engine: Engine, table: str, ops: list[Callable[[Connection, int], Any]]):
        super().__init__(name=f"probe-{table}", daemon=True)
        self.engine, self.table, self.ops = engine, table, ops
        self.stop = threading.Event()
        self.window: tuple[float, float] | None = None
        self.samples: list[tuple[float, float]] = []  # (wall-clock start, duration)
        self.errors: list[str] = []

    def run(self) -> None:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            n = 0
            while not self.stop.is_set():
                n += 1
                op = self.ops[n % len(self.ops)]
                start, clock = time.time(), time.perf_counter()
                try:
                    op(conn, n)
                except sqlalchemy.exc.DBAPIError as error:
                    self.errors.append(str(error.orig).splitlines()[0][:160])
                    if conn.invalidated:
                        return
                self.samples.append((start, time.perf_counter() - clock))
                time.sleep(0.005)


def _probes(engine: Engine, cells: int) -> list[Probe]:
    def ex(sql: str, **params: Callable[[int], Any]) -> Callable[[Connection, int], Any]:
        def run(conn: Connection, n: int) -> None:
            result = conn.execute(text(sql), {k: value(n) for k, value in params.items()})
            if result.returns_rows:
                result.all()

        return run

    tag = int(time.time() * 1000) % 10_000_000
    return [
        Probe(
            engine,
            "users_user",
            [
                ex(
                    "SELECT id, email, active, is_admin FROM users_user WHERE id = :id",
                    id=lambda n: 1 + n % USERS,
                ),
                ex(
                    "INSERT INTO users_user (email, username, active, requests_processed, "
                    "cells_processed, is_admin, cell_quota, lifetime_cell_quota, quota_increased, "
                    "created_at, ask_for_feedback) VALUES (:email, 'probe', true, 0, 0, false, "
                    "100000, 50000, false, now(), true)",
                    email=lambda n: f"p{tag}-{n}@example.org",
                ),
            ],
        ),
        Probe(
            engine,
            "users_userkey",
            [
                ex(
                    "SELECT k.key_hash, k.expires, u.active FROM users_userkey k JOIN users_user u "
                    "ON u.id = k.user_id WHERE k.key_locator = md5(:k)::uuid",
                    k=lambda n: f"k{1 + n % USERS}",
                ),
                ex(
                    "INSERT INTO users_userkey (key_locator, user_id, "
                    "created_date, active, expires, "
                    "key_hash) VALUES (md5(:k)::uuid, :u, now(), true, now() + "
                    "interval '180 days', "
                    "'h')",
                    k=lambda n: f"probe{tag}-{n}",
                    u=lambda n: 1 + n % USERS,
                ),
            ],
        ),
        Probe(
            engine,
            "users_useractivity",
            [
                ex(
                    "INSERT INTO users_useractivity (user_id, request_id, cell_count, model_name, "
                    "method, finished_time, event) VALUES (:u, :r, 100, 'cas-model-1', 'annotate', "
                    "now(), 'SUCCEEDED')",
                    u=lambda n: 1 + n % USERS,
                    r=lambda n: f"p{tag}-{n}",
                ),
                ex(
                    "SELECT request_id, max(cell_count) FROM users_useractivity WHERE user_id = :u "
                    "AND finished_time >= timestamp '2024-01-01' GROUP BY request_id",
                    u=lambda n: 1 + n % USERS,
                ),
            ],
        ),
        Probe(
            engine,
            "ml_management_model",
            [
                ex(
                    "SELECT id, model_file_path FROM ml_management_model WHERE model_name = :m",
                    m=lambda n: f"cas-model-{n % MODELS}",
                ),
                ex(
                    "UPDATE ml_management_model SET description = :d WHERE "
                    "model_name = 'cas-model-5'",
                    d=lambda n: f"probe {n}",
                ),
            ],
        ),
        Probe(
            engine,
            "ml_management_matchingengineindex",
            [
                ex(
                    "SELECT index_name, endpoint_id FROM ml_management_matchingengineindex "
                    "WHERE model_id = (SELECT id FROM ml_management_model WHERE model_name = :m)",
                    m=lambda n: f"cas-model-{n % MODELS}",
                ),
                ex(
                    "UPDATE ml_management_matchingengineindex SET num_neighbors = 100 + mod(:n, 5) "
                    "WHERE index_name = 'index-6'",
                    n=lambda n: n,
                ),
            ],
        ),
        Probe(
            engine,
            "cells_ingestinfo",
            [
                ex(
                    "SELECT dataset_id, uns_metadata FROM cells_ingestinfo WHERE "
                    "cas_ingest_id = :i",
                    i=lambda n: f"ingest-{1 + n % INGESTS}",
                ),
                ex(
                    "INSERT INTO cells_ingestinfo (cas_ingest_id, dataset_id, uns_metadata, "
                    "ingest_timestamp) VALUES (:i, 'probe', '{}', now())",
                    i=lambda n: f"probe-{tag}-{n}",
                ),
            ],
        ),
        Probe(
            engine,
            "cells_featureinfo",
            [
                ex(
                    "SELECT cas_feature_index, feature_name FROM cells_featureinfo "
                    "WHERE cas_feature_index = ANY(CAST(:ids AS int[]))",
                    ids=lambda n: [
                        1 + (n * 7919 + k) % (INGESTS * FEATURES_PER_INGEST) for k in range(20)
                    ],
                ),
                ex(
                    "INSERT INTO cells_featureinfo (id, original_feature_id, feature_name, "
                    "var_metadata_extra, cas_ingest_id) VALUES (:n, 'ENSGPROBE', 'PROBE', '{}', "
                    "'ingest-1')",
                    n=lambda n: 10_000_000 + n,
                ),
            ],
        ),
        Probe(
            engine,
            "cells_cellinfo",
            [
                ex(
                    "SELECT cas_cell_index, cell_type, tissue FROM cells_cellinfo "
                    "WHERE cas_cell_index = ANY(CAST(:ids AS int[]))",
                    ids=lambda n: [1 + (n * 104729 + k * 7) % cells for k in range(100)],
                ),
                ex(
                    "INSERT INTO cells_cellinfo (cas_ingest_id, original_cell_id, cell_type) "
                    "VALUES ('ingest-1', :c, 'probe cell')",
                    c=lambda n: f"probe-{n}",
                ),
            ],
        ),
    ]


_UPGRADE = """
import sys, time, sqlalchemy
from casdb import migrate
engine = sqlalchemy.create_engine(sys.argv[1])
print("started", time.time(), flush=True)
try:
    if sys.argv[2] == "one-transaction":
        with engine.begin() as conn:  # what `casdb db upgrade` did before the online path
            migrate.upgrade(conn, "head")
    else:
        migrate.upgrade(engine, "head")
except Exception as error:
    print("failed", time.time(), str(getattr(error, "orig", error)).splitlines()[0][:300])
else:
    print("finished", time.time())
"""


def _upgrade(url: str, one_transaction: bool) -> tuple[float, float, str | None]:
    """Upgrade in a child process (so its Python work never delays the probe threads).

    Returns its start and end (wall clock) and, when it failed, the error.
    """
    mode = "one-transaction" if one_transaction else "engine"
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", _UPGRADE, url, mode], capture_output=True, text=True, check=False
    )
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    if "started" not in lines:
        raise SystemExit(f"the upgrade did not start:\n{result.stderr}")
    if "finished" in lines:
        return float(lines["started"]), float(lines["finished"]), None
    if "failed" in lines:
        when, error = lines["failed"].split(" ", 1)
        return float(lines["started"]), float(when), error
    raise SystemExit(f"the upgrade crashed:\n{result.stderr}")


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with temporary_server() as server:
        yield server.url(database="postgres").render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2_000_000)
    parser.add_argument("--url", help="an EMPTY database (default: a throwaway embedded server)")
    parser.add_argument(
        "--one-transaction",
        action="store_true",
        help="upgrade in one transaction (the old `casdb db upgrade`); implied by an old casdb",
    )
    args = parser.parse_args()
    one_transaction = args.one_transaction or not hasattr(migrate, "migration_settings")
    with _server(args.url) as url:
        engine = sqlalchemy.create_engine(url, pool_size=12)
        try:
            with engine.begin() as conn:
                version = conn.execute(text("SHOW server_version")).scalar()
                migrate.upgrade(conn, migrate.BASELINE_REVISION)
            print(
                f"PostgreSQL {version}; upgrade path: "
                f"{'one transaction (old)' if one_transaction else 'online-safe (Engine)'}"
            )
            load(engine, args.cells)
            probes = _probes(engine, args.cells)
            for probe in probes:
                probe.start()
            time.sleep(2.0)
            started, finished, failure = _upgrade(url, one_transaction)
            time.sleep(1.0)
            for probe in probes:
                probe.stop.set()
            for probe in probes:
                probe.join(timeout=60)
            with engine.connect() as conn:
                revisions = migrate.current_revisions(conn)
            assert failure is not None or revisions == (migrate.head_revision(),), revisions
        finally:
            engine.dispose()
    if failure is None:
        print(f"upgrade to head took {finished - started:.2f} s")
    else:
        print(f"upgrade FAILED after {finished - started:.2f} s (rolled back): {failure}")
    print(f"{'table':36} {'longest stall':>14} {'before upgrade':>15} {'probes':>7}  errors")
    worst = 0.0
    for probe in probes:
        during = [d for s, d in probe.samples if s + d >= started and s <= finished]
        idle = [d for s, d in probe.samples if s + d < started]
        stall = max(during, default=0.0)
        worst = max(worst, stall)
        print(
            f"{probe.table:36} {stall * 1000:11.0f} ms {max(idle, default=0) * 1000:12.0f} ms "
            f"{len(during):7d}  {len(probe.errors)} {probe.errors[:1] or ''}"
        )
    print(f"longest stall on any table: {worst * 1000:.0f} ms (cells: {args.cells:,})")


if __name__ == "__main__":
    main()
