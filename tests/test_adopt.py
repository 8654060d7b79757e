"""``casdb db adopt``: a live CAS database is checked, stamped, upgraded, and keeps every row."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import URL, Engine, text

from casdb import catalog, migrate
from casdb.adopt import AdoptRefused, adopt, compare
from casdb.cli import main
from tests.conftest import execute_sql, load_original_schema

HEAD = migrate.head_revision()
BASELINE = migrate.BASELINE_REVISION
CAS_TABLES = [
    "cells_cellinfo",
    "cells_featureinfo",
    "cells_ingestinfo",
    "ml_management_matchingengineindex",
    "ml_management_model",
    "users_user",
    "users_useractivity",
    "users_userkey",
]


@pytest.fixture(scope="module")
def live_template(make_database: Callable[..., URL]) -> str:
    """A database built from the live CAS schema fixture (alembic_version = baseline)."""
    url = make_database()
    load_original_schema(url)
    assert url.database is not None
    return url.database


@pytest.fixture
def live(make_database: Callable[..., URL], live_template: str) -> str:
    """URL of a fresh copy of a live CAS database."""
    return make_database(template=live_template).render_as_string(hide_password=False)


def _engine(url: str) -> Engine:
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


def _state(url: str) -> tuple[dict[str, list[list[Any]]], tuple[str, ...]]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return catalog.snapshot(conn), migrate.current_revisions(conn)
    finally:
        engine.dispose()


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every CAS table, every column, in primary-key order."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: [
                    dict(row._mapping)
                    for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
                ]
                for table in CAS_TABLES
                if conn.execute(text(f"SELECT to_regclass('{table}')")).scalar() is not None
            }
    finally:
        engine.dispose()


def _insert_live_rows(url: str) -> None:
    """Rows as the original CAS wrote them: explicit values, legacy featureinfo.id, two defaults."""
    execute_sql(
        url,
        "INSERT INTO users_user (email, username, active, requests_processed, cells_processed, "
        "is_admin, cell_quota, lifetime_cell_quota, quota_increased, created_at, "
        "ask_for_feedback) VALUES "
        "('ann@example.org', 'ann', true, 3, 40, false, 100000, 50000, false, "
        "'2024-01-01 10:00', true), "
        "('bob@example.org', 'bob', false, 0, 0, true, 10, NULL, true, '2024-02-02', false)",
        "INSERT INTO users_useractivity (user_id, request_id, cell_count, model_name, method, "
        "finished_time, event) VALUES "
        "(1, 'r1', 100, 'm1', 'annotate', '2024-03-01', 'SUCCEEDED'), "
        "(1, 'r2', 5, 'm1', 'annotate', '2024-03-02', 'FAILED'), "
        "(2, NULL, 0, 'm2', NULL, NULL, 'STARTED')",
        "INSERT INTO users_userkey (key_locator, user_id, created_date, active, expires, "
        "key_hash) VALUES "
        "('1b4e28ba-2fa1-11d2-883f-0016d3cca427', 1, '2024-01-01', true, '2024-07-01', 'h1')",
        "INSERT INTO ml_management_model (model_name, model_file_path, description, "
        "embedding_dimension, admin_use_only, schema_name, bq_dataset_name, is_default_model, "
        "created_date) VALUES "
        "('m1', 'gs://m1', 'first', 512, false, 's', 'd', true, '2024-01-01'), "
        "('m2', 'gs://m2', NULL, 256, true, 's', 'd', true, '2024-01-02')",
        "INSERT INTO ml_management_matchingengineindex (index_name, description, "
        "embedding_dimension, endpoint_id, deployed_index_id, num_neighbors, model_id, "
        "is_grpc, api_endpoint) VALUES "
        "('ix1', NULL, 512, 'e1', 'd1', 100, 1, true, 'api'), "
        "('ix2', 'two', 256, 'e2', NULL, 50, 2, false, NULL)",
        "INSERT INTO cells_ingestinfo (cas_ingest_id, dataset_id, dataset_version_id, "
        "uns_metadata, ingest_timestamp) VALUES "
        "('i1', 'ds1', 'v1', '{\"title\": \"x\"}', '2024-01-05'), "
        "('i2', 'ds2', NULL, '{}', NULL)",
        "INSERT INTO cells_featureinfo (id, original_feature_id, feature_name, feature_biotype, "
        "feature_is_filtered, feature_reference, var_metadata_extra, cas_ingest_id) VALUES "
        "(77, 'ENSG1', 'A1BG', 'gene', false, 'NCBITaxon:9606', '{}', 'i1'), "
        "(78, 'ENSG2', 'A2M', NULL, NULL, NULL, '{\"k\": [1, 2]}', 'i2')",
        "INSERT INTO cells_cellinfo (cas_ingest_id, original_cell_id, obs_metadata_extra, "
        "is_primary_data, donor_id, cell_type, assay, total_mrna_umis, "
        "cell_type_ontology_term_id) VALUES "
        "('i1', 'c1', '{\"a\": 1}', true, 'd1', 'T cell', '10x 3'' v3', 1200, 'CL:0000084'), "
        "('i1', 'c2', NULL, NULL, NULL, 'B cell', NULL, NULL, NULL), "
        "('i2', 'c3', '{}', false, 'd2', 'neuron', 'Smart-seq2', 9, 'CL:0000540')",
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- adopting ------------------------------------------------------------------------


def test_adopt_upgrades_a_live_database_keeping_every_row(
    live: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _insert_live_rows(live)
    before = _rows(live)
    assert all(before[table] for table in CAS_TABLES)

    code, out, err = run(capsys, "--url", live, "db", "adopt")
    assert code == 0, err
    assert f"matches the live CAS schema ({BASELINE}) exactly" in out
    assert f"alembic_version holds the baseline {BASELINE}" in out
    assert f"upgraded to head {HEAD}" in out
    assert "kept every row: cells_cellinfo 3, cells_featureinfo 2" in out
    assert "adopted: " in out and out.rstrip().endswith(HEAD)

    after = _rows(live)
    # Every row and every value is kept, except that only the newest model stays default.
    models = after.pop("ml_management_model")
    expected_models = before.pop("ml_management_model")
    assert after == before
    assert [(row["model_name"], row.pop("is_default_model")) for row in models] == [
        ("m1", False),
        ("m2", True),
    ]
    for row in expected_models:
        del row["is_default_model"]
    assert models == expected_models

    engine = _engine(live)
    with engine.connect() as conn:
        assert migrate.current_revisions(conn) == (HEAD,)
        assert migrate.schema_differences(conn) == []
        # New rows get casdb's defaults and continue the sequences.
        conn.execute(text("INSERT INTO users_user (email, username) VALUES ('c@d.e', 'c')"))
        assert conn.execute(text("SELECT max(id) FROM users_user")).scalar_one() == 3
    engine.dispose()
    assert run(capsys, "--url", live, "db", "check")[0] == 0


def test_adopt_stamps_a_live_database_without_alembic_version(
    live: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _insert_live_rows(live)
    execute_sql(live, "DROP TABLE alembic_version")
    before = _rows(live)
    code, out, err = run(capsys, "--url", live, "db", "adopt")
    assert code == 0, err
    assert f"stamped the baseline {BASELINE} (alembic_version was missing)" in out
    assert _state(live)[1] == (HEAD,)
    assert _rows(live)["users_user"] == before["users_user"]


def test_adopt_dry_run_changes_nothing(live: str, capsys: pytest.CaptureFixture[str]) -> None:
    _insert_live_rows(live)
    state, rows = _state(live), _rows(live)
    code, out, _ = run(capsys, "--url", live, "db", "adopt", "--dry-run")
    assert code == 0
    assert f"would upgrade to head {HEAD}" in out and "nothing was changed" in out
    assert _state(live) == state and _rows(live) == rows


def test_adopt_reports_harmless_differences_and_proceeds(
    live: str, capsys: pytest.CaptureFixture[str]
) -> None:
    execute_sql(
        live,
        "CREATE INDEX ix_extra_username ON users_user (username)",
        "ALTER TABLE users_user ALTER COLUMN username SET DEFAULT 'anonymous'",
        "CREATE SEQUENCE extra_counter",
    )
    code, out, err = run(capsys, "--url", live, "db", "adopt")
    assert code == 0, err
    assert "3 harmless difference(s)" in out
    assert "harmless: index: ix_extra_username on users_user is extra" in out
    assert "harmless: column: users_user.username default is 'anonymous'" in out
    assert "harmless: sequence: extra_counter is extra" in out
    # The extra index is kept, and `db check` will say so.
    assert "index ix_extra_username on users_user (username) is in the database" in out
    assert _state(live)[1] == (HEAD,)


def test_adopt_through_the_python_api(live: str) -> None:
    engine = _engine(live)
    with engine.begin() as conn:
        report = adopt(conn)
    engine.dispose()
    assert report.revision_before == BASELINE and not report.stamped
    assert report.revision_after == HEAD
    assert report.differences == [] and report.remaining == []
    assert report.rows == dict.fromkeys(CAS_TABLES, 0)


# --- refusing ------------------------------------------------------------------------


def test_adopt_refuses_an_adopted_database(
    live: str, db_url_at_head: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--url", live, "db", "adopt")[0] == 0
    for url in (live, db_url_at_head):
        state = _state(url)
        code, out, err = run(capsys, "--url", url, "db", "adopt")
        assert code == 1
        assert "already adopted" in err and "nothing to do" in err
        assert "Traceback" not in err
        assert _state(url) == state


@pytest.fixture
def db_url_at_head(make_database: Callable[..., URL]) -> str:
    url = make_database()
    engine = _engine(url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        migrate.upgrade(conn, "head")
    engine.dispose()
    return url.render_as_string(hide_password=False)


def test_adopt_refuses_a_database_at_an_intermediate_casdb_revision(
    live: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A chain with a revision after the baseline that is not the head: pretend HEAD is older.
    monkeypatch.setattr(migrate, "head_revision", lambda: "f" * 12)
    execute_sql(live, f"UPDATE alembic_version SET version_num = '{HEAD}'")
    code, _, err = run(capsys, "--url", live, "db", "adopt")
    assert code == 1 and "already adopted" in err and "casdb db upgrade" in err


@pytest.mark.parametrize(
    ("drift", "reported"),
    [
        (
            "ALTER TABLE users_user DROP COLUMN ask_for_feedback",
            "column: users_user.ask_for_feedback is missing",
        ),
        (
            "ALTER TABLE users_user ADD COLUMN nickname text",
            "column: users_user.nickname (text) is not a CAS column",
        ),
        (
            "ALTER TABLE cells_cellinfo ALTER COLUMN donor_id TYPE varchar(100)",
            "column: cells_cellinfo.donor_id is character varying(100), "
            "the baseline has character varying(255)",
        ),
        (
            "ALTER TABLE users_user ALTER COLUMN username DROP NOT NULL",
            "column: users_user.username is nullable, the baseline has it NOT NULL",
        ),
        (
            "ALTER TABLE users_user ALTER COLUMN id DROP DEFAULT",
            "a serial column must use its baseline sequence",
        ),
        ("DROP TABLE users_userkey", "table: users_userkey is missing"),
        ("CREATE TABLE notes (id int, body text)", "table: notes is not a CAS table"),
        (
            "ALTER TABLE users_user RENAME CONSTRAINT user_email_key TO users_user_email_key",
            "user_email_key on users_user [UNIQUE (email)] is named users_user_email_key here",
        ),
        (
            "ALTER TABLE users_userkey DROP CONSTRAINT users_userkey_user_id_fkey",
            "constraint: users_userkey_user_id_fkey on users_userkey",
        ),
        (
            "DROP INDEX ix_user_activity_user_id",
            "index: ix_user_activity_user_id on users_useractivity is missing",
        ),
        (
            "ALTER TYPE useractivityevent ADD VALUE 'CANCELLED'",
            "enum: type useractivityevent has labels",
        ),
        ("ALTER SEQUENCE user_id_seq OWNED BY NONE", "sequence: user_id_seq is owned by None"),
    ],
)
def test_adopt_refuses_a_drifted_database_changing_nothing(
    live: str, drift: str, reported: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _insert_live_rows(live)
    execute_sql(live, drift)
    state, rows = _state(live), _rows(live)
    code, out, err = run(capsys, "--url", live, "db", "adopt")
    assert code == 1
    assert "differs from the live CAS schema" in out
    assert reported in out, out
    assert "blocking: " in out
    assert "could lose data; nothing was changed" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _state(live) == state and _rows(live) == rows
    assert state[1] == (BASELINE,)


def test_adopt_refuses_an_empty_database(
    make_database: Callable[..., URL], capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_database().render_as_string(hide_password=False)
    code, out, err = run(capsys, "--url", url, "db", "adopt")
    assert code == 1 and out == ""
    assert "no tables" in err and "casdb db upgrade" in err
    snapshot, revisions = _state(url)
    assert revisions == () and snapshot["tables"] == []


def test_adopt_refuses_an_unknown_revision(live: str, capsys: pytest.CaptureFixture[str]) -> None:
    execute_sql(live, "UPDATE alembic_version SET version_num = '0123abcd4567'")
    state = _state(live)
    code, _, err = run(capsys, "--url", live, "db", "adopt")
    assert code == 1 and "unknown alembic revision 0123abcd4567" in err and BASELINE in err
    assert _state(live) == state


def test_adopt_refuses_a_database_that_is_not_cas(
    make_database: Callable[..., URL], capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_database().render_as_string(hide_password=False)
    execute_sql(url, "CREATE TABLE invoices (id serial PRIMARY KEY, total numeric)")
    code, _, err = run(capsys, "--url", url, "db", "adopt")
    assert code == 1 and "unknown schema" in err and "invoices" in err
    assert _state(url)[1] == ()


def test_adopt_refused_error_carries_the_differences(live: str) -> None:
    execute_sql(live, "ALTER TABLE users_user DROP COLUMN username")
    engine = _engine(live)
    with engine.connect() as conn, pytest.raises(AdoptRefused) as refused:
        adopt(conn)
    engine.dispose()
    assert [str(d) for d in refused.value.differences if d.blocking] == [
        "blocking: column: users_user.username is missing"
    ]


# --- comparing catalogs (no database) ------------------------------------------------


def test_compare_finds_nothing_between_the_baseline_and_itself() -> None:
    baseline = catalog.baseline_snapshot()
    assert compare(baseline, copy.deepcopy(baseline)) == []


def test_compare_marks_only_extras_and_cosmetics_harmless() -> None:
    baseline = catalog.baseline_snapshot()
    changed = copy.deepcopy(baseline)
    changed["indexes"].append(
        ["users_user", "ix_x", "CREATE INDEX ix_x ON public.users_user USING btree (username)"]
    )
    changed["constraints"].append(["users_user", "ck_x", "c", "CHECK ((cell_quota >= 0))"])
    changed["enums"].append(["mood", ["HAPPY"]])
    for row in changed["sequences"]:
        if row[0] == "user_id_seq":
            row[6] = 10  # cache size
    for row in changed["columns"]:
        if row[:2] == ["users_user", "username"]:
            row[7] = "'x'::character varying"
    differences = compare(baseline, changed)
    assert len(differences) == 5
    assert not any(d.blocking for d in differences)

    for row in changed["columns"]:
        if row[:2] == ["users_user", "email"]:
            row[5] = 100
    blocking = [d for d in compare(baseline, changed) if d.blocking]
    assert [d.message for d in blocking] == [
        "users_user.email is character varying(100), the baseline has character varying(255)"
    ]


def test_adopt_on_an_engine_takes_the_online_path_keeping_every_row(live: str) -> None:
    _insert_live_rows(live)
    before = _rows(live)
    engine = _engine(live)
    report = adopt(engine)
    engine.dispose()
    assert report.revision_before == BASELINE and not report.stamped
    assert report.revision_after == HEAD and report.remaining == []
    assert report.rows["cells_cellinfo"] == 3
    after = _rows(live)
    assert after["cells_cellinfo"] == before["cells_cellinfo"]
    assert after["users_user"] == before["users_user"]
    assert _state(live)[1] == (HEAD,)


def test_adopt_on_an_engine_refuses_a_drifted_database_changing_nothing(live: str) -> None:
    execute_sql(live, "ALTER TABLE users_user DROP COLUMN username")
    state = _state(live)
    engine = _engine(live)
    with pytest.raises(AdoptRefused):
        adopt(engine)
    engine.dispose()
    assert _state(live) == state
