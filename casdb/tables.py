"""Every table of the CAS database as SQLAlchemy Core metadata: the schema at migration head.

Table and column names are fixed (live databases hold data under them). Constraint and index
names follow ``NAMING_CONVENTION``; the baseline migration still carries the legacy names of
live databases and the next revision renames them to these.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from casdb._checks import check_time

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Columns hold UTC wall-clock time without a zone, as live data does.
UTC_NOW = text("timezone('utc', now())")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """``timestamp without time zone`` holding UTC wall-clock time; aware UTC in Python.

    SQLAlchemy's recipe for UTC timestamps: a bound datetime must be timezone-aware (a naive
    one is InvalidInput, from casdb._checks.check_time) and is stored as its UTC wall-clock
    time; a value read back is that time with tzinfo=UTC. The column's DDL stays TIMESTAMP.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return check_time("a timestamp", value).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        # ``column + timedelta`` is an interval, not a timestamp to convert
        if isinstance(value, dt.datetime):
            return self
        return self.impl_instance.coerce_compared_value(op, value)


class Secret(str):
    """A str that hides itself in ``repr``: what a key hash is in Python, so that SQLAlchemy's
    logging of rows and parameters (and any repr of a record) never shows it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<secret>'"


class SecretText(TypeDecorator[str]):
    """TEXT whose values are :class:`Secret` both ways: bound (as logged) and read back."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else Secret(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else Secret(value)


