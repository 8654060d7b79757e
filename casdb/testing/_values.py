"""The building blocks of casdb.testing.strategies: column values, valid and refused."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

from hypothesis import strategies as st

from casdb.queries.keys import MAX_KEY_HASH_LENGTH
from casdb.tables import UserActivityEvent

Strategy = st.SearchStrategy

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
UTC = dt.UTC

# -- building blocks -----------------------------------------------------------------------

# Any Unicode PostgreSQL can store in text: no NUL, no lone surrogates.
characters = st.characters(codec="utf-8", exclude_characters="\x00")

# Strings that COPY's text format must escape, or that look like its markers or like SQL.
TRICKY_TEXT = (
    "",
    "\\N",
    "\\",
    "\\\\N",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "a\tb\nc\\d",
    "\\.",
    '"q"',
    "'",
    "NULL",
    "\\x41",
    "é ü 漢字 🧬",
    "\u2028",
    "\x01\x7f",
    "'; drop table users_user; --",
)


def varchar(max_length: int = 255, *, min_size: int = 0) -> Strategy[str]:
    """Strings that fit a varchar(max_length) column: the tricky ones, short, and full length."""
    tricky = [text for text in TRICKY_TEXT if min_size <= len(text) <= max_length]
    return st.one_of(
        st.sampled_from(tricky) if tricky else st.nothing(),
        st.text(characters, min_size=min_size, max_size=min(max_length, 30)),
        st.text(characters, min_size=max_length, max_size=max_length),
        st.text(st.sampled_from("\\\t\n\rxé"), min_size=min_size, max_size=max_length),
    )


text255 = varchar(255)
nonempty255 = varchar(255, min_size=1)
text511 = varchar(511)
int32 = st.sampled_from([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX]) | (
    st.integers(INT32_MIN, INT32_MAX)
)
# Non-negative int32: counters and quotas.
counts = st.integers(min_value=0, max_value=INT32_MAX) | st.sampled_from([0, 1, INT32_MAX])
# Positive int32: dimensions, neighbour counts.
positive_int32 = st.sampled_from([1, 2, INT32_MAX - 1, INT32_MAX]) | st.integers(1, INT32_MAX)

_email_chars = st.characters(
    codec="utf-8", exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"], exclude_characters="@\x85"
).filter(lambda ch: not ch.isspace())
# 1-255 characters, one @ with text on both sides, no whitespace or control characters.
emails = st.tuples(
    st.text(_email_chars, min_size=1, max_size=120), st.text(_email_chars, min_size=1, max_size=120)
).map(lambda parts: f"{parts[0]}@{parts[1]}") | st.text(
    _email_chars, min_size=253, max_size=253
).map(lambda s: f"a@{s}")

# Aware UTC times (what casdb returns); ``any_aware_times`` adds other offsets and years.
aware_times = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC)
)
# Fixed offsets (no tz database needed), to the minute, within +-14 hours.
_offsets = st.integers(-14 * 60, 14 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
any_aware_times = st.datetimes(
    min_value=dt.datetime(2, 1, 1),
    max_value=dt.datetime(9998, 12, 31),
    timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=-7, minutes=-30))]) | _offsets,
)

_json_text = st.sampled_from(TRICKY_TEXT) | st.text(characters, max_size=20)
# jsonb stores numbers as numeric: floats within +-1e15 come back equal (larger ones may
# return as the decimal the float printed as, which is not the float).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | _json_text
    | st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False)
)
json_documents = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_json_text, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(_json_text, json_documents, max_size=5)

key_hashes = st.text(characters, min_size=1, max_size=200).map(lambda s: "$argon2id$" + s) | (
    st.text(characters, min_size=MAX_KEY_HASH_LENGTH, max_size=MAX_KEY_HASH_LENGTH)
)
events = st.sampled_from(UserActivityEvent) | st.sampled_from([e.name for e in UserActivityEvent])
ids = st.integers(1, INT32_MAX)


# -- values casdb refuses (InvalidInput, before any SQL) -------------------------------------

_not_str = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
    st.lists(st.text(max_size=3), max_size=2),
    st.uuids(),
)


def refused_text(max_length: int = 255, *, allow_empty: bool = False) -> Strategy[object]:
    """Values a text argument refuses: not a str (None aside: optional arguments take it),
    too long, NUL, a lone surrogate, and "" unless ``allow_empty``."""
    options = [
        _not_str.filter(lambda value: value is not None),
        st.text(characters, min_size=max_length + 1, max_size=max_length + 20),
        st.tuples(st.text(characters, max_size=10), st.text(characters, max_size=10)).map(
            lambda parts: f"{parts[0]}\x00{parts[1]}"
        ),
        st.text(characters, max_size=10).map(lambda text: text + "\ud800"),
    ]
    if not allow_empty:
        options.append(st.just(""))
    return st.one_of(options)


# Not one @ with text on both sides, whitespace or control characters, too long, not a str.
refused_emails: Strategy[object] = st.one_of(
    refused_text(255),
    st.sampled_from(
        [
            "plain",
            "@cas.org",
            "user@",
            "a@b@c",
            "a b@cas.org",
            "a@cas.org\n",
            "tab\t@cas.org",
            "a@cas\x7f.org",
            "\u2003a@cas.org",
            "a@\x85cas.org",
        ]
    ),
    emails.map(lambda email: email.replace("@", "@@", 1)),
    st.text(_email_chars, min_size=254, max_size=300).map(lambda s: f"a@{s}"),
)


def refused_ints(minimum: int = INT32_MIN, maximum: int = INT32_MAX) -> Strategy[object]:
    """Values an integer argument in [minimum, maximum] refuses: out of range, bools, floats,
    digit strings (None aside: optional arguments take it)."""
    return st.one_of(
        st.integers(max_value=minimum - 1),
        st.integers(min_value=maximum + 1),
        st.sampled_from([minimum - 1, maximum + 1, 2**63, -(2**63) - 1, 10**100]),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(minimum, maximum).map(str),
    )


# Naive datetimes (no zone), dates, strings, numbers: refused by every time argument.
refused_times: Strategy[object] = st.one_of(
    st.datetimes(),
    st.dates(),
    st.datetimes(timezones=st.just(UTC)).map(lambda when: when.isoformat()),
    st.integers(),
    st.floats(),
)

# NaN and infinities, non-string keys, NUL, Python objects JSON has no form for, too deep.
refused_json: Strategy[object] = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.dictionaries(st.integers(), json_scalars, min_size=1, max_size=3),
    st.just({"key": "nul\x00inside"}),
    st.just({"nul\x00key": 1}),
    st.just([1, math.nan]),
    st.sets(st.integers(), max_size=3),
    st.binary(max_size=5),
    st.datetimes(),
    st.just(object()),
    st.integers(101, 150).map(lambda depth: _nested(depth)),
)


def _nested(depth: int) -> Any:
    document: Any = 1
    for _ in range(depth):
        document = [document]
    return document


# Locators that are not UUIDs: refused by every key_locator argument.
refused_uuids: Strategy[object] = st.one_of(
    st.text(max_size=40).filter(lambda text: not _is_uuid(text)),
    st.integers(),
    st.binary(min_size=16, max_size=16),
)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# Anything at all, for "never a driver exception, never a hang" tests: valid or not.
hostile: Strategy[object] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, -1, 10**100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(st.sampled_from("\x00\t\n\\'\"%;")),
    st.sampled_from(TRICKY_TEXT),
    st.just("x" * (10 * 1024 * 1024)),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.uuids(),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.sampled_from(["SUCCEEDED", "succeeded", "id", "cell_type; --"]),
)
