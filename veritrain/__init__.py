"""veritrain: hybrid opML/zkML training checkpoints.

One import name for the repository's top-level folders (pipeline/, prover/, flows/, bench/,
examples/), which this folder links so that an installed veritrain cannot collide with other
projects' `pipeline` or `flows`.
"""

from __future__ import annotations

from pathlib import Path


def example(name: str) -> Path:
    """The path of a spec of examples/ (package data, so an installed veritrain has them too)."""
    return Path(__file__).parent / "examples" / name
