"""``casdb models``: the registry of ML models and their matching-engine indexes."""

from __future__ import annotations

import click

from casdb.cli._app import State
from casdb.cli._shared import (
    connect,
    database,
    database_options,
    emit_json,
    fields_text,
    json_option,
    out,
    pass_state,
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
        table(["id", "index", "dim", "neighbors", "endpoint", "deployed index", "grpc"],
              [(i.id, i.index_name, i.embedding_dimension, i.num_neighbors, i.endpoint_id,
                i.deployed_index_id, i.is_grpc) for i in model.indexes])


@click.group(name="models")
def models_group() -> None:
    """ML models: list, show, create, set-default, add-index."""


@models_group.command(name="list")
@click.option("--public-only", is_flag=True, help="leave out the admin-only models")
@json_option
@database_options
@pass_state
def list_(state: State, public_only: bool, as_json: bool) -> None:
    """List the models with their indexes, ordered by id."""
    with database(state) as engine, connect(engine) as conn:
        found = ml_models.list_models(conn, include_admin_only=not public_only)
    if as_json:
        emit_json(found)
        return
    table(["id", "model", "dim", "admin only", "default", "file", "indexes"],
          [(m.id, m.model_name, m.embedding_dimension, m.admin_use_only, m.is_default_model,
            m.model_file_path, ", ".join(i.index_name for i in m.indexes)) for m in found])


@models_group.command()
@click.argument("name", metavar="MODEL_NAME")
@json_option
@database_options
@pass_state
def show(state: State, name: str, as_json: bool) -> None:
    """Show a model and its matching-engine indexes."""
    with database(state) as engine, connect(engine) as conn:
        _show(ml_models.get_model_by_name(conn, model_name=name), as_json)


@models_group.command(epilog="\b\nexample:\n  casdb models create cas-gex-v4 --file-path "
                      "gs://cas-models/v4.pt --dimension 512 --public --default")
@click.argument("name", metavar="MODEL_NAME")
@click.option("--file-path", required=True, help="where the model file is (model_file_path)")
@click.option("--dimension", type=click.IntRange(min=1), required=True,
              help="embedding dimension")
@click.option("--description", default=None)
@click.option("--public", is_flag=True, help="usable by everyone (default: admin use only)")
@click.option("--schema-name", default=ml_models.DEFAULT_SCHEMA_NAME, show_default=True)
@click.option("--bq-dataset", default=ml_models.DEFAULT_BQ_DATASET_NAME, show_default=True)
@click.option("--default", "is_default", is_flag=True, help="make it the default model")
@json_option
@database_options
@pass_state
def create(state: State, name: str, file_path: str, dimension: int, description: str | None,
           public: bool, schema_name: str, bq_dataset: str, is_default: bool,
           as_json: bool) -> None:
    """Register a model."""
    with transaction(state) as (_, conn):
        model = ml_models.create_model(
            conn, model_name=name, model_file_path=file_path, embedding_dimension=dimension,
            description=description, admin_use_only=not public, schema_name=schema_name,
            bq_dataset_name=bq_dataset, is_default_model=is_default,
        )
    _show(model, as_json)


@models_group.command(name="set-default")
@click.argument("name", metavar="MODEL_NAME")
@json_option
@database_options
@pass_state
def set_default(state: State, name: str, as_json: bool) -> None:
    """Make a model the one default model."""
    with transaction(state) as (_, conn):
        model = ml_models.get_model_by_name(conn, model_name=name)
        model = ml_models.set_default_model(conn, model_id=model.id)
    if as_json:
        emit_json(model)
    else:
        out(f"default model: {model.model_name}")


@models_group.command(name="add-index", epilog="\b\nexample:\n  casdb models add-index "
                      "cas-gex-v4 v4-us-central1 --endpoint-id projects/cas/locations/"
                      "us-central1/indexEndpoints/7 --num-neighbors 100")
@click.argument("name", metavar="MODEL_NAME")
@click.argument("index_name", metavar="INDEX_NAME")
@click.option("--endpoint-id", required=True)
@click.option("--num-neighbors", type=click.IntRange(min=1), required=True)
@click.option("--dimension", type=click.IntRange(min=1), default=None,
              help="embedding dimension (default: the model's)")
@click.option("--deployed-index-id", default=None)
@click.option("--api-endpoint", default=None)
@click.option("--description", default=None)
@click.option("--no-grpc", is_flag=True, help="the index is not served over gRPC")
@json_option
@database_options
@pass_state
def add_index(state: State, name: str, index_name: str, endpoint_id: str, num_neighbors: int,
              dimension: int | None, deployed_index_id: str | None, api_endpoint: str | None,
              description: str | None, no_grpc: bool, as_json: bool) -> None:
    """Add a matching-engine index to a model."""
    with transaction(state) as (_, conn):
        model = ml_models.get_model_by_name(conn, model_name=name)
        index = ml_models.create_matching_engine_index(
            conn, index_name=index_name, embedding_dimension=dimension or model.embedding_dimension,
            endpoint_id=endpoint_id, num_neighbors=num_neighbors, model_id=model.id,
            description=description, deployed_index_id=deployed_index_id,
            is_grpc=not no_grpc, api_endpoint=api_endpoint,
        )
    if as_json:
        emit_json(index)
    else:
        fields_text(index)
