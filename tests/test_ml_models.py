"""The ML model registry (casdb.queries.ml_models) against a real PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import threading
import time
import uuid
from typing import Any

import attrs
import pytest
import sqlalchemy
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects import postgresql

from casdb import AlreadyExists, InvalidInput, NotFound
from casdb.queries import ml_models as mm
from casdb.tables import ml_management_matchingengineindex as index_table
from casdb.tables import ml_management_model as model_table
from casdb.testing import statements_sent
from tests.conftest import rolled_back

INT32_MAX = 2**31 - 1
UTC = dt.UTC

# --- helpers and strategies ----------------------------------------------------------------

# Any Unicode text PostgreSQL can store: no NUL, no lone surrogates.
storable = st.characters(codec="utf-8", exclude_characters="\x00")
names = st.text(storable, min_size=1, max_size=255)
descriptions = st.none() | st.text(storable, max_size=511)
dimensions = st.sampled_from([1, 2, INT32_MAX - 1, INT32_MAX]) | st.integers(1, INT32_MAX)
aware_times = st.none() | st.datetimes(
    min_value=dt.datetime(2, 1, 1),
    max_value=dt.datetime(9998, 12, 31),
    timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=-7, minutes=-30))]),
)


def count_defaults(conn: Connection) -> int:
    statement = select(func.count()).where(model_table.c.is_default_model.is_(True))
    return int(conn.execute(statement).scalar_one())


def table_counts(conn: Connection) -> tuple[int, int]:
    models = conn.execute(select(func.count()).select_from(model_table)).scalar_one()
    indexes = conn.execute(select(func.count()).select_from(index_table)).scalar_one()
    return int(models), int(indexes)


def new_model(conn: Connection, name: str, **kwargs: Any) -> mm.MLModel:
    return mm.create_model(
        conn,
        model_name=name,
        model_file_path=f"gs://models/{name}",
        embedding_dimension=512,
        **kwargs,
    )


def new_index(conn: Connection, name: str, model_id: int, **kwargs: Any) -> mm.MatchingEngineIndex:
    return mm.create_matching_engine_index(
        conn,
        index_name=name,
        embedding_dimension=512,
        endpoint_id="endpoint",
        num_neighbors=100,
        model_id=model_id,
        **kwargs,
    )


# --- round trips ---------------------------------------------------------------------------

index_specs = st.lists(
    st.fixed_dictionaries(
        {
            "index_name": names,
            "description": descriptions,
            "embedding_dimension": dimensions,
            "endpoint_id": names,
            "deployed_index_id": st.none() | names,
            "num_neighbors": dimensions,
            "is_grpc": st.booleans(),
            "api_endpoint": st.none() | names,
        }
    ),
    max_size=3,
    unique_by=(lambda spec: spec["index_name"], lambda spec: spec["deployed_index_id"] or id(spec)),
)


@given(
    model_name=names,
    model_file_path=names,
    embedding_dimension=dimensions,
    description=descriptions,
    admin_use_only=st.booleans(),
    schema_name=names,
    bq_dataset_name=names,
    created_date=aware_times,
    indexes=index_specs,
)
def test_model_and_index_round_trip(
    engine: Engine,
    model_name: str,
    model_file_path: str,
    embedding_dimension: int,
    description: str | None,
    admin_use_only: bool,
    schema_name: str,
    bq_dataset_name: str,
    created_date: dt.datetime | None,
    indexes: list[dict[str, Any]],
) -> None:
    with rolled_back(engine) as conn:
        before = mm.list_models(conn)
        before_public = mm.list_models(conn, include_admin_only=False)
        model = mm.create_model(
            conn,
            model_name=model_name,
            model_file_path=model_file_path,
            embedding_dimension=embedding_dimension,
            description=description,
            admin_use_only=admin_use_only,
            schema_name=schema_name,
            bq_dataset_name=bq_dataset_name,
            created_date=created_date,
        )
        assert (model.model_name, model.model_file_path, model.description) == (
            model_name,
            model_file_path,
            description,
        )
        assert (model.embedding_dimension, model.admin_use_only) == (
            embedding_dimension,
            admin_use_only,
        )
        assert (model.schema_name, model.bq_dataset_name) == (schema_name, bq_dataset_name)
        assert model.is_default_model is False
        assert model.indexes == ()
        assert model.created_date is not None and model.created_date.tzinfo is UTC
        if created_date is not None:
            assert model.created_date == created_date

        created = tuple(
            mm.create_matching_engine_index(conn, model_id=model.id, **spec) for spec in indexes
        )
        for index, spec in zip(created, indexes, strict=True):
            assert attrs.asdict(index, recurse=False) == {
                **spec,
                "id": index.id,
                "model_id": model.id,
            }
            assert mm.get_index_by_name(conn, index_name=spec["index_name"]) == index
        assert [index.id for index in created] == sorted(index.id for index in created)

        stored = mm.get_model_by_name(conn, model_name=model_name)
        assert stored == attrs.evolve(model, indexes=created)
        assert mm.list_indexes_for_model(conn, model_id=model.id) == list(created)
        assert mm.list_models(conn) == [*before, stored]
        public = mm.list_models(conn, include_admin_only=False)
        assert public == (before_public if admin_use_only else [*before_public, stored])


def test_defaults_and_server_time(conn: Connection) -> None:
    started = dt.datetime.now(UTC)
    model = new_model(conn, "defaults")
    assert model.admin_use_only is True
    assert model.schema_name == "refdata-gex-GRCh38-2020-A"
    assert model.bq_dataset_name == "cas_50m_dataset"
    assert model.description is None
    assert model.created_date is not None and model.created_date.tzinfo is UTC
    assert abs(model.created_date - started) < dt.timedelta(minutes=5)
    index = new_index(conn, "defaults-index", model.id)
    assert (index.is_grpc, index.api_endpoint, index.description, index.deployed_index_id) == (
        True,
        None,
        None,
        None,
    )
    # Several indexes without a deployed_index_id may coexist (NULLs are distinct).
    new_index(conn, "defaults-index-2", model.id)


def test_get_model_by_name_is_one_query_with_indexes_in_id_order(conn: Connection) -> None:
    model = new_model(conn, "with-indexes")
    other = new_model(conn, "other")
    first = new_index(conn, "z-first", model.id, deployed_index_id="d1")
    new_index(conn, "elsewhere", other.id)
    second = new_index(conn, "a-second", model.id)
    with statements_sent(conn) as sent:
        stored = mm.get_model_by_name(conn, model_name="with-indexes")
    assert len(sent) == 1
    assert stored.indexes == (first, second)
    assert mm.get_model_by_name(conn, model_name="other").indexes[0].index_name == "elsewhere"
    assert mm.list_indexes_for_model(conn, model_id=model.id) == [first, second]
    assert mm.list_indexes_for_model(conn, model_id=INT32_MAX) == []


# --- errors --------------------------------------------------------------------------------


def test_duplicate_model_name(conn: Connection) -> None:
    new_model(conn, "dup", description="first")
    before = mm.list_models(conn)
    with pytest.raises(AlreadyExists) as caught:
        new_model(conn, "dup", description="second", is_default_model=True)
    assert caught.value.field == "model_name"
    # Nothing changed, and the caller's transaction is still usable.
    assert mm.list_models(conn) == before
    assert count_defaults(conn) == sum(model.is_default_model for model in before)


def test_duplicate_index_name_and_deployed_index_id(conn: Connection) -> None:
    model = new_model(conn, "m")
    new_index(conn, "idx", model.id, deployed_index_id="deployed")
    before = table_counts(conn)
    with pytest.raises(AlreadyExists) as caught:
        new_index(conn, "idx", model.id, deployed_index_id="other")
    assert caught.value.field == "index_name"
    with pytest.raises(AlreadyExists) as caught:
        new_index(conn, "idx-2", model.id, deployed_index_id="deployed")
    assert caught.value.field == "deployed_index_id"
    with pytest.raises(AlreadyExists) as caught:  # both taken: the name is reported
        new_index(conn, "idx", model.id, deployed_index_id="deployed")
    assert caught.value.field == "index_name"
    assert table_counts(conn) == before
    assert [index.index_name for index in mm.list_indexes_for_model(conn, model_id=model.id)] == [
        "idx"
    ]


def test_not_found(conn: Connection) -> None:
    model = new_model(conn, "present")
    before = table_counts(conn)
    with pytest.raises(NotFound):
        mm.get_model_by_name(conn, model_name="absent")
    with pytest.raises(NotFound):
        mm.get_index_by_name(conn, index_name="absent")
    with pytest.raises(NotFound):
        new_index(conn, "orphan", model.id + 1000)
    assert table_counts(conn) == before
    conn.execute(model_table.update().values(is_default_model=False))
    with pytest.raises(NotFound):
        mm.get_default_model(conn)
    with pytest.raises(NotFound):
        mm.set_default_model(conn, model_id=model.id + 1000)
    assert count_defaults(conn) == 0


TOO_LONG = "x" * 256
BAD_TEXT = ["", TOO_LONG, "nul\x00", "lone \ud800 surrogate", 7, None, b"bytes"]
BAD_OPTIONAL_TEXT = ["x" * 512, "nul\x00", 7, b"bytes"]
BAD_COUNT = [0, -1, INT32_MAX + 1, True, False, "3", 3.0, None]
BAD_ID = [INT32_MAX + 1, -(2**31) - 1, True, "1", 1.0, None]
BAD_BOOL = [1, 0, "true", None]

CREATE_MODEL_CASES = [
    *[("model_name", value) for value in BAD_TEXT],
    *[("model_file_path", value) for value in BAD_TEXT],
    *[("schema_name", value) for value in BAD_TEXT],
    *[("bq_dataset_name", value) for value in BAD_TEXT],
    *[("description", value) for value in BAD_OPTIONAL_TEXT],
    *[("embedding_dimension", value) for value in BAD_COUNT],
    *[("admin_use_only", value) for value in BAD_BOOL],
    *[("is_default_model", value) for value in BAD_BOOL],
    ("created_date", dt.datetime(2024, 1, 1)),
    ("created_date", "2024-01-01T00:00:00Z"),
]


@pytest.mark.parametrize(("field", "value"), CREATE_MODEL_CASES)
def test_create_model_rejects_bad_input_before_any_sql(
    conn: Connection, field: str, value: object
) -> None:
    good: dict[str, Any] = {
        "model_name": "good",
        "model_file_path": "path",
        "embedding_dimension": 3,
        "is_default_model": True,
    }
    before = table_counts(conn)
    with statements_sent(conn) as sent, pytest.raises(InvalidInput):
        mm.create_model(conn, **{**good, field: value})
    assert sent == []
    assert table_counts(conn) == before


CREATE_INDEX_CASES = [
    *[("index_name", value) for value in BAD_TEXT],
    *[("endpoint_id", value) for value in BAD_TEXT],
    *[("deployed_index_id", value) for value in BAD_TEXT if value is not None],
    *[("api_endpoint", value) for value in BAD_TEXT if value is not None],
    *[("description", value) for value in BAD_OPTIONAL_TEXT],
    *[("embedding_dimension", value) for value in BAD_COUNT],
    *[("num_neighbors", value) for value in BAD_COUNT],
    *[("model_id", value) for value in BAD_ID],
    *[("is_grpc", value) for value in BAD_BOOL],
]


@pytest.mark.parametrize(("field", "value"), CREATE_INDEX_CASES)
def test_create_index_rejects_bad_input_before_any_sql(
    conn: Connection, field: str, value: object
) -> None:
    model = new_model(conn, "target")
    good: dict[str, Any] = {
        "index_name": "good",
        "embedding_dimension": 3,
        "endpoint_id": "e",
        "num_neighbors": 10,
        "model_id": model.id,
    }
    before = table_counts(conn)
    with statements_sent(conn) as sent, pytest.raises(InvalidInput):
        mm.create_matching_engine_index(conn, **{**good, field: value})
    assert sent == []
    assert table_counts(conn) == before


@pytest.mark.parametrize(
    ("operation", "field", "values"),
    [
        (mm.get_model_by_name, "model_name", BAD_TEXT),
        (mm.get_index_by_name, "index_name", BAD_TEXT),
        (mm.set_default_model, "model_id", BAD_ID),
        (mm.list_indexes_for_model, "model_id", BAD_ID),
        (mm.list_models, "include_admin_only", BAD_BOOL),
    ],
)
def test_reads_and_set_default_reject_bad_input_before_any_sql(
    conn: Connection, operation: Any, field: str, values: list[object]
) -> None:
    for value in values:
        with statements_sent(conn) as sent, pytest.raises(InvalidInput):
            operation(conn, **{field: value})
        assert sent == []


def test_autocommit_connection_is_refused_for_default_changes(engine: Engine) -> None:
    with engine.connect() as setup:
        model = new_model(setup, f"autocommit-{uuid.uuid4()}")
        setup.commit()
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            with statements_sent(conn) as sent, pytest.raises(InvalidInput):
                mm.set_default_model(conn, model_id=model.id)
            with pytest.raises(InvalidInput):
                new_model(conn, f"autocommit-{uuid.uuid4()}", is_default_model=True)
            assert sent == []
            assert mm.get_model_by_name(conn, model_name=model.model_name) == model
    finally:
        with engine.begin() as cleanup:
            cleanup.execute(model_table.delete().where(model_table.c.id == model.id))


# --- the default model ---------------------------------------------------------------------


def test_set_default_model(conn: Connection) -> None:
    first = new_model(conn, "first", is_default_model=True)
    assert first.is_default_model
    assert mm.get_default_model(conn) == first
    second = new_model(conn, "second")
    index = new_index(conn, "second-index", second.id)
    made = mm.set_default_model(conn, model_id=second.id)
    assert made == attrs.evolve(second, is_default_model=True, indexes=(index,))
    assert mm.get_default_model(conn) == made
    assert mm.set_default_model(conn, model_id=second.id) == made  # already default: no-op
    third = new_model(conn, "third", is_default_model=True)
    assert mm.get_default_model(conn) == third
    assert [model.is_default_model for model in mm.list_models(conn)][-3:] == [False, False, True]
    assert count_defaults(conn) == 1


def test_a_single_update_statement_would_trip_the_unique_index(conn: Connection) -> None:
    """Why set_default_model clears and sets in two statements.

    PostgreSQL checks a non-deferrable unique index row by row: an UPDATE that reaches the new
    default before the old one collides with it, though the end state would be valid.
    """
    target = new_model(conn, "target")
    mm.set_default_model(conn, model_id=new_model(conn, "current").id)
    single = (
        model_table.update()
        .where(model_table.c.is_default_model | (model_table.c.id == target.id))
        .values(is_default_model=model_table.c.id == target.id)
    )
    with pytest.raises(sqlalchemy.exc.IntegrityError), conn.begin_nested():
        conn.execute(single)
    assert mm.set_default_model(conn, model_id=target.id).is_default_model
    assert count_defaults(conn) == 1


def test_statement_builders_compile_without_a_database() -> None:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]

    def sql(statement: Any) -> str:
        return str(statement.compile(dialect=dialect))

    assert "pg_advisory_xact_lock" in sql(mm.build_lock_default_model())
    assert sql(mm.build_lock_model(model_id=1)).endswith("FOR NO KEY UPDATE")
    assert sql(mm.build_lock_model(model_id=1, key_share=True)).endswith("FOR KEY SHARE")
    assert "json_agg" in sql(mm.build_select_models(model_name="x"))
    assert "RETURNING" in sql(mm.build_set_default_model(model_id=1))
    assert "ON CONFLICT DO NOTHING" in sql(
        mm.build_insert_model(
            {
                "model_name": "m",
                "model_file_path": "p",
                "embedding_dimension": 1,
                "schema_name": "s",
                "bq_dataset_name": "b",
            }
        )
    )
    assert "ON CONFLICT DO NOTHING" in sql(
        mm.build_insert_index(
            {
                "index_name": "i",
                "embedding_dimension": 1,
                "endpoint_id": "e",
                "num_neighbors": 1,
                "model_id": 1,
            }
        )
    )
    assert "is_default_model" in sql(mm.build_clear_default_model(keep_model_id=1))
    assert "index_name" in sql(mm.build_select_indexes(index_name="i", model_id=1))
    assert "EXISTS" in sql(mm.build_index_name_taken(index_name="i"))


def test_default_model_state_machine(engine: Engine) -> None:
    """Random creates, default changes and listings against a plain-Python model."""
    short_names = st.text("abc", min_size=1, max_size=3)

    class Registry(RuleBasedStateMachine):
        model_ids = Bundle("model_ids")

        def __init__(self) -> None:
            super().__init__()
            self.stack = contextlib.ExitStack()
            self.conn = self.stack.enter_context(rolled_back(engine))
            existing = mm.list_models(self.conn)
            # id -> (model_name, admin_use_only); the default as its own variable
            self.models = {m.id: (m.model_name, m.admin_use_only) for m in existing}
            self.default = next((m.id for m in existing if m.is_default_model), None)
            self.default_was_set = False

        def teardown(self) -> None:
            self.stack.close()

        @rule(target=model_ids, name=short_names, admin=st.booleans(), default=st.booleans())
        def create(self, name: str, admin: bool, default: bool) -> int:
            taken = any(known == name for known, _ in self.models.values())
            try:
                model = new_model(self.conn, name, admin_use_only=admin, is_default_model=default)
            except AlreadyExists as error:
                assert taken and error.field == "model_name"
                return -1
            assert not taken
            self.models[model.id] = (name, admin)
            if default:
                self.default, self.default_was_set = model.id, True
            return model.id

        @rule(model_id=model_ids)
        def set_default(self, model_id: int) -> None:
            if model_id not in self.models:
                self.set_unknown_default(model_id)
                return
            assert mm.set_default_model(self.conn, model_id=model_id).id == model_id
            self.default, self.default_was_set = model_id, True

        @rule(model_id=st.integers(-5, INT32_MAX))
        def set_unknown_default(self, model_id: int) -> None:
            if model_id in self.models:
                return
            with pytest.raises(NotFound):
                mm.set_default_model(self.conn, model_id=model_id)

        @rule(include_admin_only=st.booleans())
        def listing(self, include_admin_only: bool) -> None:
            listed = mm.list_models(self.conn, include_admin_only=include_admin_only)
            expected = [
                (model_id, name, admin, model_id == self.default)
                for model_id, (name, admin) in sorted(self.models.items())
                if include_admin_only or not admin
            ]
            assert [
                (m.id, m.model_name, m.admin_use_only, m.is_default_model) for m in listed
            ] == expected

        @invariant()
        def one_default(self) -> None:
            defaults = count_defaults(self.conn)
            assert defaults <= 1
            if self.default_was_set:
                assert defaults == 1
            if self.default is None:
                with pytest.raises(NotFound):
                    mm.get_default_model(self.conn)
            else:
                assert mm.get_default_model(self.conn).id == self.default

    run_state_machine_as_test(
        Registry,
        settings=settings(max_examples=min(settings().max_examples, 40), stateful_step_count=25),
    )


def test_set_default_model_under_concurrency(engine: Engine) -> None:
    """8 threads x 50 committed set_default_model calls; a sampler never sees 0 or 2."""
    threads, calls = 8, 50
    prefix = f"concurrency-{uuid.uuid4()}"
    with engine.begin() as setup:
        ids = [new_model(setup, f"{prefix}-{n}").id for n in range(6)]
        mm.set_default_model(setup, model_id=ids[0])
    unknown = max(ids) + 10_000
    failures: list[BaseException] = []
    samples: list[int] = []
    done = threading.Event()
    start = threading.Barrier(threads + 1)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with engine.connect() as conn:
                start.wait()
                for _ in range(calls):
                    model_id = rng.choice([*ids, unknown])
                    with conn.begin():
                        if model_id == unknown:
                            with pytest.raises(NotFound):
                                mm.set_default_model(conn, model_id=model_id)
                        else:
                            assert mm.set_default_model(conn, model_id=model_id).id == model_id
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    def sampler() -> None:
        try:
            with engine.connect() as conn:
                start.wait()
                while not done.is_set():
                    with conn.begin():
                        samples.append(count_defaults(conn))
        except BaseException as error:
            failures.append(error)

    pool = [threading.Thread(target=worker, args=(seed,)) for seed in range(threads)]
    watcher = threading.Thread(target=sampler)
    began = time.monotonic()
    try:
        for thread in [*pool, watcher]:
            thread.start()
        for thread in pool:
            thread.join(timeout=120)
        done.set()
        watcher.join(timeout=30)
        assert not any(thread.is_alive() for thread in [*pool, watcher])
        assert failures == []
        assert len(samples) > 10
        assert set(samples) == {1}
        with engine.connect() as conn:
            assert count_defaults(conn) == 1
            assert mm.get_default_model(conn).id in ids
        assert time.monotonic() - began < 60
    finally:
        done.set()
        with engine.begin() as cleanup:
            cleanup.execute(model_table.delete().where(model_table.c.id.in_(ids)))
