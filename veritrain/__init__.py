"""veritrain: hybrid opML/zkML training checkpoints.

One import name for the repository's top-level folders (pipeline/, prover/, flows/, bench/,
examples/), so that an installed veritrain cannot collide with other projects' `pipeline` or
`flows`. In the wheel they are real folders of this package; in a checkout this folder links them
(maturin collects the wheel's files through those links), and the package searches the
repository's root first, so that every module below it is imported from its real file: tracebacks,
coverage and editors name ``pipeline/verify/verifier.py``, never a path through a link
(tests/test_package.py checks both).

The Python API is ``veritrain.run`` and ``veritrain.verify`` (flows/api.py); importing veritrain
imports neither torch nor Prefect.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent
if (_HERE / "pipeline").is_symlink():
    __path__.insert(0, str(_HERE.parent))


from veritrain.flows.api import run, verify  # noqa: E402 - the package's path comes first

__all__ = ["example", "run", "verify"]


def example(name: str) -> Path:
    """The path of a spec of examples/ (package data, so an installed veritrain has them too)."""
    return _HERE / "examples" / name
