"""zk re-execution of canonical steps (PROTOCOL.md §11, guarantee `arithmetic`): a canonical
run's receipts carry guarantees 31 and verify; a trainer that falsifies one step's update is
caught by the guest itself (check `arithmetic`, the step named) when that step is re-executed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import veritrain

from veritrain import prover
from veritrain.pipeline.prove.guest_input import guest_input
from veritrain.pipeline.run.manifest import Manifest, epoch_entries, open_ledger, receipt_entries
from veritrain.pipeline.run.spec import load_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer
from veritrain.pipeline.verify.verifier import verify_run
from veritrain.prover import EpochCheckError, GuestError

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "examples" / "tiny-canonical.yaml"


class FalsifyUpdate:
    """Adds one unit (2^-24) to a weight after the canonical step ``at``: the record then carries
    the digests of a state the step did not compute."""

    def __init__(self, at: int):
        self.at = at

    def batch(self, step: int, idx: np.ndarray) -> np.ndarray:
        return idx

    def after_update(self, step, state, optimizer) -> None:
        if step == self.at:
            state.arrays["param/1.weight"].reshape(-1)[0] += 1


def _trained(tmp_path: Path, run_id: str, tamper=None, **update) -> tuple[LocalStore, Manifest]:
    store = LocalStore(tmp_path)
    spec = load_spec(TINY).model_copy(update=update)
    t = open_trainer(spec, store, run_id)
    t.tamper = tamper
    train(t)
    return store, Manifest.load(store, run_id)


def _epoch_input(store: LocalStore, manifest: Manifest, epoch: int) -> bytes:
    _, entries = open_ledger(store, manifest)
    return guest_input(store, manifest, epoch_entries(entries), epoch, entries)


def test_every_step_of_an_honest_canonical_epoch_passes_the_native_check(tmp_path):
    store, m = _trained(tmp_path, "zk-honest", finalize_every=0)
    spe = m.steps_per_epoch
    for epoch in range(m.spec.epochs):
        inp = _epoch_input(store, m, epoch)
        prover.check_epoch(inp)
        claim = epoch_entries(open_ledger(store, m)[1])[epoch].body.claim
        assert claim.guarantees == 31
        assert prover.zk_steps(claim.records_root, spe, m.spec.zk_steps_per_epoch) == list(
            range(spe)
        )


@pytest.mark.parametrize("at", [1, 4])
def test_a_falsified_update_fails_arithmetic_at_its_step_in_the_guest(tmp_path, at):
    # k = steps per epoch: the falsified step is re-executed whichever it is.
    store, m = _trained(tmp_path, f"zk-liar-{at}", FalsifyUpdate(at), finalize_every=0)
    epoch = at // m.steps_per_epoch
    inp = _epoch_input(store, m, epoch)
    with pytest.raises(EpochCheckError) as e:
        prover.check_epoch(inp)
    assert (e.value.check, e.value.step) == ("arithmetic", at)
    # The records alone are consistent: only the re-execution sees the lie.
    claim = epoch_entries(open_ledger(store, m)[1])[epoch].body.claim
    assert claim.guarantees == 31
    # The real guest, in risc0's executor, refuses it the same way: no receipt can exist.
    with pytest.raises(GuestError, match=rf"arithmetic: .*\(step {at}\)"):
        prover.execute(inp)


@pytest.mark.proving
def test_a_canonical_tiny_run_proves_guarantee_31_and_verifies(tmp_path):
    # `veritrain run` through Prefect, the epoch proven for real (finalize_every: 1). The smallest
    # canonical run that still re-executes a step in the guest: one epoch of three steps (batches
    # of 4 of 12 samples, 4 features, a 4-wide hidden layer), one of them re-executed. A
    # re-executed step costs about 205k cycles whatever the model's size, so this epoch is one
    # 2^19 segment; the tiny spec's three re-executed steps would be 2^20 + 2^19 (three times
    # the proving). Every step's arithmetic is checked by the executor tests above.
    raw = yaml.safe_load(TINY.read_text()) | {
        "epochs": 1,
        "batch_size": 4,
        "zk_steps_per_epoch": 1,
        "model": {"kind": "mlp", "hidden": [4]},
        "dataset": {"kind": "synthetic", "samples": 12, "features": 4, "classes": 3, "seed": 1},
    }
    spec = tmp_path / "canonical-small.yaml"
    spec.write_text(yaml.safe_dump(raw))
    r = veritrain("run", str(spec), "--store", str(tmp_path / "store"), timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    run_id = r.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
    store = LocalStore(tmp_path / "store")
    m = Manifest.load(store, run_id)
    _, entries = open_ledger(store, m)
    receipts = receipt_entries(entries)
    assert m.spec.epochs == 1 and m.steps_per_epoch == 3 and sorted(receipts) == [0]
    for epoch, r in receipts.items():
        claim = prover.verify_receipt(store.read(r.body.receipt), m.image_id)
        assert claim.guarantees == 31
        assert claim == epoch_entries(entries)[epoch].body.claim
        assert len(prover.zk_steps(claim.records_root, 3, m.spec.zk_steps_per_epoch)) == 1
    report = verify_run(store, run_id)
    assert report.ok, report.to_json()
