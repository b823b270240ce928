"""Disputes: the run's filed fraud proofs and whether each is upheld, as verify and status see
them.

The ledger is signed with the trainer's key, so a challenger cannot append to it, and a verdict file
proves nothing by itself: every filed proof is re-checked (pipeline/challenge/fraudproof.py). This
module imports no torch; re-checking a proof does, so a verifier without the training stack
reports a run's proofs as not checkable here, and the epochs they name as unconfirmed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from veritrain.pipeline.challenge.fraudproof import Verdict, check_filed_proof, read_proof
from veritrain.pipeline.errors import StorageError
from veritrain.pipeline.store.base import NotFoundError, Store
from veritrain.pipeline.store.keys import challenges_prefix
from veritrain.prover import VeritrainError


@dataclass
class Disputes:
    """The run's filed fraud proofs, each re-checked here."""

    upheld: list[Verdict] = field(default_factory=list)
    rejected: list[Verdict] = field(default_factory=list)
    # (proof id, epoch it names or None, why it could not be checked in this environment)
    unchecked: list[tuple[str, int | None, str]] = field(default_factory=list)

    def for_epoch(self, epoch: int) -> tuple[bool, str, bool]:
        """(check ok, detail, disputed) for an epoch: an upheld proof disputes its epoch and
        every later one; a proof that cannot be checked here leaves them unconfirmed."""
        hits = [v for v in self.upheld if v.epoch is not None and v.epoch <= epoch]
        if hits:
            v = min(hits, key=lambda v: v.step or 0)
            where = "" if v.epoch == epoch else f"follows disputed epoch {v.epoch}: "
            return False, f"{where}fraud proof {v.proof_id} upheld: {v.reason}", True
        blocked = [u for u in self.unchecked if u[1] is None or u[1] <= epoch]
        if blocked:
            pid, _, why = blocked[0]
            return False, f"fraud proof {pid} could not be checked here: {why}", False
        n = len(self.upheld) + len(self.rejected) + len(self.unchecked)
        if not n:
            return True, "no fraud proof filed", False
        return True, f"{n} fraud proof(s) filed, none upheld up to this epoch", False


def disputes(store: Store, run_id: str) -> Disputes:
    """Re-checks every proof under the run's challenges/ (never trusting a stored verdict)."""
    out = Disputes()
    prefix = challenges_prefix(run_id)
    for key in store.list(prefix):
        name = key[len(prefix) :]
        if not name.endswith(".json") or name.endswith(".verdict.json"):
            continue
        pid = name.removesuffix(".json")
        try:
            v = check_filed_proof(store, run_id, pid)
        except StorageError as err:
            if not isinstance(err, NotFoundError):
                raise  # could not look at all: the caller reports a storage error
            out.unchecked.append((pid, _named_epoch(store, run_id, pid), str(err)))
            continue
        except VeritrainError as err:  # another determinism profile, no torch here, a broken run
            out.unchecked.append((pid, _named_epoch(store, run_id, pid), str(err)))
            continue
        (out.upheld if v.upheld else out.rejected).append(v)
    return out


def _named_epoch(store: Store, run_id: str, pid: str) -> int | None:
    """The epoch an unchecked proof names: the epochs it would dispute stay unconfirmed."""
    doc = read_proof(store, run_id, pid)
    epoch = doc.get("epoch") if doc else None
    return epoch if isinstance(epoch, int) else None
