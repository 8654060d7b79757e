"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

from hypothesis import strategies as st
from sqlalchemy import Connection, event

INT32_MAX = 2**31 - 1

# Any Unicode PostgreSQL can store in text: no NUL, no lone surrogates.
characters = st.characters(codec="utf-8", exclude_characters="\x00")
text255 = st.text(characters, max_size=255)
nonempty255 = st.text(characters, min_size=1, max_size=255)
counts = st.integers(min_value=0, max_value=INT32_MAX) | st.sampled_from([0, 1, INT32_MAX])

_email_chars = st.characters(
    codec="utf-8", exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"], exclude_characters="@\x85"
).filter(lambda ch: not ch.isspace())
emails = st.tuples(
    st.text(_email_chars, min_size=1, max_size=120), st.text(_email_chars, min_size=1, max_size=120)
).map(lambda parts: f"{parts[0]}@{parts[1]}") | st.text(_email_chars, min_size=253,
                                                        max_size=253).map(lambda s: f"a@{s}"[:255])

aware_times = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
)


@contextlib.contextmanager
def statements_sent(connection: Connection) -> Iterator[list[str]]:
    """Collect every SQL statement the connection sends inside the block."""
    sent: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        sent.append(statement)

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(connection, "before_cursor_execute", record)
