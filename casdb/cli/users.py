"""``casdb users``: the operator's view of CAS users (casdb.queries.users and quotas)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import click

from casdb.cli._app import State
from casdb.cli._shared import (
    command_options,
    connection,
    emit,
    emit_table,
    find_user,
    transaction,
)
from casdb.queries import quotas, users

USER = click.argument("user", metavar="USER")
"""A user is named by email, or by id when it is a number."""


class _Quota(click.ParamType[int | None]):
    """A non-negative cell count, or ``unlimited`` (None)."""

    name = "N|unlimited"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | None:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower().replace(",", "").replace("_", "")
        if text in ("unlimited", "none"):
            return None
        if text.isdigit():
            return int(text)
        self.fail(f"{value!r} is not a number of cells or 'unlimited'", param, ctx)


class _When(click.ParamType[dt.datetime]):
    """An ISO date or date-time; naive ones are UTC."""

    name = "DATETIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD[THH:MM[:SS]][+HH:MM])", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


QUOTA = _Quota()
WHEN = _When()
USER_HEADERS = [
    "id",
    "email",
    "username",
    "active",
    "admin",
    "weekly quota",
    "lifetime quota",
    "increased",
    "signed up",
]


def _row(user: users.User) -> tuple[object, ...]:
    lifetime = "unlimited" if user.lifetime_cell_quota is None else user.lifetime_cell_quota
    return (
        user.id,
        user.email,
        user.username,
        user.active,
        user.is_admin,
        user.cell_quota,
        lifetime,
        user.quota_increased,
        user.created_at,
    )


@click.group(name="users")
def users_group() -> None:
    """Users: list, show, create, flags and quotas, usage.

    USER is an email, or an id when it is a number.
    """


@users_group.command(name="list")
@command_options
def list_(state: State, as_json: bool) -> None:
    """List every user, ordered by id."""
    with connection(state) as (_, conn):
        found = users.list_users(conn)
    emit_table(found, as_json, USER_HEADERS, [_row(user) for user in found])


@users_group.command()
@USER
@command_options
def show(state: State, user: str, as_json: bool) -> None:
    """Show one user."""
    with connection(state) as (_, conn):
        emit(find_user(conn, user), as_json)


@users_group.command(
    epilog="\b\nexample:\n  casdb users create --email ada@example.org "
    "--username 'Ada Lovelace' --weekly-quota 200000"
)
@click.option("--email", required=True, help="the user's email (unique)")
@click.option("--username", required=True, help="the name shown to people")
@click.option("--admin", is_flag=True, help="an administrator")
@click.option("--weekly-quota", type=int, default=None, help="cells per week (default 100,000)")
@click.option(
    "--lifetime-quota",
    type=QUOTA,
    default="50000",
    show_default=True,
    help="cells in all, or 'unlimited'",
)
@command_options
def create(
    state: State,
    email: str,
    username: str,
    admin: bool,
    weekly_quota: int | None,
    lifetime_quota: int | None,
    as_json: bool,
) -> None:
    """Create a user."""
    with transaction(state) as (_, conn):
        made = users.create_user(
            conn,
            email=email,
            username=username,
            is_admin=admin,
            cell_quota=users.UNSET if weekly_quota is None else weekly_quota,
            lifetime_cell_quota=lifetime_quota,
        )
    emit(made, as_json)


def _setter(
    name: str,
    operation: Callable[..., users.User],
    keyword: str,
    kind: click.ParamType[Any],
    metavar: str,
    help_: str,
    epilog: str | None = None,
) -> None:
    """``casdb users NAME USER VALUE``: ``operation(user_id=..., keyword=VALUE)``, shown."""

    @users_group.command(name=name, help=help_, epilog=epilog)
    @USER
    @click.argument(keyword, type=kind, metavar=metavar)
    @command_options
    def command(state: State, user: str, as_json: bool, **value: Any) -> None:
        with transaction(state) as (_, conn):
            changed = operation(conn, user_id=find_user(conn, user).id, **value)
        emit(changed, as_json)


_setter(
    "set-active",
    users.set_user_active,
    "active",
    click.BOOL,
    "true|false",
    "Allow (true) or stop (false) a user's use of the service.",
    epilog="\b\nexample:\n  casdb users set-active ada@example.org false",
)
_setter(
    "set-admin",
    users.set_admin,
    "is_admin",
    click.BOOL,
    "true|false",
    "Grant (true) or revoke (false) admin rights.",
)
_setter(
    "set-weekly-quota",
    users.set_weekly_cell_quota,
    "cell_quota",
    click.IntRange(min=0),
    "N",
    "Set the user's weekly cell quota to N.",
)


@users_group.command(name="increase-lifetime-quota")
@USER
@click.argument("cells", type=QUOTA, metavar="N|unlimited")
@command_options
def increase_lifetime_quota(state: State, user: str, cells: int | None, as_json: bool) -> None:
    """Raise the lifetime quota once (to max(current, N); never lowers it; a no-op when
    already increased)."""
    with transaction(state) as (_, conn):
        before = find_user(conn, user)
        after = users.increase_lifetime_quota(conn, user_id=before.id, new_quota=cells)
    if before.quota_increased:
        line = (
            f"unchanged: the lifetime quota of {after.email} was increased before "
            f"({after.lifetime_cell_quota or 'unlimited'})"
        )
    else:
        line = (
            f"lifetime quota of {after.email}: {before.lifetime_cell_quota or 'unlimited'}"
            f" -> {after.lifetime_cell_quota or 'unlimited'}"
        )
    emit(after, as_json, line)


@users_group.command()
@USER
@command_options
def usage(state: State, user: str, as_json: bool) -> None:
    """All-time requests and cells of a user (legacy counters plus succeeded activity)."""
    with connection(state) as (_, conn):
        emit(users.get_user_usage(conn, user_id=find_user(conn, user).id), as_json)


@users_group.command()
@USER
@click.option("--at", "moment", type=WHEN, default=None, help="at this time (default now)")
@command_options
def quota(state: State, user: str, moment: dt.datetime | None, as_json: bool) -> None:
    """Where a user stands against the weekly and lifetime quotas."""
    now = moment or dt.datetime.now(dt.UTC)
    with connection(state) as (_, conn):
        emit(quotas.get_user_quota(conn, user_id=find_user(conn, user).id, now=now), as_json)
