"""The foundation: real RISC Zero receipts for epochs, and every way a receipt must be refused."""

from __future__ import annotations

import pytest

from veritrain import prover
from veritrain.pipeline.run.manifest import (
    Manifest,
    epoch_entries,
    load_epoch_records,
    open_ledger,
    receipt_entries,
)
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer
from veritrain.prover import (
    EpochClaim,
    FakeReceiptError,
    GuestError,
    ImageIdMismatchError,
    ReceiptFormatError,
    ReceiptVerificationError,
    VeritrainError,
    _native,
    epoch_input,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_spec):
    """The tiny spec trained for two epochs (no proofs yet)."""
    store = LocalStore(tmp_path_factory.mktemp("store"))
    t = open_trainer(tiny_spec, store, "prover-test")
    train(t)
    return t


def _epoch(t, e):
    entry = epoch_entries(t.entries)[e]
    prev = epoch_entries(t.entries)[e - 1].body.claim if e else None
    return entry.body.claim, prev, load_epoch_records(t.store, entry)


@pytest.fixture(scope="module")
def proven(tiny_run):
    """Receipts and claims of the tiny run made by `veritrain run` (epoch 1's receipt verifies
    epoch 0's inside the guest)."""
    store_root, run_id, _ = tiny_run
    store = LocalStore(store_root)
    manifest = Manifest.load(store, run_id)
    _, entries = open_ledger(store, manifest)
    receipts = receipt_entries(entries)
    claims = {e: x.body.claim for e, x in epoch_entries(entries).items()}
    return {e: (store.read(receipts[e].body.receipt), claims[e]) for e in (0, 1)}


def test_image_id_is_a_digest_and_stable():
    assert len(prover.image_id()) == 32
    assert prover.image_id() == _native.image_id()
    assert prover.image_id() != bytes(32)


def test_executor_gives_the_claim_as_journal_and_counts_cycles(trained):
    claim, prev, records = _epoch(trained, 0)
    result = prover.execute(epoch_input(claim, prev, records))
    assert result.claim == claim
    assert result.stats.user_cycles > 0 and result.stats.segments >= 1


def test_guest_refuses_an_altered_record(trained):
    claim, prev, records = _epoch(trained, 0)
    bad = bytearray(records[1])
    bad[152] ^= 1  # the loss: record 1 changes, so record 2's link to it breaks
    records = [records[0], bytes(bad), records[2]]
    with pytest.raises(GuestError, match="chain"):
        prover.prove_epoch(epoch_input(claim, prev, records), precheck=False)
    with pytest.raises(prover.EpochCheckError) as e:
        prover.check_epoch(epoch_input(claim, prev, records))
    assert (e.value.check, e.value.step) == ("chain", claim.first_step + 2)


@pytest.mark.proving
def test_epoch_receipts_verify_and_carry_the_claim(proven):
    for e in (0, 1):
        receipt, claim = proven[e]
        journal = prover.verify_receipt(receipt, prover.image_id())
        assert journal == claim
        assert journal.guarantee_names == ["structure", "sampler", "schedule", "lineage"]
        assert prover.receipt_kind(receipt) == "succinct"
    # Lineage at constant size: epoch 1's receipt proves epoch 0's inside it (its assumption is
    # resolved), yet it is no larger (a composite receipt grew by a whole receipt per epoch).
    assert len(proven[1][0]) == len(proven[0][0])


def test_an_epoch_executes_before_its_predecessor_is_proven(trained):
    """The previous epoch's claim is an unresolved assumption of the execution: epoch 1 runs
    (and its segments can be proven) with no receipt for epoch 0; only finishing needs one."""
    claim, prev, records = _epoch(trained, 1)
    ex = prover.execute_epoch(epoch_input(claim, prev, records))
    assert ex.claim == claim and len(ex.segments) == ex.stats.segments >= 1
    with pytest.raises(ValueError, match="previous epoch's receipt is required"):
        prover.finish_epoch(b"", claim, None)


