"""Progress on stderr: a rich bar on a terminal, plain periodic lines otherwise, or nothing.

The ingest bar shows rows, bytes (CSV/TSV, by file position), rate and ETA; the migration
bar shows steps and ETA, fed by alembic's "Running upgrade a -> b" log records.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

import attrs
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from casdb.ingest import IngestProgress

PLAIN_EVERY_S = 2.0


def _on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
    return f"{count:,.1f} GB"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -:--:--"
    seconds = int(seconds)
    return f"ETA {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _RowsColumn(ProgressColumn):
    """Rows written and rows per second (the task's own unit may be bytes)."""

    def render(self, task: Task) -> Text:
        rows = int(task.fields.get("rows", 0))
        elapsed = task.elapsed or 0.0
        rate = rows / elapsed if elapsed > 0 else 0.0
        return Text(f"{rows:,} rows {rate:,.0f} rows/s", style="progress.data.speed")


class _BytesColumn(ProgressColumn):
    """Bytes of the file read, of its size, and per second (for formats read by bytes)."""

    def render(self, task: Task) -> Text:
        total = task.fields.get("total_bytes")
        if total is None:
            return Text("")
        done = int(task.fields.get("bytes_read", 0))
        elapsed = task.elapsed or 0.0
        rate = f" {_size(done / elapsed)}/s" if elapsed > 0 else ""
        return Text(f"{_size(done)} of {_size(total)}{rate}", style="progress.download")


@attrs.define
class IngestBar:
    """Feeds ingest progress to a rich bar, plain lines or nothing."""

    quiet: bool
    terminal: bool = attrs.field(factory=_on_terminal)
    _progress: Progress | None = None
    _tasks: dict[str, TaskID] = attrs.field(factory=dict)
    _started: dict[str, float] = attrs.field(factory=dict)
    _last_line: float = 0.0

    @contextlib.contextmanager
    def shown(self) -> Iterator[IngestBar]:
        if self.quiet or not self.terminal:
            yield self
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            _RowsColumn(),
            _BytesColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        with self._progress:
            yield self

    def __call__(self, update: IngestProgress) -> None:
        if self.quiet:
            return
        by_bytes = update.total_bytes is not None and update.total_rows is None
        done = update.bytes_read if by_bytes else update.rows
        total = update.total_bytes if by_bytes else update.total_rows
        if self._progress is not None:
            self._bar(update, done, total)
        else:
            self._line(update, done, total, by_bytes)

    def _bar(self, update: IngestProgress, done: int, total: int | None) -> None:
        assert self._progress is not None
        task = self._tasks.get(update.table)
        if task is None:
            task = self._progress.add_task(update.table, total=total)
            self._tasks[update.table] = task
        self._progress.update(
            task,
            completed=done,
            total=total,
            rows=update.rows,
            bytes_read=update.bytes_read,
            total_bytes=update.total_bytes,
        )

    def _line(self, update: IngestProgress, done: int, total: int | None, by_bytes: bool) -> None:
        now = time.monotonic()
        started = self._started.setdefault(update.table, now)
        finished = total is not None and done >= total
        if not finished and now - self._last_line < PLAIN_EVERY_S:
            return
        self._last_line = now
        elapsed = max(now - started, 1e-9)
        share = f"{100 * done / total:5.1f}%" if total else "  ?  %"
        eta = (total - done) / (done / elapsed) if total and done else None
        size = f", {_size(update.bytes_read)} of {_size(total or 0)}" if by_bytes else ""
        print(
            f"casdb: {update.table} {share}, {update.rows:,} rows{size}, "
            f"{update.rows / elapsed:,.0f} rows/s, {_eta(eta)}",
            file=sys.stderr,
            flush=True,
        )


class _MigrationSteps(logging.Handler):
    """Advances the migration progress at each of alembic's 'Running ...' records."""

    def __init__(self, bar: MigrationBar) -> None:
        super().__init__(logging.INFO)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Running "):
            self.bar.step(message)


@attrs.define
class MigrationBar:
    """Shows migration steps: a bar with ETA on a terminal, one line per step otherwise."""

    quiet: bool
    total: int | None
    terminal: bool = attrs.field(factory=_on_terminal)
    _progress: Progress | None = None
    _task: TaskID | None = None

    @contextlib.contextmanager
    def shown(self) -> Iterator[None]:
        if self.quiet:
            yield
            return
        logger = logging.getLogger("alembic.runtime.migration")
        handler = _MigrationSteps(self)
        old_level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            if self.terminal:
                self._progress = Progress(
                    TextColumn("[bold]migrations"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    TextColumn("{task.description}"),
                    console=Console(file=sys.stderr),
                )
                with self._progress:
                    self._task = self._progress.add_task("", total=self.total)
                    yield
                    if self._progress.tasks[0].description:  # the last step has ended too
                        self._progress.advance(self._task)
                    self._progress.update(self._task, description="done")
            else:
                yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)

    def step(self, message: str) -> None:
        if self._progress is not None and self._task is not None:
            task = self._progress.tasks[0]
            if task.description:
                self._progress.advance(self._task)
            self._progress.update(self._task, description=message)
        else:
            print(f"casdb: {message}", file=sys.stderr, flush=True)
