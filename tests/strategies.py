"""The Hypothesis strategies of the test modules: casdb's own, from casdb.testing.strategies."""

from __future__ import annotations

from casdb.testing import statements_sent
from casdb.testing.strategies import (
    INT32_MAX,
    aware_times,
    characters,
    counts,
    emails,
    nonempty255,
    text255,
)

__all__ = [
    "INT32_MAX",
    "aware_times",
    "characters",
    "counts",
    "emails",
    "nonempty255",
    "statements_sent",
    "text255",
]