def test_prove_epoch_reports_each_part_as_it_finishes(trained, monkeypatch):
    """The execution first (what is to be proven, before any proof), then each segment, each join
    (numbered as the prove pool's join tree numbers them) and the resolve. The executor is real;
    the provers are stubbed, so nothing is proven here."""
    claim, prev, records = _epoch(trained, 1)
    monkeypatch.setattr(prover, "prove_segment", lambda segment: b"lifted")
    monkeypatch.setattr(prover, "join_receipts", lambda left, right: b"joined")

    def finish(joined: bytes, c: EpochClaim, prev_receipt: bytes | None) -> prover.EpochReceipt:
        assert (joined, prev_receipt) == (b"joined", b"epoch 0's receipt")
        return prover.EpochReceipt(receipt=b"receipt", claim=c)

    monkeypatch.setattr(prover, "finish_epoch", finish)
    heard: list[prover.ProofPart] = []
    r = prover.prove_epoch(
        epoch_input(claim, prev, records), b"epoch 0's receipt", po2=16, on_part=heard.append
    )
    assert r.receipt == b"receipt" and r.stats is not None
    n = r.stats.segments
    assert n >= 2
    assert heard[0].kind == "execute" and heard[0].stats is not None
    assert heard[0].stats.segments == n
    got = [(p.kind, p.index, p.count) for p in heard[1:]]
    assert got == [
        *(("segment", k, n) for k in range(1, n + 1)),
        *(("join", j, n - 1) for j in range(1, n)),
        ("resolve", 1, 1),
    ]
    assert all(p.seconds >= 0 for p in heard)


@pytest.mark.proving
def test_the_bundled_recursion_programs_have_the_control_ids_verification_allows():
    """risc0 3.1.0-rc.1 ships its recursion programs in crates instead of a download: recompute
    the control id of every program succinct verification allows from those bytes, and the
    allowed root from them (about five seconds a program on 2 cores)."""
    programs, root, allowed_root = _native.recursion_control_ids()
    names = [name for name, _, _ in programs]
    assert len(programs) == 27 and "join.zkr" in names and "resolve.zkr" in names
    for name, computed, constant in programs:
        assert computed == constant, name
    assert root == allowed_root


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b[:-4], "input is truncated"),
        (lambda b: b + bytes(4), "trailing bytes after the records"),
        # A byte of a record slot's fixed prefix (the record hash's tag).
        (lambda b: b[:-256] + b"X" + b[-255:], "record's hash prefix and padding"),
    ],
    ids=["truncated", "trailing", "slot"],
)
def test_guest_accepts_exactly_what_the_native_decoder_accepts(trained, edit, message):
    claim, prev, records = _epoch(trained, 0)
    data = edit(epoch_input(claim, prev, records))
    with pytest.raises(GuestError, match=message):
        prover.execute(data)
    with pytest.raises(prover.EpochCheckError) as e:
        prover.check_epoch(data)
    assert e.value.check == "encoding" and message in str(e.value)


@pytest.mark.proving
@pytest.mark.parametrize("where", [0.25, 0.5, 0.75, -40])
def test_a_flipped_receipt_byte_is_rejected(proven, where):
    data = bytearray(proven[0][0])
    i = int(len(data) * where) if where > 0 else len(data) + where
    data[i] ^= 0x01
    with pytest.raises((ReceiptVerificationError, ReceiptFormatError)):
        prover.verify_receipt(bytes(data), prover.image_id())


@pytest.mark.proving
def test_a_truncated_receipt_is_a_format_error(proven):
    receipt = proven[0][0]
    for cut in (0, 10, len(receipt) // 2, len(receipt) - 1):
        with pytest.raises(ReceiptFormatError):
            prover.verify_receipt(receipt[:cut], prover.image_id())


@pytest.mark.proving
def test_another_image_id_is_rejected(proven):
    other = bytes.fromhex("11" * 32)
    with pytest.raises(ImageIdMismatchError, match=prover.image_id().hex()):
        prover.verify_receipt(proven[0][0], other)


def test_a_fake_receipt_is_rejected(trained, monkeypatch):
    claim, _, _ = _epoch(trained, 0)
    fake = _native._fake_receipt(claim.to_bytes(), prover.image_id())
    with pytest.raises(FakeReceiptError):
        prover.verify_receipt(fake, prover.image_id())
    # Even with risc0's dev-mode switch on, veritrain refuses (and says why) rather than accept.
    monkeypatch.setenv("RISC0_DEV_MODE", "1")
    with pytest.raises(VeritrainError, match="RISC0_DEV_MODE"):
        prover.verify_receipt(fake, prover.image_id())


def test_claim_roundtrips_through_bytes(trained):
    claim, _, _ = _epoch(trained, 1)
    assert EpochClaim.from_bytes(claim.to_bytes()) == claim
    assert len(claim.to_bytes()) == _native.CLAIM_LEN
