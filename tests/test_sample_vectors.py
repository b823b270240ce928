"""Each task's sample bytes and the text corpus's windows (tests/vectors/samples-v1.json, which
rust/core's tests/samples.rs generates), checked from Python three ways: an independent reading
of docs/PROTOCOL.md §4 in pure Python (struct and hashlib only), the extension's row builders,
and the pipeline's datasets (the rows whose Merkle root a run commits to)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from veritrain.pipeline.data.datasets import Dataset, load_dataset
from veritrain.pipeline.data.text import corpus_files
from veritrain.pipeline.run.tasks import TASKS, TextDataset
from veritrain.prover import _native

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "samples-v1.json").read_text()
)


# --- Part A: PROTOCOL.md §4 in pure Python ----------------------------------------------------


def tagged(tag: str, *parts: bytes) -> bytes:
    h = hashlib.sha256(tag.encode() + b"\x00")
    for p in parts:
        h.update(p)
    return h.digest()


def sample_leaf(index: int, sample: bytes) -> bytes:
    return tagged("veritrain/sample/v1", struct.pack("<Q", index), sample)


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return tagged("veritrain/empty/v1")
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return tagged("veritrain/node/v1", merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def sample_bytes(task: str, fields: dict[str, Any]) -> bytes:
    if task == "classification":
        bits = fields["features_bits"]
        return struct.pack(f"<{len(bits)}I", *bits) + struct.pack("<q", fields["label"])
    if task == "regression":
        values = fields["features_bits"] + fields["targets_bits"]
        return struct.pack(f"<{len(values)}I", *values)
    return struct.pack(f"<{len(fields['window'])}I", *fields["window"])


def text_windows(tokens: int, context: int) -> int:
    return 0 if context == 0 or tokens <= context else (tokens - 1) // context


def corpus_windows(corpus: bytes, context: int) -> list[list[int]]:
    n = text_windows(len(corpus), context)
    return [list(corpus[i * context : i * context + context + 1]) for i in range(n)]


def test_the_vectors_name_every_task():
    assert tuple(VECTORS["tasks"]) == TASKS


@pytest.mark.parametrize("task", TASKS)
def test_sample_bytes_and_leaves(task):
    for case in VECTORS[task]:
        b = sample_bytes(task, case["fields"])
        assert b.hex() == case["bytes"]
        assert sample_leaf(case["index"], b).hex() == case["leaf"]


def test_window_counts():
    for case in VECTORS["text_windows"]:
        assert text_windows(case["tokens"], case["context"]) == case["windows"]


def test_text_corpus_windows_and_root():
    t = VECTORS["text_corpus"]
    windows = corpus_windows(bytes.fromhex(t["bytes"]), t["context"])
    assert windows == t["windows"]
    leaves = [
        sample_leaf(i, sample_bytes("language_model", {"window": w})) for i, w in enumerate(windows)
    ]
    assert merkle_root(leaves).hex() == t["dataset_root"]


# --- Part B: the extension and the pipeline give the same bytes --------------------------------


def _f32(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint32).view(np.float32)


@pytest.mark.parametrize("task", TASKS)
def test_native_rows(task):
    for case in VECTORS[task]:
        f = case["fields"]
        if task == "classification":
            row = _native.classification_rows(_f32(f["features_bits"]), np.array([f["label"]]))
        elif task == "regression":
            row = _native.regression_rows(_f32(f["features_bits"]), _f32(f["targets_bits"]), 1)
        else:
            w = np.array(f["window"], dtype=np.uint32)
            row = _native.language_model_rows(w, len(w) - 1)
        assert row.hex() == case["bytes"]


def test_native_window_counts():
    for case in VECTORS["text_windows"]:
        assert _native.text_windows(case["tokens"], case["context"]) == case["windows"]


def test_native_rows_refuse_ragged_buffers():
    with pytest.raises(ValueError, match="whole number"):
        _native.classification_rows(np.zeros(5, np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="whole number of windows"):
        _native.language_model_rows(np.zeros(7, np.uint32), 3)
    with pytest.raises(ValueError, match="at least one target"):
        _native.regression_rows(np.zeros(4, np.float32), np.zeros(0, np.float32), 2)


def test_pipeline_text_corpus_has_the_vectors_root(tmp_path):
    t = VECTORS["text_corpus"]
    (tmp_path / "corpus.txt").write_bytes(bytes.fromhex(t["bytes"]))
    d = load_dataset(TextDataset(path=str(tmp_path / "corpus.txt"), context=t["context"]))
    assert d.task == "language_model" and len(d) == len(t["windows"])
    assert np.concatenate([d.x[:, :1], d.y], axis=1).tolist() == t["windows"]
    assert d.root().hex() == t["dataset_root"]


def test_pipeline_rows_are_the_vectors_bytes():
    c = VECTORS["classification"][0]["fields"]
    d = Dataset(x=_f32(c["features_bits"])[None, :], y=np.array([c["label"]]), classes=4)
    assert d.canonical_rows()[0].tobytes().hex() == VECTORS["classification"][0]["bytes"]
    r = VECTORS["regression"][1]["fields"]
    d = Dataset(
        x=_f32(r["features_bits"])[None, :],
        y=_f32(r["targets_bits"])[None, :],
        task="regression",
    )
    assert d.canonical_rows()[0].tobytes().hex() == VECTORS["regression"][1]["bytes"]


def test_classification_rows_are_todays_bytes():
    # The layout classification runs committed to before tasks existed: features f32 LE, then the
    # label i64 LE, built here with numpy alone. Their dataset roots must not move.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 2, 3)).astype(np.float32)
    y = rng.integers(0, 5, size=9)
    d = Dataset(x=x, y=y, classes=5)
    feats = x.reshape(9, -1).astype("<f4").view(np.uint8)
    labels = y.astype("<i8").reshape(-1, 1).view(np.uint8)
    assert np.array_equal(d.canonical_rows(), np.concatenate([feats, labels], axis=1))


def test_a_folder_corpus_is_its_files_in_path_byte_order(tmp_path):
    # Relative paths as bytes: "B" (0x42) < "a" (0x61), "a.txt" < "a/", "é" (0xc3 0xa9) last.
    files = {"a/z.txt": b"3", "a.txt": b"2", "B": b"1", "\u00e9": b"5", "a/b/c": b"4"}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    order = [p.relative_to(tmp_path).as_posix() for p in corpus_files(tmp_path)]
    assert order == ["B", "a.txt", "a/b/c", "a/z.txt", "\u00e9"]
    d = load_dataset(TextDataset(path=str(tmp_path), context=2))
    assert np.concatenate([d.x[:, :1], d.y], axis=1).tolist() == [list(b"124"), list(b"435")]


def test_a_folder_corpus_reads_linked_files_not_linked_folders(tmp_path):
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "sub" / "f").write_bytes(b"a")
    (tmp_path / ".hidden").write_bytes(b"b")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link").symlink_to(tmp_path / "real")
    (tmp_path / "flink").symlink_to(tmp_path / "real" / "sub" / "f")
    order = [p.relative_to(tmp_path).as_posix() for p in corpus_files(tmp_path)]
    assert order == [".hidden", "flink", "real/sub/f"]
