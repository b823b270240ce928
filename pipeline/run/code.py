"""The user's code a spec names: importing it (``kind: import``) from the spec's ``import_path``.

Importing runs the user's module, which may raise anything; every failure is a SpecError naming
the spec key. Nothing here imports torch: the objects are whatever the user's module holds.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from veritrain.pipeline.errors import SpecError


def one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


@contextmanager
def search_path(folders: list[str]) -> Iterator[None]:
    """``folders`` in front of Python's own path while the block imports, and only then: a run's
    import path is the spec's, not the process's (a test, a notebook, a flow keep theirs)."""
    saved = list(sys.path)
    sys.path[:0] = [f for f in folders if f not in sys.path[: len(folders)]]
    importlib.invalidate_caches()  # a module written since the process started is found
    try:
        yield
    finally:
        sys.path[:] = saved


def import_object(ref: str, key: str, folders: list[str]) -> Any:
    """The object ``ref`` (``package.module:name``) names, its module imported with ``folders``
    searched first. ``key`` is the spec key that names it, for the error."""
    module_name, name = ref.split(":")
    try:
        with search_path(folders):
            return getattr(importlib.import_module(module_name), name)
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything
        raise SpecError(f"{key}: cannot import {ref!r}: {one_line(e)}") from None
