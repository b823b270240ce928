"""Crash injection for the crash-safety tests: ``VERITRAIN_FAILPOINT="<name>:<substring>@<n>"``
kills the process with SIGKILL the n-th time failpoint ``name`` is reached for a key containing
``substring``. Unset (always, outside those tests) it costs one dict lookup."""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def hit(name: str, key: str) -> None:
    spec = os.environ.get("VERITRAIN_FAILPOINT")
    if not spec:
        return
    target, _, n = spec.rpartition("@")
    fp_name, _, substring = target.partition(":")
    if fp_name != name or substring not in key:
        return
    _counts[spec] = _counts.get(spec, 0) + 1
    if _counts[spec] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
