"""casdb schema: readable names, server defaults, missing indexes, one default model.

Moves the live CAS schema (baseline ``cdfe110d1068``) to the schema of ``casdb.tables``:

* sequences, primary keys, unique constraints, foreign keys and indexes get the names of
  casdb's naming convention (legacy names date from before a table rename);
* foreign keys gain ON DELETE CASCADE, so deleting an ingest, model or user takes its rows;
* the legacy ``cells_featureinfo.id`` becomes nullable (kept: no row's data is lost);
* the server defaults of the spec;
* the indexes live databases lack, and a partial unique index that lets at most one model be
  the default. Where a live database has several defaults, the newest (highest id) stays.

Online-safe (casdb._online): on a live database every step is one short statement in an
autocommit block, under casdb's lock_timeout; the foreign keys are added NOT VALID and then
validated (a scan that blocks neither reads nor writes) before the legacy ones are dropped;
the indexes are built CONCURRENTLY. Every step is idempotent, so a run that stopped part way
is simply run again. Inside a caller's transaction the same steps run there, atomically.

Revision ID: 5c1a7e2d9b40
Revises: cdfe110d1068
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from casdb import _online

revision = "5c1a7e2d9b40"
down_revision = "cdfe110d1068"
branch_labels = None
depends_on = None

UTC_NOW = "timezone('utc', now())"

SEQUENCES = (  # legacy name, casdb name
    ("user_id_seq", "users_user_id_seq"),
    ("user_activity_id_seq", "users_useractivity_id_seq"),
    ("cas_model_id_seq", "ml_management_model_id_seq"),
    ("cas_matching_engine_index_id_seq", "ml_management_matchingengineindex_id_seq"),
    ("cells_cellfeature_cas_feature_index_seq", "cells_featureinfo_cas_feature_index_seq"),
)

CONSTRAINTS = (  # table, legacy name, casdb name
    ("users_user", "user_pkey", "pk_users_user"),
    ("users_user", "user_email_key", "uq_users_user_email"),
    ("users_useractivity", "user_activity_pkey", "pk_users_useractivity"),
    ("users_userkey", "users_userkey_pkey", "pk_users_userkey"),
    ("users_userkey", "users_userkey_key_locator_key", "uq_users_userkey_key_locator"),
    ("ml_management_model", "cas_model_pkey", "pk_ml_management_model"),
    ("ml_management_model", "cas_model_model_name_key", "uq_ml_management_model_model_name"),
    (
        "ml_management_matchingengineindex",
        "cas_matching_engine_index_pkey",
        "pk_ml_management_matchingengineindex",
    ),
    (
        "ml_management_matchingengineindex",
        "cas_matching_engine_index_index_name_key",
        "uq_ml_management_matchingengineindex_index_name",
    ),
    (
        "ml_management_matchingengineindex",
        "cas_matching_engine_index_deployed_index_id_key",
        "uq_ml_management_matchingengineindex_deployed_index_id",
    ),
    ("cells_ingestinfo", "cells_cellingestinfo_pkey", "pk_cells_ingestinfo"),
    ("cells_featureinfo", "cells_cellfeature_pkey", "pk_cells_featureinfo"),
    ("cells_cellinfo", "cells_cellinfo_pkey", "pk_cells_cellinfo"),
)

FOREIGN_KEYS = (  # table, column, referred table, referred column, legacy name, casdb name
    (
        "users_useractivity",
        "user_id",
        "users_user",
        "id",
        "user_activity_user_id_fkey",
        "fk_users_useractivity_user_id_users_user",
    ),
    (
        "users_userkey",
        "user_id",
        "users_user",
        "id",
        "users_userkey_user_id_fkey",
        "fk_users_userkey_user_id_users_user",
    ),
    (
        "ml_management_matchingengineindex",
        "model_id",
        "ml_management_model",
        "id",
        "cas_matching_engine_index_model_id_fkey",
        "fk_ml_management_matchingengineindex_model_id",
    ),
    (
        "cells_featureinfo",
        "cas_ingest_id",
        "cells_ingestinfo",
        "cas_ingest_id",
        "cells_cellfeature_cas_ingest_id_fkey",
        "fk_cells_featureinfo_cas_ingest_id_cells_ingestinfo",
    ),
    (
        "cells_cellinfo",
        "cas_ingest_id",
        "cells_ingestinfo",
        "cas_ingest_id",
        "cells_cellinfo_cas_ingest_id_fkey",
        "fk_cells_cellinfo_cas_ingest_id_cells_ingestinfo",
    ),
)

SERVER_DEFAULTS = (  # table, column, default (the baseline has none but quota_increased)
    ("users_user", "active", "true"),
    ("users_user", "requests_processed", "0"),
    ("users_user", "cells_processed", "0"),
    ("users_user", "is_admin", "false"),
    ("users_user", "cell_quota", "100000"),
    ("users_user", "created_at", UTC_NOW),
    ("users_user", "ask_for_feedback", "true"),
    ("users_user", "lifetime_cell_quota", "50000"),
    ("users_useractivity", "cell_count", "0"),
    ("users_useractivity", "finished_time", UTC_NOW),
    ("users_userkey", "created_date", UTC_NOW),
    ("users_userkey", "active", "true"),
    ("users_userkey", "expires", f"({UTC_NOW} + interval '180 days')"),
    ("ml_management_model", "admin_use_only", "true"),
    ("ml_management_model", "created_date", UTC_NOW),
    ("ml_management_model", "schema_name", "'refdata-gex-GRCh38-2020-A'"),
    ("ml_management_model", "is_default_model", "false"),
    ("ml_management_model", "bq_dataset_name", "'cas_50m_dataset'"),
    ("ml_management_matchingengineindex", "is_grpc", "true"),
    ("cells_ingestinfo", "uns_metadata", "'{}'::jsonb"),
    ("cells_ingestinfo", "ingest_timestamp", UTC_NOW),
    ("cells_featureinfo", "feature_is_filtered", "false"),
    ("cells_featureinfo", "var_metadata_extra", "'{}'::jsonb"),
    ("cells_cellinfo", "obs_metadata_extra", "'{}'::jsonb"),
    ("cells_cellinfo", "is_primary_data", "true"),
)

NEW_INDEXES = (  # name, table, columns
    (
        "ix_users_useractivity_user_id_finished_time",
        "users_useractivity",
        ["user_id", "finished_time"],
    ),
    ("ix_users_userkey_user_id", "users_userkey", ["user_id"]),
    (
        "ix_ml_management_matchingengineindex_model_id",
        "ml_management_matchingengineindex",
        ["model_id"],
    ),
    ("ix_cells_featureinfo_cas_ingest_id", "cells_featureinfo", ["cas_ingest_id"]),
)


NOT_NULL_CHECK = "ck_cells_featureinfo_id_not_null"  # downgrade only, dropped again


def _defaults_by_table() -> dict[str, list[tuple[str, str]]]:
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, default in SERVER_DEFAULTS:
        tables.setdefault(table, []).append((column, default))
    return tables


def upgrade() -> None:
    with _online.autocommit():
        for old, new in SEQUENCES:
            op.execute(f"ALTER SEQUENCE IF EXISTS {old} RENAME TO {new}")
        for table, old, new in CONSTRAINTS:
            _online.rename_constraint(table, old, new)
        for table, column, referred, referred_column, old, new in FOREIGN_KEYS:
            _online.add_foreign_key(
                table, new, column, referred, referred_column, ondelete="CASCADE"
            )
            _online.drop_constraint(table, old)
        op.execute(
            "ALTER INDEX IF EXISTS ix_user_activity_user_id RENAME TO ix_users_useractivity_user_id"
        )
        op.execute("ALTER TABLE cells_featureinfo ALTER COLUMN id DROP NOT NULL")
        for table, defaults in _defaults_by_table().items():
            op.execute(
                f"ALTER TABLE {table} "
                + ", ".join(f"ALTER COLUMN {column} SET DEFAULT {d}" for column, d in defaults)
            )
        for name, table, columns in NEW_INDEXES:
            _online.create_index(name, table, columns)
        # Live databases may hold several defaults; keep the newest so the unique index can
        # exist. A default set concurrently makes the build fail: run the upgrade again.
        op.execute(
            "UPDATE ml_management_model SET is_default_model = false "
            "WHERE is_default_model AND id <> "
            "(SELECT max(id) FROM ml_management_model WHERE is_default_model)"
        )
        _online.create_index(
            "uq_ml_management_model_is_default_model",
            "ml_management_model",
            ["is_default_model"],
            unique=True,
            where="is_default_model",
        )


def downgrade() -> None:
    with _online.autocommit():
        _online.drop_index("uq_ml_management_model_is_default_model")
        for name, _table, _columns in reversed(NEW_INDEXES):
            _online.drop_index(name)
        for table, defaults in reversed(_defaults_by_table().items()):
            op.execute(
                f"ALTER TABLE {table} "
                + ", ".join(f"ALTER COLUMN {column} DROP DEFAULT" for column, _ in defaults)
            )
        # Rows written since the upgrade may have no legacy id; give them one so NOT NULL holds.
        op.execute("UPDATE cells_featureinfo SET id = cas_feature_index WHERE id IS NULL")
        _online.set_not_null("cells_featureinfo", "id", NOT_NULL_CHECK)
        op.execute(
            "ALTER INDEX IF EXISTS ix_users_useractivity_user_id RENAME TO ix_user_activity_user_id"
        )
        for table, column, referred, referred_column, old, new in reversed(FOREIGN_KEYS):
            _online.add_foreign_key(table, old, column, referred, referred_column)
            _online.drop_constraint(table, new)
        for table, old, new in reversed(CONSTRAINTS):
            _online.rename_constraint(table, new, old)
        for old, new in reversed(SEQUENCES):
            op.execute(f"ALTER SEQUENCE IF EXISTS {new} RENAME TO {old}")
