"""The schedules language models use (cosine with warmup, inverse square root): a run trains with
each, its records commit to the core's rate at every step, its epochs pass the guest's checks
(natively: no proving here, finalize_every: 0; the suite's proving tests run the same checks in
the guest) and an honest replay finds nothing. The rules and their vectors: rust/core/tests/
schedule.rs, tests/test_vectors.py; spec parsing: tests/test_boundary.py."""

from __future__ import annotations

import json

import pytest

from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.errors import IntegrityError
from veritrain.pipeline.run.manifest import Manifest, epoch_entries, load_epoch_records, open_ledger
from veritrain.pipeline.run.spec import parse_spec
from veritrain.pipeline.store.keys import manifest_key
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer
from veritrain.pipeline.verify.verifier import verify_run
from veritrain.prover import (
    RECORD_FIELDS,
    EpochCheckError,
    Schedule,
    StepRecord,
    check_records,
    hparams_digest,
)

COSINE = {"kind": "cosine", "base_lr": 0.05, "warmup_steps": 4, "min_lr": 0.001}
INVERSE_SQRT = {"kind": "inverse_sqrt", "base_lr": 0.05, "warmup_steps": 4}
SPEC = {
    "model": {"kind": "mlp", "hidden": [16]},
    "dataset": {"kind": "synthetic", "samples": 44, "features": 8, "classes": 3, "seed": 5},
    "optimizer": {"kind": "import", "class": "torch.optim.AdamW", "kwargs": {}},
    "epochs": 3,
    "batch_size": 8,  # 6 steps an epoch, the last of 4 samples: 18 steps
    "state_every": 2,
    "checkpoint_every": 4,
    "finalize_every": 0,
    "challenge_window": 0,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("schedule-store"))
    for run_id, schedule in (("cosine", COSINE), ("inverse-sqrt", INVERSE_SQRT)):
        train(open_trainer(parse_spec({**SPEC, "schedule": schedule}), store, run_id))
    return store


def _epochs(store, run_id):
    m = Manifest.load(store, run_id)
    _, entries = open_ledger(store, m)
    epochs = epoch_entries(entries)
    return m, [(epochs[e].body.claim, load_epoch_records(store, epochs[e])) for e in sorted(epochs)]


@pytest.mark.parametrize("run_id", ["cosine", "inverse-sqrt"])
def test_a_run_follows_its_schedule_and_verifies(store, run_id):
    m, epochs = _epochs(store, run_id)
    schedule = epochs[0][0].schedule
    written = COSINE if run_id == "cosine" else INVERSE_SQRT
    # The claim carries the core's schedule, cosine's with the run's 18 steps.
    extra = {"total_steps": 18} if run_id == "cosine" else {}
    assert schedule == Schedule(**written, **extra)
    assert all(claim.schedule == schedule for claim, _ in epochs)
    records = [StepRecord.from_bytes(r) for _, blob in epochs for r in blob]
    assert [r.step for r in records] == list(range(18))
    rates = [schedule.lr_at(r.step) for r in records]
    assert all(
        r.hparams_digest == hparams_digest(lr, m.optimizer_digest)
        for r, lr in zip(records, rates, strict=True)
    )
    # Warmup up to base_lr (cosine's first decay step, d = 0, is base_lr again), then strictly
    # down (to just above min_lr for cosine).
    assert rates[:4] == sorted(rates[:4]) and max(rates) == 0.05
    top = max(s for s, lr in enumerate(rates) if lr == 0.05)
    assert all(a > b for a, b in zip(rates[top:], rates[top + 1 :], strict=False))
    if run_id == "cosine":
        assert top == 4 and 0.001 < rates[-1] < 0.002
    # It trains: the last epoch's mean loss is below the first's.
    losses = [r.loss for r in records]
    assert sum(losses[-6:]) < sum(losses[:6])
    report = verify_run(store, run_id)
    assert report.ok, [c for e in report.epochs for c in e.checks if not c.ok]
    assert challenge(store, run_id).finding is None


def test_a_manifest_whose_warmup_outlasts_the_run_is_refused(store):
    raw = json.loads(store.read(manifest_key("cosine")))
    raw["spec"]["schedule"]["warmup_steps"] = 19  # the run has 18 steps
    with pytest.raises(IntegrityError, match="spec.schedule: warmup_steps must be at most"):
        Manifest.parse(json.dumps(raw).encode(), "cosine")


def test_a_record_off_the_cosine_is_caught_by_the_epoch_check(store):
    m, epochs = _epochs(store, "cosine")
    claim, blob = epochs[1]
    prev = epochs[0][0]
    check_records(claim, prev, blob)  # honest: passes
    # Step 9 (decay) claims the rate of step 8: the guest's rule recomputes it and refuses.
    k = 9 - claim.first_step
    _, at, size = next(f for f in RECORD_FIELDS if f[0] == "hparams_digest")
    wrong = hparams_digest(claim.schedule.lr_at(8), m.optimizer_digest)
    forged = blob[k][:at] + wrong + blob[k][at + size :]
    with pytest.raises(EpochCheckError) as e:
        check_records(claim, prev, [*blob[:k], forged, *blob[k + 1 :]])
    assert (e.value.check, e.value.step) == ("hparams", 9)
