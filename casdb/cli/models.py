"""``casdb models``: the registry of ML models and their matching-engine indexes."""

from __future__ import annotations

import click

from casdb.cli._app import State
from casdb.cli._shared import (
    command_options,
    connection,
    emit,
    emit_json,
    emit_table,
    fields_text,
    out,
    table,
    transaction,
)
from casdb.queries import ml_models


def _show(model: ml_models.MLModel, as_json: bool) -> None:
    if as_json:
        emit_json(model)
        return
    fields_text(model, skip=("indexes",))
    if model.indexes:
        out("")
        table(
            ["id", "index", "dim", "neighbors", "endpoint", "deployed index", "grpc"],
            [
                (
                    i.id,
                    i.index_name,
                    i.embedding_dimension,
                    i.num_neighbors,
                    i.endpoint_id,
                    i.deployed_index_id,
                    i.is_grpc,
                )
                for i in model.indexes
            ],
        )


@click.group(name="models")
def models_group() -> None:
    """ML models: list, show, create, set-default, add-index."""


@models_group.command(name="list")
@click.option("--public-only", is_flag=True, help="leave out the admin-only models")
@command_options
def list_(state: State, public_only: bool, as_json: bool) -> None:
    """List the models with their indexes, ordered by id."""
    with connection(state) as (_, conn):
        found = ml_models.list_models(conn, include_admin_only=not public_only)
    emit_table(
        found,
        as_json,
        ["id", "model", "dim", "admin only", "default", "file", "indexes"],
        [
            (
                m.id,
                m.model_name,
                m.embedding_dimension,
                m.admin_use_only,
                m.is_default_model,
                m.model_file_path,
                ", ".join(i.index_name for i in m.indexes),
            )
            for m in found
        ],
    )


@models_group.command()
@click.argument("name", metavar="MODEL_NAME")
@command_options
def show(state: State, name: str, as_json: bool) -> None:
    """Show a model and its matching-engine indexes."""
    with connection(state) as (_, conn):
        _show(ml_models.get_model_by_name(conn, model_name=name), as_json)


@models_group.command(
    epilog="\b\nexample:\n  casdb models create cas-gex-v4 --file-path "
    "gs://cas-models/v4.pt --dimension 512 --public --default"
)
@click.argument("name", metavar="MODEL_NAME")
@click.option("--file-path", required=True, help="where the model file is (model_file_path)")
@click.option("--dimension", type=click.IntRange(min=1), required=True, help="embedding dimension")
@click.option("--description", default=None)
@click.option("--public", is_flag=True, help="usable by everyone (default: admin use only)")
@click.option("--schema-name", default=ml_models.DEFAULT_SCHEMA_NAME, show_default=True)
@click.option("--bq-dataset", default=ml_models.DEFAULT_BQ_DATASET_NAME, show_default=True)
@click.option("--default", "is_default", is_flag=True, help="make it the default model")
@command_options
def create(
    state: State,
    name: str,
    file_path: str,
    dimension: int,
    description: str | None,
    public: bool,
    schema_name: str,
    bq_dataset: str,
    is_default: bool,
    as_json: bool,
) -> None:
    """Register a model."""
    with transaction(state) as (_, conn):
        model = ml_models.create_model(
            conn,
            model_name=name,
            model_file_path=file_path,
            embedding_dimension=dimension,
            description=description,
            admin_use_only=not public,
            schema_name=schema_name,
            bq_dataset_name=bq_dataset,
            is_default_model=is_default,
        )
    _show(model, as_json)


@models_group.command(name="set-default")
@click.argument("name", metavar="MODEL_NAME")
@command_options
def set_default(state: State, name: str, as_json: bool) -> None:
    """Make a model the one default model."""
    with transaction(state) as (_, conn):
        model = ml_models.get_model_by_name(conn, model_name=name)
        model = ml_models.set_default_model(conn, model_id=model.id)
    emit(model, as_json, f"default model: {model.model_name}")


@models_group.command(
    name="add-index",
    epilog="\b\nexample:\n  casdb models add-index "
    "cas-gex-v4 v4-us-central1 --endpoint-id projects/cas/locations/"
    "us-central1/indexEndpoints/7 --num-neighbors 100",
)
@click.argument("name", metavar="MODEL_NAME")
@click.argument("index_name", metavar="INDEX_NAME")
@click.option("--endpoint-id", required=True)
@click.option("--num-neighbors", type=click.IntRange(min=1), required=True)
@click.option(
    "--dimension",
    type=click.IntRange(min=1),
    default=None,
    help="embedding dimension (default: the model's)",
)
@click.option("--deployed-index-id", default=None)
@click.option("--api-endpoint", default=None)
@click.option("--description", default=None)
@click.option("--no-grpc", is_flag=True, help="the index is not served over gRPC")
@command_options
def add_index(
    state: State,
    name: str,
    index_name: str,
    endpoint_id: str,
    num_neighbors: int,
    dimension: int | None,
    deployed_index_id: str | None,
    api_endpoint: str | None,
    description: str | None,
    no_grpc: bool,
    as_json: bool,
) -> None:
    """Add a matching-engine index to a model."""
    with transaction(state) as (_, conn):
        model = ml_models.get_model_by_name(conn, model_name=name)
        index = ml_models.create_matching_engine_index(
            conn,
            index_name=index_name,
            embedding_dimension=dimension or model.embedding_dimension,
            endpoint_id=endpoint_id,
            num_neighbors=num_neighbors,
            model_id=model.id,
            description=description,
            deployed_index_id=deployed_index_id,
            is_grpc=not no_grpc,
            api_endpoint=api_endpoint,
        )
    emit(index, as_json)
