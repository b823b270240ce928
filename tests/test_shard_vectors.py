"""Sharded dataset roots (tests/vectors/shards-v1.json, which rust/core's tests/shards.rs
generates), checked from Python: an independent reading of docs/PROTOCOL.md §4 ("Sharded
datasets") in pure Python (struct and hashlib only), and the extension's ``sharded_root``."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

# The pure-Python reading of PROTOCOL.md's tagged hash and Merkle root, shared with the sample
# vectors' test (one reference implementation on the Python side).
from test_sample_vectors import merkle_root, tagged

from veritrain.prover import _native

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "shards-v1.json").read_text()
)
CASES = VECTORS["cases"]


def flat_root(samples: list[bytes]) -> bytes:
    return merkle_root(
        [tagged("veritrain/sample/v1", struct.pack("<Q", i), s) for i, s in enumerate(samples)]
    )


def shard_leaf(first: int, count: int, root: bytes) -> bytes:
    return tagged("veritrain/shard/v1", struct.pack("<QQ", first, count), root)


def test_the_vectors_cover_every_task_and_shard_counts_zero_to_five():
    assert {c["task"] for c in CASES} == {"classification", "regression", "language_model"}
    assert sorted(len(c["shards"]) for c in CASES) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['task']}-{len(c['shards'])}")
def test_sharded_roots_in_pure_python(case):
    first, leaves, everything = 0, [], []
    for shard in case["shards"]:
        samples = [bytes.fromhex(s) for s in shard["samples"]]
        assert (shard["first"], shard["count"]) == (first, len(samples))
        root = flat_root(samples)
        assert root.hex() == shard["root"]
        leaves.append(shard_leaf(first, len(samples), root))
        assert leaves[-1].hex() == shard["leaf"]
        first += len(samples)
        everything += samples
    assert merkle_root(leaves).hex() == case["dataset_root"]
    assert flat_root(everything).hex() == case["flat_root"]
    # Only the empty dataset has the flat root: a shard's leaf wraps its root.
    assert (case["flat_root"] == case["dataset_root"]) == (not case["shards"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['task']}-{len(c['shards'])}")
def test_sharded_roots_through_the_extension(case):
    pairs = [(s["count"], bytes.fromhex(s["root"])) for s in case["shards"]]
    assert _native.sharded_root(pairs).hex() == case["dataset_root"]
    for shard in case["shards"]:
        rows = b"".join(bytes.fromhex(s) for s in shard["samples"])
        row_len = len(bytes.fromhex(shard["samples"][0]))
        assert _native.dataset_root(rows, row_len).hex() == shard["root"]


def test_the_extension_refuses_a_shard_root_that_is_not_a_digest():
    with pytest.raises(ValueError, match="shard 1's root: a digest is 32 bytes"):
        _native.sharded_root([(1, bytes(32)), (2, bytes(31))])
