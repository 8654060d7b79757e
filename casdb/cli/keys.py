"""``casdb keys``: API keys of users; ``create`` issues a token and prints it once."""

from __future__ import annotations

import datetime as dt

import click

from casdb.cli._app import State
from casdb.cli._shared import (
    command_options,
    connection,
    emit,
    emit_json,
    emit_table,
    find_user,
    note,
    out,
    transaction,
)
from casdb.cli.users import WHEN
from casdb.queries import keys


@click.group(name="keys")
def keys_group() -> None:
    """API keys: create (issues a token), list, deactivate."""


@keys_group.command(
    epilog="\b\nexample:\n  casdb keys create --user ada@example.org --expires 2027-06-30"
)
@click.option("--user", "user", required=True, metavar="USER", help="email (or id) of the user")
@click.option(
    "--expires",
    type=WHEN,
    default=None,
    help="expiry date or time, UTC unless given (default: in 180 days)",
)
@command_options
def create(state: State, user: str, expires: dt.datetime | None, as_json: bool) -> None:
    """Issue an API token <key_locator>.<secret> and print it, once.

    Only the Argon2id hash of the secret is stored: the token cannot be shown again.
    """
    with transaction(state) as (_, conn):
        owner = find_user(conn, user)
        issued = keys.issue_user_token(conn, user_id=owner.id, expires=expires)
    if as_json:
        emit_json({"token": issued.token, "key": issued.key, "email": owner.email})
        return
    out(issued.token)
    note(
        f"issued key {issued.key.key_locator} for {owner.email}, expires "
        f"{issued.key.expires:%Y-%m-%d %H:%M} UTC; the token above is shown only this once"
    )


@keys_group.command(name="list")
@click.option("--user", "user", required=True, metavar="USER", help="email (or id) of the user")
@command_options
def list_(state: State, user: str, as_json: bool) -> None:
    """List a user's keys (never their hashes), ordered by id."""
    with connection(state) as (_, conn):
        found = keys.list_user_keys(conn, user_id=find_user(conn, user).id)
    emit_table(
        found,
        as_json,
        ["id", "key locator", "active", "created", "expires"],
        [(k.id, k.key_locator, k.active, k.created_date, k.expires) for k in found],
    )


@keys_group.command()
@click.argument("key_locator", metavar="KEY_LOCATOR")
@command_options
def deactivate(state: State, key_locator: str, as_json: bool) -> None:
    """Deactivate a key: its token stops working."""
    with transaction(state) as (_, conn):
        key = keys.deactivate_user_key(conn, key_locator=key_locator)
    emit(key, as_json, f"deactivated key {key.key_locator} of user {key.user_id}")
