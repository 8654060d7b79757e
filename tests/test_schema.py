"""The schema at head, read back from PostgreSQL's catalogs, against the spec (not tables.py)."""

from __future__ import annotations

from sqlalchemy import Connection, text

V = "character varying"
NOW = "timezone('utc'::text, now())"

# table -> column -> (type, max length, nullable, default) as the spec states them.
SPEC: dict[str, dict[str, tuple[str, int | None, bool, str | None]]] = {
    "users_user": {
        "id": ("integer", None, False, "nextval('users_user_id_seq'::regclass)"),
        "email": (V, 255, False, None),
        "username": (V, 255, False, None),
        "active": ("boolean", None, False, "true"),
        "requests_processed": ("integer", None, False, "0"),
        "cells_processed": ("integer", None, False, "0"),
        "is_admin": ("boolean", None, False, "false"),
        "cell_quota": ("integer", None, False, "100000"),
        "lifetime_cell_quota": ("integer", None, True, "50000"),
        "quota_increased": ("boolean", None, False, "false"),
        "created_at": ("timestamp without time zone", None, False, NOW),
        "ask_for_feedback": ("boolean", None, False, "true"),
    },
    "users_useractivity": {
        "id": ("integer", None, False, "nextval('users_useractivity_id_seq'::regclass)"),
        "user_id": ("integer", None, True, None),
        "request_id": (V, 255, True, None),
        "cell_count": ("integer", None, False, "0"),
        "model_name": (V, 255, False, None),
        "method": (V, 255, True, None),
        "finished_time": ("timestamp without time zone", None, True, NOW),
        "event": ("USER-DEFINED", None, False, None),
    },
    "users_userkey": {
        "id": ("integer", None, False, "nextval('users_userkey_id_seq'::regclass)"),
        "key_locator": ("uuid", None, False, None),
        "user_id": ("integer", None, False, None),
        "created_date": ("timestamp without time zone", None, False, NOW),
        "active": ("boolean", None, False, "true"),
        "expires": ("timestamp without time zone", None, False, f"({NOW} + '180 days'::interval)"),
        "key_hash": ("text", None, False, None),
    },
    "ml_management_model": {
        "id": ("integer", None, False, "nextval('ml_management_model_id_seq'::regclass)"),
        "model_name": (V, 255, False, None),
        "model_file_path": (V, 255, False, None),
        "description": (V, 511, True, None),
        "embedding_dimension": ("integer", None, False, None),
        "admin_use_only": ("boolean", None, False, "true"),
        "schema_name": (V, 255, False, "'refdata-gex-GRCh38-2020-A'::character varying"),
        "bq_dataset_name": (V, 255, False, "'cas_50m_dataset'::character varying"),
        "is_default_model": ("boolean", None, False, "false"),
        "created_date": ("timestamp without time zone", None, True, NOW),
    },
    "ml_management_matchingengineindex": {
        "id": (
            "integer",
            None,
            False,
            "nextval('ml_management_matchingengineindex_id_seq'::regclass)",
        ),
        "index_name": (V, 255, False, None),
        "description": (V, 511, True, None),
        "embedding_dimension": ("integer", None, False, None),
        "endpoint_id": (V, 255, False, None),
        "deployed_index_id": (V, 255, True, None),
        "num_neighbors": ("integer", None, False, None),
        "model_id": ("integer", None, False, None),
        "is_grpc": ("boolean", None, False, "true"),
        "api_endpoint": (V, 255, True, None),
    },
    "cells_ingestinfo": {
        "cas_ingest_id": (V, 255, False, None),
        "dataset_id": (V, 255, False, None),
        "dataset_version_id": (V, 255, True, None),
        "uns_metadata": ("jsonb", None, False, "'{}'::jsonb"),
        "ingest_timestamp": ("timestamp without time zone", None, True, NOW),
    },
    "cells_featureinfo": {
        "id": ("integer", None, True, None),
        "cas_feature_index": (
            "integer",
            None,
            False,
            "nextval('cells_featureinfo_cas_feature_index_seq'::regclass)",
        ),
        "original_feature_id": (V, 255, False, None),
        "feature_name": (V, 255, False, None),
        "feature_biotype": (V, 255, True, None),
        "feature_is_filtered": ("boolean", None, True, "false"),
        "feature_reference": (V, 255, True, None),
        "var_metadata_extra": ("jsonb", None, False, "'{}'::jsonb"),
        "cas_ingest_id": (V, 255, False, None),
    },
    "cells_cellinfo": {
        "cas_cell_index": (
            "integer",
            None,
            False,
            "nextval('cells_cellinfo_cas_cell_index_seq'::regclass)",
        ),
        "cas_ingest_id": (V, 255, False, None),
        "original_cell_id": (V, 255, True, None),
        "obs_metadata_extra": ("jsonb", None, True, "'{}'::jsonb"),
        "is_primary_data": ("boolean", None, True, "true"),
        "donor_id": (V, 255, True, None),
        "cell_type": (V, 255, False, None),
        "total_mrna_umis": ("integer", None, True, None),
        "suspension_type": (V, 255, True, None),
        **{
            column: (V, 255, True, None)
            for name in (
                "assay",
                "development_stage",
                "tissue",
                "disease",
                "organism",
                "self_reported_ethnicity",
                "sex",
            )
            for column in (name, f"{name}_ontology_term_id")
        },
        "cell_type_ontology_term_id": (V, 255, True, None),
    },
}

