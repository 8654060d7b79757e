"""``casdb users``: the operator's view of CAS users (casdb.queries.users and quotas)."""

from __future__ import annotations

import datetime as dt

import click

from casdb.cli._app import State
from casdb.cli._shared import (
    connect,
    database,
    database_options,
    emit_json,
    fields_text,
    find_user,
    json_option,
    out,
    pass_state,
    table,
    transaction,
)
from casdb.queries import quotas, users

USER = click.argument("user", metavar="USER")
"""A user is named by email, or by id when it is a number."""


class _Quota(click.ParamType[int | None]):
    """A non-negative cell count, or ``unlimited`` (None)."""

    name = "N|unlimited"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:
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

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD[THH:MM[:SS]][+HH:MM])", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


QUOTA = _Quota()
WHEN = _When()
USER_HEADERS = ["id", "email", "username", "active", "admin", "weekly quota",
                "lifetime quota", "increased", "signed up"]


def _row(user: users.User) -> tuple[object, ...]:
    lifetime = "unlimited" if user.lifetime_cell_quota is None else user.lifetime_cell_quota
    return (user.id, user.email, user.username, user.active, user.is_admin, user.cell_quota,
            lifetime, user.quota_increased, user.created_at)


def _show(record: object, as_json: bool) -> None:
    if as_json:
        emit_json(record)
    else:
        fields_text(record)


@click.group(name="users")
def users_group() -> None:
    """Users: list, show, create, flags and quotas, usage.

    USER is an email, or an id when it is a number.
    """


@users_group.command(name="list")
@json_option
@database_options
@pass_state
def list_(state: State, as_json: bool) -> None:
    """List every user, ordered by id."""
    with database(state) as engine, connect(engine) as conn:
        found = users.list_users(conn)
    if as_json:
        emit_json(found)
    else:
        table(USER_HEADERS, [_row(user) for user in found])


@users_group.command()
@USER
@json_option
@database_options
@pass_state
def show(state: State, user: str, as_json: bool) -> None:
    """Show one user."""
    with database(state) as engine, connect(engine) as conn:
        _show(find_user(conn, user), as_json)


@users_group.command(epilog="\b\nexample:\n  casdb users create --email ada@example.org "
                     "--username 'Ada Lovelace' --weekly-quota 200000")
@click.option("--email", required=True, help="the user's email (unique)")
@click.option("--username", required=True, help="the name shown to people")
@click.option("--admin", is_flag=True, help="an administrator")
@click.option("--weekly-quota", type=int, default=None, help="cells per week (default 100,000)")
@click.option("--lifetime-quota", type=QUOTA, default="50000", show_default=True,
              help="cells in all, or 'unlimited'")
@json_option
@database_options
@pass_state
def create(state: State, email: str, username: str, admin: bool, weekly_quota: int | None,
           lifetime_quota: int | None, as_json: bool) -> None:
    """Create a user."""
    with transaction(state) as (_, conn):
        made = users.create_user(
            conn, email=email, username=username, is_admin=admin,
            cell_quota=users.UNSET if weekly_quota is None else weekly_quota,
            lifetime_cell_quota=lifetime_quota,
        )
    _show(made, as_json)


@users_group.command(name="set-active", epilog="\b\nexample:\n  casdb users set-active "
                     "ada@example.org false")
@USER
@click.argument("active", type=click.BOOL, metavar="true|false")
@json_option
@database_options
@pass_state
def set_active(state: State, user: str, active: bool, as_json: bool) -> None:
    """Allow (true) or stop (false) a user's use of the service."""
    with transaction(state) as (_, conn):
        changed = users.set_user_active(conn, user_id=find_user(conn, user).id, active=active)
    _show(changed, as_json)


@users_group.command(name="set-admin")
@USER
@click.argument("is_admin", type=click.BOOL, metavar="true|false")
@json_option
@database_options
@pass_state
def set_admin(state: State, user: str, is_admin: bool, as_json: bool) -> None:
    """Grant (true) or revoke (false) admin rights."""
    with transaction(state) as (_, conn):
        changed = users.set_admin(conn, user_id=find_user(conn, user).id, is_admin=is_admin)
    _show(changed, as_json)


@users_group.command(name="set-weekly-quota")
@USER
@click.argument("cells", type=click.IntRange(min=0), metavar="N")
@json_option
@database_options
@pass_state
def set_weekly_quota(state: State, user: str, cells: int, as_json: bool) -> None:
    """Set the user's weekly cell quota to N."""
    with transaction(state) as (_, conn):
        changed = users.set_weekly_cell_quota(
            conn, user_id=find_user(conn, user).id, cell_quota=cells
        )
    _show(changed, as_json)


@users_group.command(name="increase-lifetime-quota")
@USER
@click.argument("cells", type=QUOTA, metavar="N|unlimited")
@json_option
@database_options
@pass_state
def increase_lifetime_quota(state: State, user: str, cells: int | None, as_json: bool) -> None:
    """Raise the lifetime quota once (to max(current, N); never lowers it; a no-op when
    already increased)."""
    with transaction(state) as (_, conn):
        before = find_user(conn, user)
        after = users.increase_lifetime_quota(conn, user_id=before.id, new_quota=cells)
    if as_json:
        emit_json(after)
    elif before.quota_increased:
        out(f"unchanged: the lifetime quota of {after.email} was increased before "
            f"({after.lifetime_cell_quota or 'unlimited'})")
    else:
        out(f"lifetime quota of {after.email}: {before.lifetime_cell_quota or 'unlimited'} -> "
            f"{after.lifetime_cell_quota or 'unlimited'}")


@users_group.command()
@USER
@json_option
@database_options
@pass_state
def usage(state: State, user: str, as_json: bool) -> None:
    """All-time requests and cells of a user (legacy counters plus succeeded activity)."""
    with database(state) as engine, connect(engine) as conn:
        found = users.get_user_usage(conn, user_id=find_user(conn, user).id)
    _show(found, as_json)


@users_group.command()
@USER
@click.option("--at", "moment", type=WHEN, default=None, help="at this time (default now)")
@json_option
@database_options
@pass_state
def quota(state: State, user: str, moment: dt.datetime | None, as_json: bool) -> None:
    """Where a user stands against the weekly and lifetime quotas."""
    now = moment or dt.datetime.now(dt.UTC)
    with database(state) as engine, connect(engine) as conn:
        found = quotas.get_user_quota(conn, user_id=find_user(conn, user).id, now=now)
    _show(found, as_json)
