"""Shared pieces of the benchmarks: the method registry, a database at head, deterministic cell
rows, timing, RSS.

Each benchmark module registers the methods it compares with a :class:`Suite` decorator, the
way SQLAlchemy's ``examples/performance`` registers its tests with ``Profiler.profile``; the
runner picks them with ``--methods``. Run the modules from the repository root:
``python -m benchmarks.bench_ingest ...`` (or ``PYTHONPATH=. python benchmarks/bench_ingest.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import sqlalchemy
from sqlalchemy import Engine

from casdb import migrate
from casdb.local import temporary_server
from casdb.queries import cells

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: the working directory of child processes (``python -m benchmarks...``)."""

F = TypeVar("F", bound=Callable[..., Any])

INGEST_ID = "bench-ingest"

_CELL_TYPES = [f"cell type {n} ({'αβγ'[n % 3]})" for n in range(40)]
_TISSUES = ["blood", "lung", "liver", "brain", "kidney", "bone marrow", "skin"]
_DISEASES = ["normal", "COVID-19", "lung adenocarcinoma", "type 2 diabetes mellitus"]
_STAGES = [f"{n}-year-old human stage" for n in range(20, 90, 7)]


class Suite(Generic[F]):
    """The methods one benchmark compares, registered in order by :meth:`method`."""

    def __init__(self) -> None:
        self.methods: dict[str, F] = {}

    def method(self, name: str) -> Callable[[F], F]:
        """Decorator: register the function as the method ``name`` (its docstring says what)."""

        def register(function: F) -> F:
            assert name not in self.methods, f"method {name!r} registered twice"
            self.methods[name] = function
            return function

        return register

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--methods`` (default: all) and the common options."""
        names = ",".join(self.methods)
        parser.add_argument("--methods", default=names, help=f"comma-separated subset of {names}")
        add_common_arguments(parser)

    def chosen(self, args: argparse.Namespace) -> dict[str, F]:
        """The registered methods named by ``--methods``, in registration order."""
        wanted = [name.strip() for name in args.methods.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(self.methods))
        if unknown:
            known = ", ".join(self.methods)
            raise SystemExit(f"unknown method(s) {', '.join(unknown)}; known: {known}")
        return {name: method for name, method in self.methods.items() if name in wanted}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="database URL (at migration head, or empty); default: a throwaway embedded PostgreSQL",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (best is kept)")


@contextlib.contextmanager
def database(url: str | None, *, keep_cells: bool = False) -> Iterator[Engine]:
    """An engine on a database at migration head holding the benchmark ingest.

    The cells tables are truncated (unless ``keep_cells``); a --url database must hold no
    ingest but the benchmark's own, so that a benchmark never destroys real data.
    """
    with contextlib.ExitStack() as stack:
        if url is None:
            server = stack.enter_context(temporary_server())
            url = server.url().render_as_string(hide_password=False)
            print(f"database: throwaway embedded PostgreSQL at {server.url()}", flush=True)
        else:
            print(f"database: {sqlalchemy.make_url(url)!r}", flush=True)
        engine = sqlalchemy.create_engine(url)
        stack.callback(engine.dispose)
        with engine.begin() as conn:
            migrate.upgrade(conn, "head")
            others = [
                i.cas_ingest_id for i in cells.list_ingests(conn) if i.cas_ingest_id != INGEST_ID
            ]
            if others:
                raise SystemExit(
                    f"the database holds other ingests ({', '.join(others[:5])}): the benchmark "
                    "truncates the cells tables; point --url at an empty database"
                )
            if not keep_cells:
                conn.exec_driver_sql("TRUNCATE cells_ingestinfo CASCADE")
            if not cells.list_ingests(conn):
                cells.create_ingest(conn, cas_ingest_id=INGEST_ID, dataset_id="bench-dataset")
            version = conn.exec_driver_sql("SHOW server_version").scalar()
        print(f"server: PostgreSQL {version}", flush=True)
        yield engine


def cell_row(index: int) -> dict[str, Any]:
    """A realistic cells_cellinfo row (as a mapping), the same for the same index."""
    return {
        "cas_cell_index": index,
        "cas_ingest_id": INGEST_ID,
        "original_cell_id": f"AAACCTGAGAAGGCCT-{index}",
        "obs_metadata_extra": {"n_genes": 1000 + index % 3000, "batch": f"b{index % 8}"},
        "is_primary_data": index % 5 != 0,
        "donor_id": f"donor_{index % 97}",
        "cell_type": _CELL_TYPES[index % len(_CELL_TYPES)],
        "assay": "10x 3' v3",
        "development_stage": _STAGES[index % len(_STAGES)],
        "tissue": _TISSUES[index % len(_TISSUES)],
        "disease": _DISEASES[index % len(_DISEASES)],
        "organism": "Homo sapiens",
        "self_reported_ethnicity": "European" if index % 3 else None,
        "sex": "female" if index % 2 else "male",
        "suspension_type": "cell",
        "total_mrna_umis": 500 + index % 40_000,
        "cell_type_ontology_term_id": f"CL:{index % 40:07d}",
        "assay_ontology_term_id": "EFO:0009922",
        "development_stage_ontology_term_id": f"HsapDv:{index % 10:07d}",
        "tissue_ontology_term_id": f"UBERON:{index % 7:07d}",
        "disease_ontology_term_id": "PATO:0000461",
        "organism_ontology_term_id": "NCBITaxon:9606",
        "self_reported_ethnicity_ontology_term_id": "HANCESTRO:0005" if index % 3 else None,
        "sex_ontology_term_id": "PATO:0000383" if index % 2 else "PATO:0000384",
    }


def cell_rows(count: int, start: int = 0) -> Iterator[dict[str, Any]]:
    """Generate ``count`` rows lazily (nothing is kept)."""
    return (cell_row(index) for index in range(start, start + count))


def best_of(
    repeat: int, run: Callable[[], Any], reset: Callable[[], None] | None = None, label: str = ""
) -> float:
    """Run ``run`` ``repeat`` times (``reset`` before each, untimed); return the best seconds."""
    times = []
    for attempt in range(repeat):
        if reset is not None:
            reset()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
        print(f"  {label} run {attempt + 1}: {times[-1]:.2f} s", flush=True)
    if len(times) > 1:
        print(
            f"  {label} best {min(times):.2f} s, median {statistics.median(times):.2f} s",
            flush=True,
        )
    return min(times)


def interleaved(
    runs: Mapping[str, Callable[[], Any]],
    *,
    repeat: int,
    loops: int = 1,
    after: Callable[[], Any] | None = None,
    check: Callable[[str, Any], None] | None = None,
) -> dict[str, float]:
    """The best seconds per call of each run: ``repeat`` rounds, each running every method in
    turn for ``loops`` calls (so that a change in the machine's load hits them all alike).

    ``after`` runs untimed after each method's round (a rollback); ``check(name, result)``
    gets the last result of each method's first round, after its clock stopped.
    """
    best: dict[str, float] = {}
    for attempt in range(repeat):
        for name, run in runs.items():
            result = None
            started = time.perf_counter()
            for _ in range(loops):
                result = run()
            elapsed = (time.perf_counter() - started) / loops
            if after is not None:
                after()
            if check is not None and attempt == 0:
                check(name, result)
            del result
            best[name] = min(best.get(name, elapsed), elapsed)
    return best


def analyze_cells(engine: Engine) -> None:
    """VACUUM ANALYZE the cells table (after a fill: lookups plan with fresh statistics)."""
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE cells_cellinfo"
        )


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
