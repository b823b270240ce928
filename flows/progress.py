"""Progress bars on stderr, shared by the command line and the tasks it runs in this process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_current: Progress | None = None


@contextlib.contextmanager
def bars() -> Iterator[Progress]:
    global _current
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    _current = progress
    try:
        with progress:
            yield progress
    finally:
        _current = None


def current() -> Progress | None:
    """The command line's progress display, or None (e.g. in a worker process)."""
    return _current
