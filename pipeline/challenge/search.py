"""Optimistic challenges (docs/OPERATIONS.md "Challenges"): searching a range of a run's
committed steps for a wrong one, by replay (pipeline/challenge/replay.py), and filing a fraud proof
for it (pipeline/challenge/fraudproof.py).

- ``replay_range`` is the complete check: it replays every step of a range, so "no fraud found"
  covers every record in it.
- ``bisect_range`` finds a wrong step in ``ceil(log2(n + 1))`` probes, each replaying at most
  ``checkpoint_every`` steps from the nearest checkpoint. Every step it reports is a real fraud,
  but it is the *first* one only while the deviation persists to the end of the range: a probe
  starts from the trainer's own checkpoint, so a single deviation that the trainer folded into its
  later checkpoints is invisible to probes past the next checkpoint. No method that replays fewer
  steps than the range can be complete; see docs/OPERATIONS.md, "Challenges".

Nothing here imports Prefect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from veritrain.pipeline.challenge.fraudproof import build_fraud_proof, file_fraud_proof
from veritrain.pipeline.challenge.replay import Finding, Replay
from veritrain.pipeline.errors import IntegrityError, UsageError
from veritrain.pipeline.run.spec import LocalCopy
from veritrain.pipeline.store.base import Store


@dataclass
class ChallengeResult:
    run_id: str
    first: int
    end: int
    method: str  # "replay" or "bisect"
    probes: int
    replayed_steps: int
    finding: Finding | None = None
    proof_id: str | None = None
    proof_key: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def probe_bound(self) -> int:
        """Bisection's worst case: one of n steps, or none, is ceil(log2(n + 1)) probes."""
        return math.ceil(math.log2(self.end - self.first + 1))

    def to_json(self) -> dict[str, Any]:
        f = self.finding
        return {
            "run_id": self.run_id,
            "steps": [self.first, self.end],
            "method": self.method,
            "probes": self.probes,
            "probe_bound": self.probe_bound if self.method == "bisect" else None,
            "replayed_steps": self.replayed_steps,
            "fraud": f is not None,
            "step": f.step if f else None,
            "epoch": f.epoch if f else None,
            "fields": f.fields if f else [],
            "proof_id": self.proof_id,
            "proof": self.proof_key,
            "notes": self.notes,
        }


def parse_steps(text: str | None, committed: int) -> tuple[int, int]:
    """``A:B`` (either side may be empty) -> a half-open range inside the committed steps."""
    if text is None:
        first, end = 0, committed
    else:
        a, sep, b = text.partition(":")
        try:
            if not sep:
                raise ValueError
            first, end = int(a) if a else 0, int(b) if b else committed
        except ValueError:
            raise UsageError(f"--steps: {text!r} is not A:B (global steps, B excluded)") from None
    if not 0 <= first < end <= committed:
        raise UsageError(
            f"--steps: [{first}, {end}) is not a non-empty range of the run's "
            f"{committed} committed steps"
        )
    return first, end


def replay_range(r: Replay, first: int, end: int) -> ChallengeResult:
    """The naive linear replay: from the nearest checkpoint at or before ``first`` through
    ``end - 1``, every record compared. Complete for the range; stops at the first wrong step
    (which may lie before ``first``, on the way from the checkpoint)."""
    before = r.replayed
    finding = r.scan(r.nearest_checkpoint(first), end - 1)
    n = r.replayed - before
    # Each replayed step is compared, so a linear replay's probes are its steps.
    return ChallengeResult(r.run_id, first, end, "replay", n, n, finding)


def bisect_range(r: Replay, first: int, end: int) -> ChallengeResult:
    """Binary search for a wrong step in [first, end): a probe at m replays from the nearest
    checkpoint at or before m through m, comparing every record on the way.

    Invariant: the probes so far agree through ``lo`` and disagree at ``hi`` (``end``: none seen).
    A probe that first disagrees at s > its checkpoint settles the search at s, since the steps
    from its checkpoint up to s agree; one that disagrees at its checkpoint's own step moves
    ``hi`` there. Whatever it reports is a real fraud (the steps from its checkpoint up to it
    agree and it does not); it is the first wrong step when the deviation persists to ``end``.
    """
    before, probes = r.replayed, 0
    lo, hi, finding = first - 1, end, None
    while hi - lo > 1:
        m = (lo + hi) // 2
        c = r.nearest_checkpoint(m)
        probes += 1
        f = r.scan(c, m)
        if f is None:
            lo = m
            continue
        hi, finding = f.step, f
        if f.step > c:
            break
    result = ChallengeResult(r.run_id, first, end, "bisect", probes, r.replayed - before, finding)
    if finding is None:
        result.notes.append(
            "bisection saw no disagreement at the probes; it is complete only for deviations that "
            "persist to the end of the range (replay without --bisect checks every step)"
        )
    return result


def challenge(
    store: Store,
    run_id: str,
    steps: str | None = None,
    bisect: bool = False,
    local: LocalCopy | None = None,
) -> ChallengeResult:
    """Replays (or bisects) a range of a run's committed steps, reading its dataset and code from
    ``local`` where given; on a wrong step, files a fraud proof under challenges/ and returns
    its id and key."""
    r = Replay(store, run_id, local)
    first, end = parse_steps(steps, r.committed_steps())
    result = (bisect_range if bisect else replay_range)(r, first, end)
    f = result.finding
    if f is not None:
        # A linear replay may have started further back; the proof starts at the nearest
        # checkpoint, which the replay passed with matching state digests, so it agrees.
        same_start = f.checkpoint == r.nearest_checkpoint(f.step)
        proof = build_fraud_proof(r, f.step, f.recomputed if same_start else None)
        if proof["recomputed"]["record"] != f.recomputed.hex():
            raise IntegrityError(
                f"step {f.step} re-executed two ways to two records: this environment does not "
                "replay deterministically"
            )
        result.proof_id, result.proof_key = file_fraud_proof(store, proof)
    return result