class UserActivityEvent(enum.Enum):
    """What happened to a request; stored as the PostgreSQL enum ``useractivityevent``."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STARTED = "STARTED"


# ``info["noun"]``: what a row is called in messages ("no user with this id"); ``info["hint"]``,
# what to do about a missing one.
users_user = Table(
    "users_user",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(255), nullable=False, unique=True),
    Column("username", String(255), nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("requests_processed", Integer, nullable=False, server_default=text("0")),
    Column("cells_processed", Integer, nullable=False, server_default=text("0")),
    Column("is_admin", Boolean, nullable=False, server_default=text("false")),
    Column("cell_quota", Integer, nullable=False, server_default=text("100000")),
    Column("created_at", UTCDateTime, nullable=False, server_default=UTC_NOW),
    Column("ask_for_feedback", Boolean, nullable=False, server_default=text("true")),
    Column("lifetime_cell_quota", Integer, nullable=True, server_default=text("50000")),
    Column("quota_increased", Boolean, nullable=False, server_default=text("false")),
    info={"noun": "user"},
)

users_useractivity = Table(
    "users_useractivity",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "user_id",
        Integer,
        ForeignKey("users_user.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column("cell_count", Integer, nullable=False, server_default=text("0")),
    Column("model_name", String(255), nullable=False),
    Column("method", String(255), nullable=True),
    Column("finished_time", UTCDateTime, nullable=True, server_default=UTC_NOW),
    Column(
        "event",
        Enum(UserActivityEvent, name="useractivityevent"),
        nullable=False,
        index=True,
    ),
    Column("request_id", String(255), nullable=True),
    info={"noun": "activity"},
)
# The weekly quota window scans one user's rows by time.
Index(
    "ix_users_useractivity_user_id_finished_time",
    users_useractivity.c.user_id,
    users_useractivity.c.finished_time,
)

users_userkey = Table(
    "users_userkey",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key_locator", UUID(as_uuid=True), nullable=False, unique=True),
    Column(
        "user_id",
        Integer,
        ForeignKey("users_user.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_date", UTCDateTime, nullable=False, server_default=UTC_NOW),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column(
        "expires",
        UTCDateTime,
        nullable=False,
        server_default=text("(timezone('utc', now()) + interval '180 days')"),
    ),
    Column("key_hash", SecretText, nullable=False),
    info={"noun": "key"},
)

ml_management_model = Table(
    "ml_management_model",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_file_path", String(255), nullable=False),
    Column("embedding_dimension", Integer, nullable=False),
    Column("admin_use_only", Boolean, nullable=False, server_default=text("true")),
    Column("created_date", UTCDateTime, nullable=True, server_default=UTC_NOW),
    Column(
        "schema_name",
        String(255),
        nullable=False,
        server_default=text("'refdata-gex-GRCh38-2020-A'"),
    ),
    Column("is_default_model", Boolean, nullable=False, server_default=text("false")),
    Column("model_name", String(255), nullable=False, unique=True),
    Column(
        "bq_dataset_name", String(255), nullable=False, server_default=text("'cas_50m_dataset'")
    ),
    Column("description", String(511), nullable=True),
    info={"noun": "model"},
)
# The database itself guarantees at most one default model.
Index(
    "uq_ml_management_model_is_default_model",
    ml_management_model.c.is_default_model,
    unique=True,
    postgresql_where=ml_management_model.c.is_default_model,
)

ml_management_matchingengineindex = Table(
    "ml_management_matchingengineindex",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("embedding_dimension", Integer, nullable=False),
    Column(
        "model_id",
        Integer,
        ForeignKey(
            "ml_management_model.id",
            ondelete="CASCADE",
            # the conventional name would pass PostgreSQL's 63-character limit
            name="fk_ml_management_matchingengineindex_model_id",
        ),
        nullable=False,
        index=True,
    ),
    Column("endpoint_id", String(255), nullable=False),
    Column("deployed_index_id", String(255), nullable=True, unique=True),
    Column("index_name", String(255), nullable=False, unique=True),
    Column("num_neighbors", Integer, nullable=False),
    Column("is_grpc", Boolean, nullable=False, server_default=text("true")),
    Column("api_endpoint", String(255), nullable=True),
    Column("description", String(511), nullable=True),
    info={"noun": "matching-engine index"},
)

cells_ingestinfo = Table(
    "cells_ingestinfo",
    metadata,
    Column("cas_ingest_id", String(255), primary_key=True),
    Column("dataset_id", String(255), nullable=False),
    Column("uns_metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("ingest_timestamp", UTCDateTime, nullable=True, server_default=UTC_NOW),
    Column("dataset_version_id", String(255), nullable=True),
    info={"noun": "ingest", "hint": "create_ingest first"},
)


def _ingest_of_row() -> Column[str]:
    """The ingest a feature or cell belongs to: deleting the ingest deletes its rows."""
    return Column(
        "cas_ingest_id",
        String(255),
        ForeignKey("cells_ingestinfo.cas_ingest_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


cells_featureinfo = Table(
    "cells_featureinfo",
    metadata,
    # Legacy column of live databases: unused, kept (nullable) so that no row's data is lost.
    Column("id", Integer, nullable=True),
    Column("cas_feature_index", Integer, primary_key=True),
    Column("original_feature_id", String(255), nullable=False),
    Column("feature_name", String(255), nullable=False),
    Column("feature_biotype", String(255), nullable=True),
    Column("feature_is_filtered", Boolean, nullable=True, server_default=text("false")),
    Column("feature_reference", String(255), nullable=True),
    Column("var_metadata_extra", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _ingest_of_row(),
    info={"noun": "feature"},
)


def _indexed_varchar(name: str, *, nullable: bool = True) -> Column[str]:
    return Column(name, String(255), nullable=nullable, index=True)


def _varchar(name: str) -> Column[str]:
    return Column(name, String(255), nullable=True)


cells_cellinfo = Table(
    "cells_cellinfo",
    metadata,
    Column("cas_cell_index", Integer, primary_key=True),
    _ingest_of_row(),
    Column("original_cell_id", String(255), nullable=True),
    Column("obs_metadata_extra", JSONB, nullable=True, server_default=text("'{}'::jsonb")),
    Column("is_primary_data", Boolean, nullable=True, server_default=text("true"), index=True),
    _varchar("donor_id"),
    _indexed_varchar("cell_type", nullable=False),
    _indexed_varchar("assay"),
    _indexed_varchar("development_stage"),
    _indexed_varchar("tissue"),
    _indexed_varchar("disease"),
    _indexed_varchar("organism"),
    _indexed_varchar("self_reported_ethnicity"),
    _indexed_varchar("sex"),
    _indexed_varchar("suspension_type"),
    Column("total_mrna_umis", Integer, nullable=True, index=True),
    _indexed_varchar("cell_type_ontology_term_id"),
    _varchar("assay_ontology_term_id"),
    _varchar("development_stage_ontology_term_id"),
    _varchar("tissue_ontology_term_id"),
    _varchar("disease_ontology_term_id"),
    _varchar("organism_ontology_term_id"),
    _varchar("self_reported_ethnicity_ontology_term_id"),
    _varchar("sex_ontology_term_id"),
    info={"noun": "cell"},
)


def _unique_fields() -> dict[str, str]:
    """Name of each single-column unique constraint, key or unique index -> its column."""
    fields: dict[str, str] = {}
    for table in metadata.tables.values():
        for constraint in table.constraints:
            if isinstance(constraint, UniqueConstraint | PrimaryKeyConstraint):
                columns = list(constraint.columns)
                if len(columns) == 1 and isinstance(constraint.name, str):
                    fields[constraint.name] = columns[0].name
        for index in table.indexes:
            # a partial index (the one default model) guards a rule, not a value
            if index.unique and len(index.columns) == 1 and index.name is not None:
                if index.dialect_options["postgresql"]["where"] is None:
                    fields[str(index.name)] = next(iter(index.columns)).name
    return fields


def _foreign_key_messages() -> dict[str, str]:
    """Name of each foreign key -> "no <referred row> with this <referred column>"."""
    messages: dict[str, str] = {}
    for table in metadata.tables.values():
        for constraint in table.constraints:
            if isinstance(constraint, ForeignKeyConstraint) and isinstance(constraint.name, str):
                referred = constraint.elements[0].column
                noun = referred.table.info["noun"]
                hint = referred.table.info.get("hint")
                messages[constraint.name] = f"no {noun} with this {referred.name}" + (
                    f" ({hint})" if hint else ""
                )
    return messages


UNIQUE_FIELDS: Final = _unique_fields()
"""Unique constraint (or index) name -> the field it guards: AlreadyExists(field)."""
FOREIGN_KEY_MESSAGES: Final = _foreign_key_messages()
"""Foreign key name -> the NotFound message of a violation."""
