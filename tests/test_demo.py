"""The demo runs every area end to end and leaves the database as it found it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from casdb.demo import format_table, is_empty, run_demo


def test_demo_runs_every_area_and_rolls_back(engine: Engine) -> None:
    lines: list[str] = []
    run_demo(engine, out=lines.append, now=dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC))
    text = "\n".join(lines)
    for section in (
        "== users",
        "== API keys",
        "== activity",
        "== usage and quotas",
        "== ML models",
        "== cells",
    ):
        assert section in text
    assert "default model: cas-gex-v2" in text
    assert "count_cells: 20000" in text
    assert "$argon2id$" not in text
    with engine.connect() as conn:
        assert is_empty(conn)


def test_format_table() -> None:
    table = format_table(["a", "long header"], [(1, None), ("xyz", dt.datetime(2024, 1, 2))])
    assert table.splitlines() == [
        "a    long header",
        "---  --------------------",
        "1    -",
        "xyz  2024-01-02 00:00 UTC",
    ]
