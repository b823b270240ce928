"""The guest's image id is the verifier's default trust root (pipeline/verify/policy.py): it
changes only on purpose, with rust/guest/image-id edited in the same commit."""

from pathlib import Path

from veritrain import prover
from veritrain.prover import _native

PINNED = Path(__file__).resolve().parent.parent / "rust" / "guest" / "image-id"


def test_the_embedded_guest_is_the_pinned_release():
    pinned = PINNED.read_text().strip()
    assert prover.image_id().hex() == pinned, (
        "the guest changed (rust/core, rust/guest, Cargo.lock, scripts/build-guest.sh or the "
        "toolchain): if that is intended, write the new id to "
        f"{PINNED} and say in docs/PROTOCOL.md how runs of the old guest verify"
    )
    assert _native.image_id_of(_native.guest_elf()) == prover.image_id()
