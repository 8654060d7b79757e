"""``casdb demo``: fill realistic sample data and run every area's operations, printing tables.

The whole demo runs in one transaction, rolled back at the end unless ``keep`` is set, so it
can run again and leaves a database as it found it.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, func, inspect, select

from casdb import migrate
from casdb.errors import DatabaseError, NotFound
from casdb.queries import activity, cells, keys, ml_models, quotas, users
from casdb.replicas import wait_for_replica
from casdb.tables import UserActivityEvent, metadata

Out = Callable[[str], None]

CELL_TYPES = [
    "T cell",
    "B cell",
    "natural killer cell",
    "monocyte",
    "erythrocyte",
    "neuron",
    "astrocyte",
    "hepatocyte",
]
TISSUES = ["blood", "brain", "liver", "lung", "kidney"]
DEMO_CELLS = 20_000


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return ``rows`` as a plain-text table with a header line."""
    cells_text = [[_show(value) for value in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells_text]) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells_text]
    return "\n".join(row.rstrip() for row in out)


def _show(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if value is None:
        return "-"
    text = str(value)
    return text if len(text) <= 48 else text[:45] + "..."


def is_empty(connection: Connection) -> bool:
    """Return True when no casdb table holds a row (alembic_version aside)."""
    for table in metadata.sorted_tables:
        if connection.execute(select(func.count()).select_from(table)).scalar_one():
            return False
    return True


def _section(out: Out, title: str) -> None:
    out("")
    out(f"== {title} " + "=" * max(0, 70 - len(title)))


def _users_keys_activity(
    conn: Connection, out: Out, now: dt.datetime, rng: random.Random, tag: str
) -> list[users.User]:
    _section(out, "users")
    people = [
        users.create_user(
            conn,
            email=f"ada{tag}@example.org",
            username="Ada Lovelace",
            created_at=now - dt.timedelta(days=40, hours=5),
        ),
        users.create_user(
            conn,
            email=f"brenner{tag}@example.org",
            username="Sydney Brenner",
            is_admin=True,
            cell_quota=500_000,
            lifetime_cell_quota=None,
            created_at=now - dt.timedelta(days=23, hours=2),
        ),
        users.create_user(
            conn,
            email=f"cajal{tag}@example.org",
            username="Santiago Ramón y Cajal",
            cell_quota=20_000,
            lifetime_cell_quota=60_000,
            created_at=now - dt.timedelta(days=9, hours=20),
        ),
    ]
    users.opt_out_of_feedback(conn, user_id=people[2].id)
    ids = {person.id for person in people}
    out(
        format_table(
            ["id", "email", "username", "admin", "weekly quota", "lifetime quota", "signed up"],
            [
                (
                    u.id,
                    u.email,
                    u.username,
                    u.is_admin,
                    u.cell_quota,
                    u.lifetime_cell_quota,
                    u.created_at,
                )
                for u in users.list_users(conn)
                if u.id in ids
            ],
        )
    )

    _section(out, "API keys")
    issued = keys.issue_user_token(conn, user_id=people[0].id)
    made = [
        issued.key,
        keys.create_user_key(
            conn,
            user_id=people[0].id,
            key_hash="$argon2id$v=19$demo-b",
            expires=now + dt.timedelta(days=30),
        ),
    ]
    keys.deactivate_user_key(conn, key_locator=made[1].key_locator)
    owner = keys.authenticate_token(conn, token=issued.token)
    out(
        f"issue_user_token -> <key_locator>.<secret>, only the Argon2id hash stored; "
        f"authenticate_token -> {owner.email}"
    )
    out(
        format_table(
            ["key locator", "user", "active", "expires"],
            [
                (k.key_locator, k.user_id, k.active, k.expires)
                for k in keys.list_user_keys(conn, user_id=people[0].id)
            ],
        )
    )
    auth = keys.get_key_for_authentication(conn, key_locator=made[0].key_locator)
    out(
        f"authentication lookup (one query): key active={auth.key.active}, "
        f"user active={auth.user_active}, hash loaded={bool(auth.key_hash)} (never printed)"
    )

    _section(out, "activity over several weeks")
    logged = 0
    for user in people:
        days = (now - user.created_at).days
        for n in range(rng.randint(12, 20)):
            finished = user.created_at + dt.timedelta(
                days=rng.uniform(0, days), hours=rng.uniform(0, 23)
            )
            request = f"req-{user.id}-{n}"
            count = rng.choice([200, 500, 1_000, 2_500])
            outcome = rng.choices(
                [UserActivityEvent.SUCCEEDED, UserActivityEvent.FAILED], weights=[9, 1]
            )[0]
            for event in (UserActivityEvent.STARTED, outcome):
                activity.log_user_activity(
                    conn,
                    user_id=user.id,
                    model_name="cas-gex-v3",
                    method="annotate",
                    cell_count=count,
                    event=event,
                    request_id=request,
                    finished_time=finished,
                )
                logged += 1
    out(f"logged {logged} activity rows for {len(people)} users")
    recent = activity.list_user_activity(
        conn, user_id=people[0].id, since=now - dt.timedelta(days=7)
    )
    out(
        format_table(
            ["request", "event", "cells", "finished"],
            [(a.request_id, a.event.name, a.cell_count, a.finished_time) for a in recent[:6]],
        )
    )
    return people


def _quotas(conn: Connection, out: Out, people: list[users.User], now: dt.datetime) -> None:
    _section(out, "usage and quotas at " + _show(now))
    rows = []
    for user in people:
        usage = users.get_user_usage(conn, user_id=user.id)
        quota = quotas.get_user_quota(conn, user_id=user.id, now=now)
        rows.append(
            (
                user.username,
                usage.total_requests_processed,
                usage.total_cells_processed,
                quotas.cells_processed_this_week(conn, user_id=user.id, now=now),
                quota.remaining_weekly_quota,
                quota.remaining_lifetime_quota,
                quota.quota_reset_date,
            )
        )
    out(
        format_table(
            ["user", "requests", "cells", "this week", "weekly left", "lifetime left", "resets"],
            rows,
        )
    )
    raised = users.increase_lifetime_quota(conn, user_id=people[2].id, new_quota=250_000)
    again = users.increase_lifetime_quota(conn, user_id=people[2].id, new_quota=900_000)
    out(
        f"increase_lifetime_quota({people[2].username}): {people[2].lifetime_cell_quota} -> "
        f"{raised.lifetime_cell_quota}; a second call is a no-op -> {again.lifetime_cell_quota}"
    )


def _models(conn: Connection, out: Out, tag: str) -> None:
    _section(out, "ML models and matching-engine indexes")
    made = []
    for n, (name, dimension, admin) in enumerate(
        [
            (f"cas-gex-v1{tag}", 256, False),
            (f"cas-gex-v2{tag}", 512, False),
            (f"cas-gex-v3-beta{tag}", 512, True),
        ]
    ):
        model = ml_models.create_model(
            conn,
            model_name=name,
            embedding_dimension=dimension,
            model_file_path=f"gs://cas-models/{name}.pt",
            description=f"scVI embedding, generation {n + 1}",
            admin_use_only=admin,
        )
        for region in ("us-central1", "europe-west4"):
            ml_models.create_matching_engine_index(
                conn,
                index_name=f"{name}-{region}",
                embedding_dimension=dimension,
                endpoint_id=f"projects/cas/locations/{region}/indexEndpoints/{n}",
                deployed_index_id=f"{name.replace('-', '_')}_{region.replace('-', '_')}",
                num_neighbors=100,
                model_id=model.id,
            )
        made.append(model)
    ml_models.set_default_model(conn, model_id=made[0].id)
    ml_models.set_default_model(conn, model_id=made[1].id)
    mine = {model.id for model in made}
    out(
        format_table(
            ["id", "model", "dim", "admin only", "default", "indexes"],
            [
                (
                    m.id,
                    m.model_name,
                    m.embedding_dimension,
                    m.admin_use_only,
                    m.is_default_model,
                    ", ".join(i.index_name for i in m.indexes),
                )
                for m in ml_models.list_models(conn)
                if m.id in mine
            ],
        )
    )
    public = [
        m.model_name for m in ml_models.list_models(conn, include_admin_only=False) if m.id in mine
    ]
    out(f"models for everyone: {', '.join(public)}")
    out(f"default model: {ml_models.get_default_model(conn).model_name}")
    beta = ml_models.get_model_by_name(conn, model_name=made[2].model_name)
    out(f"get_model_by_name({made[2].model_name!r}) -> {len(beta.indexes)} indexes in one query")


def _cell_rows(ingest_id: str, ids: Iterable[int], rng: random.Random) -> Iterator[cells.Cell]:
    for index in ids:
        cell_type = rng.choice(CELL_TYPES)
        yield cells.Cell(
            cas_cell_index=index,
            cas_ingest_id=ingest_id,
            cell_type=cell_type,
            original_cell_id=f"AAACCTG{index:09d}-1",
            donor_id=f"donor-{index % 12}",
            tissue=rng.choice(TISSUES),
            assay="10x 3' v3",
            organism="Homo sapiens",
            disease="normal",
            sex=rng.choice(["female", "male"]),
            suspension_type="cell",
            total_mrna_umis=rng.randint(500, 40_000),
            obs_metadata_extra={"batch": index % 4, "qc": {"pct_mito": round(rng.random(), 3)}},
        )


def _cells(conn: Connection, out: Out, rng: random.Random, tag: str) -> None:
    _section(out, "cells")
    ingest = cells.create_ingest(
        conn,
        cas_ingest_id=f"demo-ingest-1{tag}",
        dataset_id="demo-dataset",
        dataset_version_id="v1",
        uns_metadata={"title": "demo atlas"},
    )
    # Ids from the tables' sequences, so that the demo never collides with rows it kept.
    feature_ids = [
        n for run in cells.reserve_indexes(conn, table="features", count=2_000) for n in run
    ]
    cell_ids = [
        n for run in cells.reserve_indexes(conn, table="cells", count=DEMO_CELLS) for n in run
    ]
    features = cells.insert_features(
        conn,
        rows=(
            {
                "cas_feature_index": n,
                "cas_ingest_id": ingest.cas_ingest_id,
                "original_feature_id": f"ENSG{n:011d}",
                "feature_name": f"GENE{n}",
                "feature_biotype": "gene",
                "feature_reference": "NCBITaxon:9606",
            }
            for n in feature_ids
        ),
    )
    started = time.perf_counter()
    written = cells.insert_cells(conn, rows=_cell_rows(ingest.cas_ingest_id, cell_ids, rng))
    seconds = time.perf_counter() - started
    out(
        f"ingest {ingest.cas_ingest_id}: {features} features, {written} cells streamed with "
        f"COPY in {seconds:.2f} s ({written / seconds:,.0f} rows/s)"
    )
    out(f"count_cells: {cells.count_cells(conn, cas_ingest_id=ingest.cas_ingest_id)}")
    first = cell_ids[0]
    wanted = [first + 16, first + 4_241, first + 2, 2**31 - 1, first + 16, first + 12_000]
    found = cells.get_cell_metadata_by_ids(
        conn, cell_ids=wanted, columns=["cell_type", "tissue", "total_mrna_umis"]
    )
    out(
        f"get_cell_metadata_by_ids({wanted}) -> input order kept, repeats repeated, "
        "missing ids left out:"
    )
    out(
        format_table(
            ["cas_cell_index", "cell_type", "tissue", "total_mrna_umis"],
            [(c.cas_cell_index, *c.values.values()) for c in found],
        )
    )
    cells.delete_ingest(conn, cas_ingest_id=ingest.cas_ingest_id)
    out(
        f"delete_ingest: cells left {cells.count_cells(conn, cas_ingest_id=ingest.cas_ingest_id)}"
        ", features left "
        f"{len(cells.list_features_for_ingest(conn, cas_ingest_id=ingest.cas_ingest_id))}"
    )
    try:
        cells.get_ingest(conn, cas_ingest_id=ingest.cas_ingest_id)
    except NotFound as error:
        out(f"get_ingest afterwards: NotFound ({error})")


def database_state(connection: Connection) -> str:
    """Return "empty" (no casdb table holds a row and no other table exists), "data", or
    "other schema" (tables that are not casdb's, or a revision other than casdb's head)."""
    revisions = migrate.current_revisions(connection)
    if not revisions:
        return "other schema" if inspect(connection).get_table_names() else "empty"
    if revisions != (migrate.head_revision(),):
        return "other schema"
    return "empty" if is_empty(connection) else "data"


def run_demo(
    engine: Engine,
    *,
    out: Out = print,
    keep: bool = False,
    now: dt.datetime | None = None,
    seed: int = 7,
    tag: str = "",
    reader: Engine | None = None,
) -> None:
    """Fill sample data and run every area's operations on ``engine``, printing the results.

    Everything happens in one transaction, rolled back at the end unless ``keep``. ``tag``
    is appended to every unique name (emails, models, the ingest), so that the demo can run
    again beside the rows an earlier ``keep`` left. With a ``reader`` (a read replica, see
    ``casdb.create_engines``) it then reads the committed rows there, after
    ``wait_for_replica``, and shows a write on it refused.
    """
    now = now or dt.datetime.now(dt.UTC)
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    with engine.connect() as conn:
        conn.begin()
        try:
            people = _users_keys_activity(conn, out, now, rng, tag)
            _quotas(conn, out, people, now)
            _models(conn, out, tag)
            _cells(conn, out, rng, tag)
        except BaseException:
            conn.rollback()
            raise
        if keep:
            conn.commit()
            out("\nkept the sample data (--keep)")
        else:
            conn.rollback()
            out("\nrolled back: the database is as the demo found it (use --keep to keep it)")
    if reader is not None:
        _read_on_the_reader(engine, reader, out, tag)


def _read_on_the_reader(writer: Engine, reader: Engine, out: Out, tag: str) -> None:
    _section(out, "read replica")
    with writer.connect() as w, reader.connect() as r:
        waited = wait_for_replica(w, r, timeout=30)
        standby = r.execute(select(func.pg_is_in_recovery())).scalar_one()
        where = reader.url.render_as_string(hide_password=True)
        out(
            f"reader {where}: "
            + (
                "a streaming standby (in recovery)"
                if standby
                else "the writer's server (no replica configured)"
            )
            + f"; wait_for_replica waited {waited * 1000:.1f} ms"
        )
        out(
            f"list_users on the reader: {len(users.list_users(r))} committed users; "
            f"list_models: {len(ml_models.list_models(r))} models"
        )
        try:
            users.create_user(r, email=f"misrouted{tag}@example.org", username="misrouted")
        except DatabaseError as error:
            out(f"create_user on the reader is refused: {error}")
        r.rollback()