INDEXED_CELL_COLUMNS = [
    "cas_ingest_id",
    "is_primary_data",
    "cell_type",
    "assay",
    "development_stage",
    "tissue",
    "disease",
    "organism",
    "self_reported_ethnicity",
    "sex",
    "suspension_type",
    "total_mrna_umis",
    "cell_type_ontology_term_id",
]

# (table, columns) that must lead some index.
INDEXED = [("cells_cellinfo", (c,)) for c in INDEXED_CELL_COLUMNS] + [
    ("users_useractivity", ("user_id",)),
    ("users_useractivity", ("event",)),
    ("users_useractivity", ("user_id", "finished_time")),
    ("users_userkey", ("user_id",)),
    ("ml_management_matchingengineindex", ("model_id",)),
    ("cells_featureinfo", ("cas_ingest_id",)),
]

UNIQUE = {
    ("users_user", "email"),
    ("users_userkey", "key_locator"),
    ("ml_management_model", "model_name"),
    ("ml_management_matchingengineindex", "index_name"),
    ("ml_management_matchingengineindex", "deployed_index_id"),
}

FOREIGN_KEYS = {
    ("users_useractivity", "user_id", "users_user", "id"),
    ("users_userkey", "user_id", "users_user", "id"),
    ("ml_management_matchingengineindex", "model_id", "ml_management_model", "id"),
    ("cells_featureinfo", "cas_ingest_id", "cells_ingestinfo", "cas_ingest_id"),
    ("cells_cellinfo", "cas_ingest_id", "cells_ingestinfo", "cas_ingest_id"),
}


def test_columns_match_the_spec(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, "
            "column_default FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name <> 'alembic_version'"
        )
    ).all()
    actual: dict[str, dict[str, tuple[str, int | None, bool, str | None]]] = {}
    for table, column, type_, length, nullable, default in rows:
        actual.setdefault(table, {})[column] = (type_, length, nullable == "YES", default)
    assert actual == SPEC


def test_primary_keys(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu USING "
            "(constraint_schema, constraint_name) "
            "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = 'public' "
            "AND tc.table_name <> 'alembic_version'"
        )
    ).all()
    assert dict(rows) == {
        "users_user": "id",
        "users_useractivity": "id",
        "users_userkey": "id",
        "ml_management_model": "id",
        "ml_management_matchingengineindex": "id",
        "cells_ingestinfo": "cas_ingest_id",
        "cells_featureinfo": "cas_feature_index",
        "cells_cellinfo": "cas_cell_index",
    }


def test_unique_constraints(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu USING "
            "(constraint_schema, constraint_name) "
            "WHERE tc.constraint_type = 'UNIQUE' AND tc.table_schema = 'public'"
        )
    ).all()
    assert set(map(tuple, rows)) == UNIQUE


def test_foreign_keys_cascade(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT src.relname, a.attname, dst.relname, b.attname, con.confdeltype "
            "FROM pg_constraint con JOIN pg_class src ON src.oid = con.conrelid "
            "JOIN pg_class dst ON dst.oid = con.confrelid "
            "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1] "
            "JOIN pg_attribute b ON b.attrelid = con.confrelid AND b.attnum = con.confkey[1] "
            "WHERE con.contype = 'f' AND src.relnamespace = 'public'::regnamespace"
        )
    ).all()
    assert {row[:4] for row in rows} == FOREIGN_KEYS
    assert {row[4] for row in rows} == {"c"}


def test_indexes(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT t.relname, array_agg(a.attname ORDER BY k.ord) "
            "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
            "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
            "WHERE t.relnamespace = 'public'::regnamespace GROUP BY i.indexrelid, t.relname"
        )
    ).all()
    present = {(table, tuple(columns)) for table, columns in rows}
    for table, columns in INDEXED:
        assert (table, columns) in present, (table, columns)
    assert sum(1 for table, _ in present if table == "cells_cellinfo") == 14  # 13 + primary key


def test_enum_and_single_default_model_index(conn: Connection) -> None:
    labels = conn.execute(
        text(
            "SELECT array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum "
            "WHERE enumtypid = 'useractivityevent'::regtype"
        )
    ).scalar_one()
    assert labels == ["SUCCEEDED", "FAILED", "STARTED"]
    definition = conn.execute(
        text(
            "SELECT indexdef FROM pg_indexes "
            "WHERE indexname = 'uq_ml_management_model_is_default_model'"
        )
    ).scalar_one()
    assert definition.startswith("CREATE UNIQUE INDEX")
    assert "WHERE is_default_model" in definition
