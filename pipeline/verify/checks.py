"""What verification reports: named checks, each pass or fail, per run and per epoch
(``RunReport``, ``EpochReport``), the statuses an epoch reaches, and running one check so that
only a VeritrainError fails it. ``verifier.py`` runs the run's checks, ``epoch_checks.py`` an
epoch's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from veritrain.pipeline.errors import StorageError
from veritrain.pipeline.store.base import NotFoundError
from veritrain.prover import VeritrainError
from veritrain.prover.errors import message

COMMITTED, PROVEN, FINAL, DISPUTED = "committed", "proven", "final", "disputed"
# Proven and past its window, but no one the verifier trusts to replay the run's determinism
# profile could have challenged it: the optimistic guarantee did not hold (docs/OPERATIONS.md).
UNREPLAYABLE = "unreplayable"
_T = TypeVar("_T")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class EpochReport:
    epoch: int
    status: str
    first_step: int
    step_count: int
    end_state_digest: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class RunReport:
    run_id: str
    image_id: str
    trust: dict[str, Any] = field(default_factory=dict)
    # run.json's code identity as stored (pipeline/run/code.py); None where the run recorded
    # none (made before veritrain recorded it) or its manifest cannot be read.
    code: dict[str, Any] | None = None
    checks: list[Check] = field(default_factory=list)
    epochs: list[EpochReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and all(e.ok for e in self.epochs)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "run_id": self.run_id,
            "image_id": self.image_id,
            "trust": self.trust,
            "code": self.code,
            "checks": [asdict(c) for c in self.checks],
            "epochs": [e.to_json() for e in self.epochs],
        }


def _attempt(
    checks: list[Check], name: str, fn: Callable[[], _T], detail: Callable[[_T], str]
) -> _T | None:
    """Runs one named check and appends its outcome; fn's value, or None where it failed.
    Integrity and prover errors fail it, storage errors propagate (they mean "could not look",
    not "looked and it is wrong") except a missing object. Only VeritrainError fails a check:
    anything else is a bug here, which must not read as tampering (malformed stored data is an
    IntegrityError where it is parsed, pipeline/run/entries.py)."""
    try:
        value = fn()
    except NotFoundError as e:
        checks.append(Check(name, False, str(e)))
        return None
    except StorageError:
        raise
    except VeritrainError as e:
        checks.append(Check(name, False, message(e)))
        return None
    checks.append(Check(name, True, detail(value)))
    return value


def run_check(checks: list[Check], name: str, fn: Callable[[], str]) -> bool:
    """Runs a check whose function returns its detail (or raises); whether it passed."""
    return _attempt(checks, name, fn, lambda d: d) is not None


def checked(checks: list[Check], name: str, fn: Callable[[], _T]) -> _T | None:
    """Runs a check that finds what the next checks need (the manifest, the ledger's entries,
    the receipt's journal); that, or None where it failed. Its detail stays empty."""
    return _attempt(checks, name, fn, lambda _: "")
