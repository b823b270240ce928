"""The receipt cache (pipeline/prove/receipt_cache.py) with the tiny run's real receipts: an entry
is used only when it verifies as a receipt of the asked claim; anything else in its place is
deleted and said, and a cache that cannot be written loses nothing. (A whole run served from it:
tests/test_cli.py.)"""

from __future__ import annotations

import logging

import pytest

from veritrain.pipeline.prove.receipt_cache import ENV, ReceiptCache
from veritrain.pipeline.run.manifest import Manifest, epoch_entries, open_ledger, receipt_entries
from veritrain.pipeline.store.local import LocalStore
from veritrain.prover import EpochReceipt

pytestmark = pytest.mark.proving  # tiny_run proves its epochs for real


@pytest.fixture
def receipts(tiny_run) -> list[EpochReceipt]:
    """The tiny run's two epoch receipts with their committed claims."""
    store, run_id, _ = tiny_run
    s = LocalStore(store)
    _, entries = open_ledger(s, Manifest.load(s, run_id))
    claims = epoch_entries(entries)
    return [
        EpochReceipt(receipt=s.read(e.body.receipt), claim=claims[epoch].body.claim)
        for epoch, e in sorted(receipt_entries(entries).items())
    ]


def test_a_receipt_put_is_found_by_its_claim(receipts, tmp_path):
    cache = ReceiptCache(tmp_path / "c")
    assert cache.get(receipts[0].claim) is None
    path = cache.put(receipts[0])
    assert path == tmp_path / "c" / receipts[0].claim.image_id.hex() / (
        receipts[0].claim.digest().hex() + ".receipt"
    )
    assert cache.get(receipts[0].claim) == receipts[0]
    assert cache.get(receipts[1].claim) is None
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("where", ["flipped", "truncated", "other claim"])
def test_an_entry_that_is_not_a_receipt_of_its_claim_is_deleted(receipts, tmp_path, caplog, where):
    cache = ReceiptCache(tmp_path)
    path = cache.path(receipts[1].claim)
    path.parent.mkdir(parents=True)
    data = bytearray(receipts[1].receipt)
    if where == "flipped":
        data[len(data) // 2] ^= 1
    elif where == "truncated":
        data = data[: len(data) // 3]
    else:  # epoch 0's valid receipt filed under epoch 1's claim
        data = bytearray(receipts[0].receipt)
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="veritrain.receipt_cache"):
        assert cache.get(receipts[1].claim) is None
    assert not path.exists()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"receipt cache: {path} does not verify (") and "proving" in line
    if where == "other claim":
        assert "its journal is another claim" in line


def test_a_cache_that_cannot_be_written_says_so_and_loses_nothing(receipts, tmp_path, caplog):
    (tmp_path / "c").write_text("a file where the cache's folder should be")
    cache = ReceiptCache(tmp_path / "c")
    with caplog.at_level(logging.WARNING, logger="veritrain.receipt_cache"):
        assert cache.put(receipts[0]) is None
    assert "cannot be written" in caplog.text
    assert cache.get(receipts[0].claim) is None


def test_the_cache_is_off_unless_named(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    assert ReceiptCache.from_env() is None
    monkeypatch.setenv(ENV, "")
    assert ReceiptCache.from_env() is None
    monkeypatch.setenv(ENV, str(tmp_path))
    cache = ReceiptCache.from_env()
    assert cache is not None and cache.folder == tmp_path
