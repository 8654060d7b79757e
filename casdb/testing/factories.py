"""Factories: one call makes a valid user, key, model with indexes, or ingest with cells.

Every value not given is filled in with something valid and unique (emails, names, ids), so
tests state only what they are about. The functions take the connection as casdb's
operations do; :class:`Factory` binds them to one connection (the ``casdb_factory`` fixture).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from typing import Any

import attrs
from sqlalchemy import Connection, func, select

from casdb.queries import cells as cell_queries
from casdb.queries import keys, ml_models, users
from casdb.tables import cells_cellinfo, cells_featureinfo

_serial = itertools.count(1)

# Realistic CELLxGENE-style annotations, cycled through by the cells a factory makes.
_CELL_TYPES = (
    ("T cell", "CL:0000084"),
    ("B cell", "CL:0000236"),
    ("natural killer cell", "CL:0000623"),
    ("monocyte", "CL:0000576"),
    ("erythrocyte", "CL:0000232"),
)
_TISSUES = (("lung", "UBERON:0002048"), ("blood", "UBERON:0000178"), ("liver", "UBERON:0002107"))


def _unique(stem: str) -> str:
    # A process-wide serial for readability, a random part so that parallel runs never clash.
    return f"{stem}-{next(_serial)}-{uuid.uuid4().hex[:8]}"


@attrs.frozen
class IssuedKey:
    """A stored key with the token that authenticates it (``<key_locator>.<secret>``).

    ``token`` and ``secret`` never show in a repr.
    """

    key: keys.UserKey
    secret: str = attrs.field(repr=False)
    token: str = attrs.field(repr=False)


@attrs.frozen
class IngestWithCells:
    """An ingest and the features and cells stored under it, as written."""

    ingest: cell_queries.Ingest
    features: tuple[cell_queries.Feature, ...]
    cells: tuple[cell_queries.Cell, ...]

    @property
    def cell_ids(self) -> list[int]:
        """The cas_cell_index of every cell, in the order written."""
        return [cell.cas_cell_index for cell in self.cells]


def make_user(connection: Connection, **fields: Any) -> users.User:
    """Create a user with a unique email; ``fields`` are create_user's keyword arguments."""
    name = _unique("user")
    values: dict[str, Any] = {"email": f"{name}@example.org", "username": name}
    return users.create_user(connection, **(values | fields))


def hash_secret(secret: str) -> str:
    """Return an Argon2id hash of ``secret`` that argon2-cffi's PasswordHasher().verify accepts.

    Cheap parameters (the hash records them): fine for tests, never for production.
    """
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(secret)


def make_key(
    connection: Connection, *, user_id: int | None = None, active: bool = True, **fields: Any
) -> IssuedKey:
    """Create an API key (for a new user unless ``user_id`` is given) and its token.

    The token has the CAS format ``<key_locator>.<secret>`` (two uuid4 strings); the key stores
    an Argon2id hash of the secret. ``active=False`` deactivates it; other ``fields``
    (``expires``, ``key_locator``, ``key_hash``) go to create_user_key.
    """
    if user_id is None:
        user_id = make_user(connection).id
    secret = str(uuid.uuid4())
    values: dict[str, Any] = {"key_locator": uuid.uuid4(), "key_hash": None} | fields
    if values["key_hash"] is None:
        values["key_hash"] = hash_secret(secret)
    key = keys.create_user_key(connection, user_id=user_id, **values)
    if not active:
        key = keys.deactivate_user_key(connection, key_locator=key.key_locator)
    return IssuedKey(key=key, secret=secret, token=f"{key.key_locator}.{secret}")


