"""Operator commands (users, keys, models) through click's CliRunner, on a real database."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from sqlalchemy import URL, Engine

from casdb.cli import cli
from casdb.queries import keys, ml_models, users


@pytest.fixture
def db(make_database: Callable[..., URL], template_database: str) -> Iterator[Engine]:
    engine = sqlalchemy.create_engine(make_database(template=template_database))
    yield engine
    engine.dispose()


@pytest.fixture
def casdb(db: Engine) -> Callable[..., Result]:
    runner = CliRunner()
    url = db.url.render_as_string(hide_password=False)

    def invoke(*argv: str) -> Result:
        return runner.invoke(cli, ["--url", url, *argv])

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.stdout


def data(result: Result) -> Any:
    return json.loads(ok(result))


def failure(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("casdb: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_users_commands(casdb: Callable[..., Result], db: Engine) -> None:
    made = data(
        casdb(
            "users",
            "create",
            "--email",
            "ada@example.org",
            "--username",
            "Ada",
            "--weekly-quota",
            "2000",
            "--lifetime-quota",
            "5000",
            "--json",
        )
    )
    assert (made["email"], made["cell_quota"], made["lifetime_cell_quota"]) == (
        "ada@example.org",
        2000,
        5000,
    )
    assert "bo@example.org" in ok(
        casdb(
            "users",
            "create",
            "--email",
            "bo@example.org",
            "--username",
            "Bo",
            "--admin",
            "--lifetime-quota",
            "unlimited",
        )
    )
    assert "already exists" in failure(
        casdb("users", "create", "--email", "ada@example.org", "--username", "Again")
    )
    listed = data(casdb("users", "list", "--json"))
    assert [(u["email"], u["is_admin"], u["lifetime_cell_quota"]) for u in listed] == [
        ("ada@example.org", False, 5000),
        ("bo@example.org", True, None),
    ]
    text = ok(casdb("users", "list"))
    assert "ada@example.org" in text and "unlimited" in text
    assert data(casdb("users", "show", str(made["id"]), "--json")) == made
    assert (
        data(casdb("users", "set-active", "ada@example.org", "false", "--json"))["active"] is False
    )
    assert data(casdb("users", "set-admin", "ada@example.org", "true", "--json"))["is_admin"]
    assert (
        data(casdb("users", "set-weekly-quota", "ada@example.org", "12345", "--json"))["cell_quota"]
        == 12345
    )
    assert "5000 -> 8000" in ok(
        casdb("users", "increase-lifetime-quota", "ada@example.org", "8000")
    )
    assert "unchanged" in ok(casdb("users", "increase-lifetime-quota", "ada@example.org", "90000"))
    with db.connect() as conn:
        user = users.get_user_by_email(conn, email="ada@example.org")
    assert (
        user.active,
        user.is_admin,
        user.cell_quota,
        user.lifetime_cell_quota,
        user.quota_increased,
    ) == (False, True, 12345, 8000, True)
    assert data(casdb("users", "usage", "ada@example.org", "--json")) == {
        "user_id": user.id,
        "total_cells_processed": 0,
        "total_requests_processed": 0,
    }
    quota = data(casdb("users", "quota", "ada@example.org", "--at", "2026-12-01T12:00", "--json"))
    assert quota["remaining_weekly_quota"] == 8000 and quota["weekly_quota"] == 12345
    assert dt.datetime.fromisoformat(quota["quota_reset_date"]) > dt.datetime(
        2026, 12, 1, 12, tzinfo=dt.UTC
    )
    assert "no user with this email" in failure(casdb("users", "show", "nobody@example.org"))
    assert "not a valid integer" in failure(
        casdb("users", "set-weekly-quota", "ada@example.org", "lots"), code=2
    )
    assert "not a valid boolean" in failure(
        casdb("users", "set-active", "ada@example.org", "perhaps"), code=2
    )


def test_keys_create_prints_a_token_the_cas_api_accepts(
    casdb: Callable[..., Result], db: Engine
) -> None:
    ok(casdb("users", "create", "--email", "k@example.org", "--username", "K"))
    result = casdb("keys", "create", "--user", "k@example.org", "--expires", "2030-01-31")
    token = ok(result).strip()
    assert "shown only this once" in result.stderr and token not in result.stderr
    locator, secret = token.split(".")
    with db.connect() as conn:
        stored = keys.get_key_for_authentication(conn, key_locator=locator)
        assert PasswordHasher().verify(stored.key_hash, secret)
        assert stored.key.expires == dt.datetime(2030, 1, 31, tzinfo=dt.UTC)
        assert keys.authenticate_token(conn, token=token).email == "k@example.org"
    listed = data(casdb("keys", "list", "--user", "k@example.org", "--json"))
    assert [(k["key_locator"], k["active"]) for k in listed] == [(locator, True)]
    assert "key_hash" not in json.dumps(listed) and secret not in ok(
        casdb("keys", "list", "--user", "k@example.org")
    )
    issued = data(casdb("keys", "create", "--user", "k@example.org", "--json"))
    assert issued["token"].startswith(issued["key"]["key_locator"] + ".")
    assert f"deactivated key {locator}" in ok(casdb("keys", "deactivate", locator))
    with db.connect() as conn:
        assert keys.list_user_keys(conn, user_id=listed[0]["user_id"])[0].active is False
    assert "no key" in failure(casdb("keys", "deactivate", "5d0c5b7e-0000-4000-8000-000000000000"))
    assert "must be timezone-aware" not in failure(
        casdb("keys", "create", "--user", "k@example.org", "--expires", "soon"), code=2
    )


def test_models_commands(casdb: Callable[..., Result], db: Engine) -> None:
    made = data(
        casdb(
            "models",
            "create",
            "cas-v1",
            "--file-path",
            "gs://m/v1.pt",
            "--dimension",
            "256",
            "--public",
            "--default",
            "--json",
        )
    )
    assert (made["is_default_model"], made["admin_use_only"]) == (True, False)
    ok(
        casdb(
            "models",
            "create",
            "cas-v2",
            "--file-path",
            "gs://m/v2.pt",
            "--dimension",
            "512",
            "--description",
            "second",
        )
    )
    index = data(
        casdb(
            "models",
            "add-index",
            "cas-v2",
            "v2-us",
            "--endpoint-id",
            "e/1",
            "--num-neighbors",
            "50",
            "--deployed-index-id",
            "v2_us",
            "--json",
        )
    )
    assert (index["embedding_dimension"], index["is_grpc"]) == (512, True)
    ok(
        casdb(
            "models",
            "add-index",
            "cas-v2",
            "v2-eu",
            "--endpoint-id",
            "e/2",
            "--num-neighbors",
            "50",
            "--no-grpc",
        )
    )
    assert "index_name" in failure(
        casdb(
            "models", "add-index", "cas-v2", "v2-eu", "--endpoint-id", "e/3", "--num-neighbors", "5"
        )
    )
    assert "default model: cas-v2" in ok(casdb("models", "set-default", "cas-v2"))
    shown = data(casdb("models", "show", "cas-v2", "--json"))
    assert [i["index_name"] for i in shown["indexes"]] == ["v2-us", "v2-eu"]
    assert shown["is_default_model"] is True
    text = ok(casdb("models", "show", "cas-v2"))
    assert "v2-eu" in text and "second" in text
    assert [m["model_name"] for m in data(casdb("models", "list", "--public-only", "--json"))] == [
        "cas-v1"
    ]
    with db.connect() as conn:
        assert ml_models.get_default_model(conn).model_name == "cas-v2"
    assert "no model" in failure(casdb("models", "set-default", "nope"))
    assert "already exists" in failure(
        casdb("models", "create", "cas-v1", "--file-path", "x", "--dimension", "3")
    )
