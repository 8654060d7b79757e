"""Baseline: the schema of a live CAS database, exactly as the original history left it.

This reproduces the original CAS alembic head (``cdfe110d1068``) object for object, legacy
names included, so that a live database (which records ``cdfe110d1068``) continues from here
with a plain upgrade and a fresh database walks the same path. The statements are those of
``pg_dump --schema-only`` of such a database (shared/fixtures/original_cas_schema.sql).

Revision ID: cdfe110d1068
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from casdb import migrate

revision = "cdfe110d1068"
down_revision = None
branch_labels = None
depends_on = None

TABLES = (
    "users_useractivity",
    "users_userkey",
    "users_user",
    "ml_management_matchingengineindex",
    "ml_management_model",
    "cells_cellinfo",
    "cells_featureinfo",
    "cells_ingestinfo",
)

STATEMENTS = (
    """
    CREATE TYPE public.useractivityevent AS ENUM (
        'SUCCEEDED',
        'FAILED',
        'STARTED'
    )
    """,
    """
    CREATE TABLE public.ml_management_matchingengineindex (
        id integer NOT NULL,
        embedding_dimension integer NOT NULL,
        model_id integer NOT NULL,
        endpoint_id character varying(255) NOT NULL,
        deployed_index_id character varying(255),
        index_name character varying(255) NOT NULL,
        num_neighbors integer NOT NULL,
        is_grpc boolean NOT NULL,
        api_endpoint character varying(255),
        description character varying(511)
    )
    """,
    """
    CREATE SEQUENCE public.cas_matching_engine_index_id_seq
        AS integer
        START WITH 1
        INCREMENT BY 1
        NO MINVALUE
        NO MAXVALUE
        CACHE 1
    """,
    """
    ALTER SEQUENCE public.cas_matching_engine_index_id_seq OWNED BY public.ml_management_matchingengineindex.id
    """,
    """
    CREATE TABLE public.ml_management_model (
        id integer NOT NULL,
        model_file_path character varying(255) NOT NULL,
        embedding_dimension integer NOT NULL,
        admin_use_only boolean NOT NULL,
        created_date timestamp without time zone,
        schema_name character varying(255) NOT NULL,
        is_default_model boolean NOT NULL,
        model_name character varying(255) NOT NULL,
        bq_dataset_name character varying(255) NOT NULL,
        description character varying(511)
    )
    """,
    """
    CREATE SEQUENCE public.cas_model_id_seq
        AS integer
        START WITH 1
        INCREMENT BY 1
        NO MINVALUE
        NO MAXVALUE
        CACHE 1
    """,
    """
    ALTER SEQUENCE public.cas_model_id_seq OWNED BY public.ml_management_model.id
    """,
    """
    CREATE TABLE public.cells_featureinfo (
        id integer NOT NULL,
        cas_feature_index integer NOT NULL,
        original_feature_id character varying(255) NOT NULL,
        feature_name character varying(255) NOT NULL,
        feature_biotype character varying(255),
        feature_is_filtered boolean,
        feature_reference character varying(255),
        var_metadata_extra jsonb NOT NULL,
        cas_ingest_id character varying(255) NOT NULL
    )
    """,
    """
    CREATE SEQUENCE public.cells_cellfeature_cas_feature_index_seq
        AS integer
        START WITH 1
        INCREMENT BY 1
        NO MINVALUE
        NO MAXVALUE
        CACHE 1
    """,
    """
    ALTER SEQUENCE public.cells_cellfeature_cas_feature_index_seq OWNED BY public.cells_featureinfo.cas_feature_index
    """,
    """
    CREATE TABLE public.cells_cellinfo (
        cas_cell_index integer NOT NULL,
        cas_ingest_id character varying(255) NOT NULL,
        original_cell_id character varying(255),
        obs_metadata_extra jsonb,
        is_primary_data boolean,
        donor_id character varying(255),
        cell_type character varying(255) NOT NULL,
        assay character varying(255),
        development_stage character varying(255),
        tissue character varying(255),
        disease character varying(255),
        organism character varying(255),
        self_reported_ethnicity character varying(255),
        sex character varying(255),
        suspension_type character varying(255),
        total_mrna_umis integer,
        cell_type_ontology_term_id character varying(255),
        assay_ontology_term_id character varying(255),
        development_stage_ontology_term_id character varying(255),
        tissue_ontology_term_id character varying(255),
        disease_ontology_term_id character varying(255),
        organism_ontology_term_id character varying(255),
        self_reported_ethnicity_ontology_term_id character varying(255),
        sex_ontology_term_id character varying(255)
    )
    """,
    """
    CREATE SEQUENCE public.cells_cellinfo_cas_cell_index_seq
        AS integer
        START WITH 1
        INCREMENT BY 1
        NO MINVALUE
        NO MAXVALUE
        CACHE 1
    """,
    """
    ALTER SEQUENCE public.cells_cellinfo_cas_cell_index_seq OWNED BY public.cells_cellinfo.cas_cell_index
    """,
    """
    CREATE TABLE public.cells_ingestinfo (
        cas_ingest_id character varying(255) NOT NULL,
        dataset_id character varying(255) NOT NULL,
        uns_metadata jsonb NOT NULL,
        ingest_timestamp timestamp without time zone,
        dataset_version_id character varying(255)
    )
    """,
    """
    CREATE TABLE public.users_useractivity (
        id integer NOT NULL,
        user_id integer,
        cell_count integer NOT NULL,
        model_name character varying(255) NOT NULL,
        method character varying(255),
        finished_time timestamp without time zone,
        event public.useractivityevent NOT NULL,
        request_id character varying(255)
    )
    """,
    """
    CREATE SEQUENCE public.user_activity_id_seq
        AS integer
        START WITH 1
        INCREMENT BY 1
        NO MINVALUE
        NO MAXVALUE
        CACHE 1
    """,
    """
    ALTER SEQUENCE public.user_activity_id_seq OWNED BY public.users_useractivity.id
    """,
    """
    CREATE TABLE public.users_user (
        id integer NOT NULL,
        email character varying(255) NOT NULL,
        username character varying(255) NOT NULL,
        active boolean NOT NULL,
        requests_processed integer NOT NULL,
        cells_processed integer NOT NULL,
        is_admin boolean NOT NULL,
        cell_quota integer NOT NULL,
        created_at timestamp without time zone NOT NULL,
        ask_for_feedback boolean NOT NULL,
        lifetime_cell_quota integer,
        quota_increased boolean DEFAULT false NOT NULL
    )
    """,
    """
    CREATE SEQUENCE public.user_id_seq
        AS integer
        START WITH 1
        INCREMENT BY 1
        NO MINVALUE
        NO MAXVALUE
        CACHE 1
    """,
    """
    ALTER SEQUENCE public.user_id_seq OWNED BY public.users_user.id
    """,
    """
    CREATE TABLE public.users_userkey (
        id integer NOT NULL,
        key_locator uuid NOT NULL,
        user_id integer NOT NULL,
        created_date timestamp without time zone NOT NULL,
        active boolean NOT NULL,
        expires timestamp without time zone NOT NULL,
        key_hash text NOT NULL
    )
    """,
    """
    CREATE SEQUENCE public.users_userkey_id_seq
        AS integer
        START WITH 1
        INCREMENT BY 1
        NO MINVALUE
        NO MAXVALUE
        CACHE 1
    """,
    """
    ALTER SEQUENCE public.users_userkey_id_seq OWNED BY public.users_userkey.id
    """,
    """
    ALTER TABLE ONLY public.cells_cellinfo ALTER COLUMN cas_cell_index SET DEFAULT nextval('public.cells_cellinfo_cas_cell_index_seq'::regclass)
    """,
    """
    ALTER TABLE ONLY public.cells_featureinfo ALTER COLUMN cas_feature_index SET DEFAULT nextval('public.cells_cellfeature_cas_feature_index_seq'::regclass)
    """,
    """
    ALTER TABLE ONLY public.ml_management_matchingengineindex ALTER COLUMN id SET DEFAULT nextval('public.cas_matching_engine_index_id_seq'::regclass)
    """,
    """
    ALTER TABLE ONLY public.ml_management_model ALTER COLUMN id SET DEFAULT nextval('public.cas_model_id_seq'::regclass)
    """,
    """
    ALTER TABLE ONLY public.users_user ALTER COLUMN id SET DEFAULT nextval('public.user_id_seq'::regclass)
    """,
    """
    ALTER TABLE ONLY public.users_useractivity ALTER COLUMN id SET DEFAULT nextval('public.user_activity_id_seq'::regclass)
    """,
    """
    ALTER TABLE ONLY public.users_userkey ALTER COLUMN id SET DEFAULT nextval('public.users_userkey_id_seq'::regclass)
    """,
    """
    ALTER TABLE ONLY public.ml_management_matchingengineindex
        ADD CONSTRAINT cas_matching_engine_index_deployed_index_id_key UNIQUE (deployed_index_id)
    """,
    """
    ALTER TABLE ONLY public.ml_management_matchingengineindex
        ADD CONSTRAINT cas_matching_engine_index_index_name_key UNIQUE (index_name)
    """,
    """
    ALTER TABLE ONLY public.ml_management_matchingengineindex
        ADD CONSTRAINT cas_matching_engine_index_pkey PRIMARY KEY (id)
    """,
    """
    ALTER TABLE ONLY public.ml_management_model
        ADD CONSTRAINT cas_model_model_name_key UNIQUE (model_name)
    """,
    """
    ALTER TABLE ONLY public.ml_management_model
        ADD CONSTRAINT cas_model_pkey PRIMARY KEY (id)
    """,
    """
    ALTER TABLE ONLY public.cells_featureinfo
        ADD CONSTRAINT cells_cellfeature_pkey PRIMARY KEY (cas_feature_index)
    """,
    """
    ALTER TABLE ONLY public.cells_cellinfo
        ADD CONSTRAINT cells_cellinfo_pkey PRIMARY KEY (cas_cell_index)
    """,
    """
    ALTER TABLE ONLY public.cells_ingestinfo
        ADD CONSTRAINT cells_cellingestinfo_pkey PRIMARY KEY (cas_ingest_id)
    """,
    """
    ALTER TABLE ONLY public.users_useractivity
        ADD CONSTRAINT user_activity_pkey PRIMARY KEY (id)
    """,
    """
    ALTER TABLE ONLY public.users_user
        ADD CONSTRAINT user_email_key UNIQUE (email)
    """,
    """
    ALTER TABLE ONLY public.users_user
        ADD CONSTRAINT user_pkey PRIMARY KEY (id)
    """,
    """
    ALTER TABLE ONLY public.users_userkey
        ADD CONSTRAINT users_userkey_key_locator_key UNIQUE (key_locator)
    """,
    """
    ALTER TABLE ONLY public.users_userkey
        ADD CONSTRAINT users_userkey_pkey PRIMARY KEY (id)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_assay ON public.cells_cellinfo USING btree (assay)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_cas_ingest_id ON public.cells_cellinfo USING btree (cas_ingest_id)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_cell_type ON public.cells_cellinfo USING btree (cell_type)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_cell_type_ontology_term_id ON public.cells_cellinfo USING btree (cell_type_ontology_term_id)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_development_stage ON public.cells_cellinfo USING btree (development_stage)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_disease ON public.cells_cellinfo USING btree (disease)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_is_primary_data ON public.cells_cellinfo USING btree (is_primary_data)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_organism ON public.cells_cellinfo USING btree (organism)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_self_reported_ethnicity ON public.cells_cellinfo USING btree (self_reported_ethnicity)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_sex ON public.cells_cellinfo USING btree (sex)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_suspension_type ON public.cells_cellinfo USING btree (suspension_type)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_tissue ON public.cells_cellinfo USING btree (tissue)
    """,
    """
    CREATE INDEX ix_cells_cellinfo_total_mrna_umis ON public.cells_cellinfo USING btree (total_mrna_umis)
    """,
    """
    CREATE INDEX ix_user_activity_user_id ON public.users_useractivity USING btree (user_id)
    """,
    """
    CREATE INDEX ix_users_useractivity_event ON public.users_useractivity USING btree (event)
    """,
    """
    ALTER TABLE ONLY public.ml_management_matchingengineindex
        ADD CONSTRAINT cas_matching_engine_index_model_id_fkey FOREIGN KEY (model_id) REFERENCES public.ml_management_model(id)
    """,
    """
    ALTER TABLE ONLY public.cells_featureinfo
        ADD CONSTRAINT cells_cellfeature_cas_ingest_id_fkey FOREIGN KEY (cas_ingest_id) REFERENCES public.cells_ingestinfo(cas_ingest_id)
    """,
    """
    ALTER TABLE ONLY public.cells_cellinfo
        ADD CONSTRAINT cells_cellinfo_cas_ingest_id_fkey FOREIGN KEY (cas_ingest_id) REFERENCES public.cells_ingestinfo(cas_ingest_id)
    """,
    """
    ALTER TABLE ONLY public.users_useractivity
        ADD CONSTRAINT user_activity_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users_user(id)
    """,
    """
    ALTER TABLE ONLY public.users_userkey
        ADD CONSTRAINT users_userkey_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users_user(id)
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
    # The original CAS services look for their head here (casdb's own revision is recorded in
    # casdb.alembic_version): their `alembic upgrade head` finds nothing to do.
    for statement in migrate.RECORD_ORIGINAL_HEAD:
        op.execute(statement)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE public.{table}")
    op.execute("DROP TYPE public.useractivityevent")
    op.execute("DROP TABLE IF EXISTS public.alembic_version")