def make_model(
    connection: Connection,
    *,
    indexes: int = 1,
    index_fields: Mapping[str, Any] | None = None,
    **fields: Any,
) -> ml_models.MLModel:
    """Create a model with ``indexes`` matching-engine indexes; return it with its indexes.

    ``fields`` go to create_model, ``index_fields`` to every create_matching_engine_index.
    """
    name = _unique("model")
    values: dict[str, Any] = {
        "model_name": name,
        "model_file_path": f"gs://cas-models/{name}.pt",
        "embedding_dimension": 512,
        "admin_use_only": False,
    }
    model = ml_models.create_model(connection, **(values | fields))
    for number in range(indexes):
        index_name = f"{model.model_name}-index-{number}"[-255:]
        index_values: dict[str, Any] = {
            "index_name": index_name,
            "embedding_dimension": model.embedding_dimension,
            "endpoint_id": f"projects/cas/locations/us-central1/indexEndpoints/{number}",
            "deployed_index_id": index_name.replace("-", "_"),
            "num_neighbors": 100,
        }
        ml_models.create_matching_engine_index(
            connection, model_id=model.id, **(index_values | dict(index_fields or {}))
        )
    return ml_models.get_model_by_name(connection, model_name=model.model_name)


def _next_index(connection: Connection, column: Any) -> int:
    return int(connection.execute(select(func.coalesce(func.max(column), 0) + 1)).scalar_one())


def make_ingest(
    connection: Connection,
    *,
    cells: int = 10,
    features: int = 3,
    cell_fields: Mapping[str, Any] | None = None,
    **fields: Any,
) -> IngestWithCells:
    """Create an ingest with ``cells`` cells and ``features`` features.

    Cells and features take the next free indexes of the database; ``cell_fields`` are set on
    every cell (``{"tissue": None}``...), ``fields`` go to create_ingest.
    """
    values: dict[str, Any] = {"cas_ingest_id": _unique("ingest"), "dataset_id": _unique("dataset")}
    ingest = cell_queries.create_ingest(connection, **(values | fields))
    first_feature = _next_index(connection, cells_featureinfo.c.cas_feature_index)
    feature_rows = tuple(
        cell_queries.Feature(
            cas_feature_index=first_feature + number,
            cas_ingest_id=ingest.cas_ingest_id,
            original_feature_id=f"ENSG{first_feature + number:011d}",
            feature_name=f"GENE{first_feature + number}",
            feature_biotype="gene",
            feature_reference="NCBITaxon:9606",
        )
        for number in range(features)
    )
    first_cell = _next_index(connection, cells_cellinfo.c.cas_cell_index)
    made = []
    for number in range(cells):
        cell_type, cell_type_term = _CELL_TYPES[number % len(_CELL_TYPES)]
        tissue, tissue_term = _TISSUES[number % len(_TISSUES)]
        cell: dict[str, Any] = {
            "cas_cell_index": first_cell + number,
            "cas_ingest_id": ingest.cas_ingest_id,
            "original_cell_id": f"cell-{first_cell + number}",
            "cell_type": cell_type,
            "cell_type_ontology_term_id": cell_type_term,
            "tissue": tissue,
            "tissue_ontology_term_id": tissue_term,
            "assay": "10x 3' v3",
            "assay_ontology_term_id": "EFO:0009922",
            "organism": "Homo sapiens",
            "organism_ontology_term_id": "NCBITaxon:9606",
            "donor_id": f"donor-{number % 3}",
            "total_mrna_umis": 1000 + number,
            "obs_metadata_extra": {"batch": number % 2},
        }
        made.append(cell_queries.Cell(**(cell | dict(cell_fields or {}))))
    cell_queries.insert_features(connection, rows=feature_rows)
    cell_queries.insert_cells(connection, rows=made)
    return IngestWithCells(ingest=ingest, features=feature_rows, cells=tuple(made))


@attrs.frozen
class Factory:
    """The factories bound to one connection: ``factory.user()``, ``.key()``, ``.model()``,
    ``.ingest()`` take the same keyword arguments as make_user, make_key, ..."""

    connection: Connection

    def user(self, **fields: Any) -> users.User:
        """See :func:`make_user`."""
        return make_user(self.connection, **fields)

    def key(self, **fields: Any) -> IssuedKey:
        """See :func:`make_key`."""
        return make_key(self.connection, **fields)

    def model(self, **fields: Any) -> ml_models.MLModel:
        """See :func:`make_model`."""
        return make_model(self.connection, **fields)

    def ingest(self, **fields: Any) -> IngestWithCells:
        """See :func:`make_ingest`."""
        return make_ingest(self.connection, **fields)
