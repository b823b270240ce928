"""Sharded datasets in a local folder (pipeline/data/shards.py, PROTOCOL.md §4 "Sharded
datasets"): the root over the shards' roots, lazy reads a few shards at a time (memory-mapped
where the format allows, trusted by file status, hashed again when it changed), a run that
trains, verifies and replays, a shard changed after the run committed it named by key, and the
bad inputs' one-line refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from veritrain.flows.cli import main
from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.data import shards as shards_module
from veritrain.pipeline.data import sources
from veritrain.pipeline.data.datasets import load_dataset
from veritrain.pipeline.errors import DatasetChangedError, SpecError
from veritrain.pipeline.run.manifest import Manifest
from veritrain.pipeline.run.spec import load_spec, parse_spec
from veritrain.pipeline.run.tasks import ShardsDataset
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer
from veritrain.pipeline.verify.audit import check_dataset
from veritrain.pipeline.verify.verifier import verify_run
from veritrain.prover import dataset_root, sharded_root

BASE = {
    "epochs": 1,
    "batch_size": 16,
    "state_every": 2,
    "checkpoint_every": 4,
    "finalize_every": 0,
    "challenge_window": 0,
}
SIZES = (7, 20, 1, 12, 9, 15)  # 64 samples in 6 shards


def _data(n: int = sum(SIZES)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=n)
    x = (rng.normal(size=(n, 5)) + y[:, None]).astype(np.float32)
    return x, y.astype(np.int64)


def _write(folder: Path, fmt: str = "safetensors", sizes=SIZES) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    x, y = _data(sum(sizes))
    at = 0
    for i, n in enumerate(sizes):
        name = folder / f"part-{i:03d}.{fmt}"
        if fmt == "safetensors":
            save_file({"x": x[at : at + n], "y": y[at : at + n]}, str(name))
        else:
            np.savez(name, x=x[at : at + n], y=y[at : at + n])
        at += n
    return x, y


def _spec(folder: Path, **doc):
    path = folder / "spec.yaml"
    dataset = {"kind": "shards", "uri": "shards", "format": "safetensors"}
    path.write_text(yaml.safe_dump({**BASE, "dataset": dataset, **doc}))
    return load_spec(path)


def test_the_root_is_over_the_shards_roots_and_reads_are_lazy(tmp_path, monkeypatch):
    x, y = _write(tmp_path / "shards")
    d = load_dataset(ShardsDataset(uri=str(tmp_path / "shards"), format="safetensors"))
    assert len(d) == 64 and d.classes == 3 and d.in_features == 5
    rows = np.concatenate([x.view(np.uint8).reshape(64, -1), y.view(np.uint8).reshape(64, -1)], 1)
    pairs, at = [], 0
    for n in SIZES:
        pairs.append((n, dataset_root(rows[at : at + n], rows.shape[1])))
        at += n
    assert d.root() == sharded_root(pairs) != dataset_root(rows, rows.shape[1])
    entries = d.shard_entries()
    assert entries is not None
    assert [e["key"] for e in entries] == [f"part-{i:03d}.safetensors" for i in range(6)]
    assert [e["samples"] for e in entries] == list(SIZES)
    # Samples by global index, across shards, in the order asked; a few shards held at a time.
    monkeypatch.setattr(shards_module, "HELD_SHARDS", 2)
    idx = np.array([63, 0, 7, 27, 28, 6, 40])
    got_x, got_y = d.take(idx)
    assert np.array_equal(got_x, x[idx]) and np.array_equal(got_y, y[idx])
    assert d.shards is not None and len(d.shards._held) == 2


def test_npz_and_language_model_shards(tmp_path):
    x, y = _write(tmp_path / "npz", fmt="npz", sizes=(5, 3))
    d = load_dataset(ShardsDataset(uri=str(tmp_path / "npz"), format="npz"), "regression")
    assert d.task == "regression" and len(d) == 8 and d.y.shape[1:] == (1,)
    tokens = np.arange(40, dtype=np.uint8).reshape(8, 5)
    (tmp_path / "lm").mkdir()
    np.savez(tmp_path / "lm" / "a.npz", tokens=tokens[:3])
    np.savez(tmp_path / "lm" / "b.npz", tokens=tokens[3:])
    lm = load_dataset(ShardsDataset(uri=str(tmp_path / "lm"), format="npz"), "language_model")
    assert lm.description()["context"] == 4 and len(lm) == 8
    got_x, got_y = lm.take(np.array([4, 1]))
    assert np.array_equal(got_x, tokens[[4, 1], :4]) and np.array_equal(got_y, tokens[[4, 1], 1:])


def _settled(folder: Path) -> None:
    """Date the folder's files (or the one file) an hour back, so their status is trusted (not
    racy)."""
    for p in folder.iterdir() if folder.is_dir() else [folder]:
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - 3600 * 10**9))


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "npz-compressed"])
def test_settled_shards_are_memory_mapped_and_a_rewrite_is_caught(tmp_path, fmt):
    folder = tmp_path / "shards"
    if fmt == "npz-compressed":
        folder.mkdir()
        x, y = _data(16)
        np.savez_compressed(folder / "a.npz", x=x[:9], y=y[:9])
        np.savez_compressed(folder / "b.npz", x=x[9:], y=y[9:])
    else:
        x, y = _write(folder, fmt, sizes=(9, 7))
    _settled(folder)
    d = load_dataset(ShardsDataset(uri=str(folder), format=fmt.split("-")[0]))
    idx = np.array([15, 2, 9, 8])
    got_x, got_y = d.take(idx)
    assert np.array_equal(got_x, x[idx]) and np.array_equal(got_y, y[idx])
    held = d.shards._held  # type: ignore[union-attr]
    mapped = all(isinstance(a.base, np.memmap) for arrays in held.values() for a in arrays.values())
    assert mapped == (fmt != "npz-compressed")
    # The same bytes again (same size), written in place: the status changes, the shard is
    # hashed again, and it is still the shard that was committed.
    path = sorted(folder.iterdir())[1]
    path.write_bytes(path.read_bytes())
    assert np.array_equal(d.take(idx)[0], x[idx])
    # Other bytes of the same size: named, whatever the format.
    data = bytearray(path.read_bytes())
    data[-9] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetChangedError, match=rf"{path.name}: the shard changed"):
        d.take(idx)


def test_a_sharded_run_trains_verifies_and_replays(tmp_path, monkeypatch):
    _write(tmp_path / "project" / "shards")
    monkeypatch.chdir(tmp_path)
    spec = _spec(tmp_path / "project")
    assert spec.dataset.uri == str(tmp_path / "project" / "shards")
    monkeypatch.setattr(shards_module, "HELD_SHARDS", 2)
    store = LocalStore(tmp_path / "store")
    train(open_trainer(spec, store, "sh"))
    m = Manifest.load(store, "sh")
    assert m.dataset_len == 64 and m.dataset_shards is not None
    assert [s.samples for s in m.dataset_shards] == list(SIZES)
    report = verify_run(store, "sh")
    assert report.ok, [c for e in report.epochs for c in e.checks if not c.ok]
    res = challenge(store, "sh")
    assert res.finding is None and res.replayed_steps == 4
    # An auditor's check of the shards, where the run read them or in a copy of them.
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "project" / "shards", copy)
    check_dataset(store, "sh")
    check_dataset(store, "sh", str(copy))
    # A shard replaced after the run committed it: named by key, exit 3, nothing written.
    _write(tmp_path / "other", sizes=(20,))
    (tmp_path / "project" / "shards" / "part-001.safetensors").write_bytes(
        (tmp_path / "other" / "part-000.safetensors").read_bytes()
    )
    with pytest.raises(DatasetChangedError, match=r"part-001\.safetensors: not the shard"):
        challenge(store, "sh")
    assert main(["challenge", f"{store.root}/runs/sh"]) == 3
    with pytest.raises(DatasetChangedError, match=r"part-001\.safetensors: not the shard"):
        check_dataset(store, "sh")
    check_dataset(store, "sh", str(copy))  # the copy is still the run's
    assert main(["challenge", f"{store.root}/runs/sh", "--dataset", str(copy)]) == 0
    assert store.list("runs/sh/challenges/") == []


def test_a_dataset_built_again_in_one_process_reads_only_what_changed(tmp_path, monkeypatch):
    """The preflight, the run and each epoch's trainer build the dataset again: a settled shard
    whose status has not changed since this process checked it is not read or hashed again; a
    shard rewritten, or still racy (too new to trust its status), is."""
    folder = tmp_path / "shards"
    _write(folder)
    _settled(folder)
    reads: list[str] = []
    real = sources.FolderSource.read
    monkeypatch.setattr(sources.FolderSource, "read", lambda s, k: reads.append(k) or real(s, k))
    spec = ShardsDataset(uri=str(folder), format="safetensors")
    first = load_dataset(spec)
    assert len(reads) == len(SIZES)
    again = load_dataset(spec)
    assert len(reads) == len(SIZES)  # nothing read: every shard's status is the one it had
    assert again.root() == first.root() and again.shard_entries() == first.shard_entries()
    idx = np.array([63, 0, 30])
    assert all(np.array_equal(a, b) for a, b in zip(again.take(idx), first.take(idx), strict=True))
    # Another file under a key (same size, other bytes), settled: read again, another root.
    path = folder / "part-004.safetensors"
    x, y = _data(9)
    save_file({"x": x * 2, "y": y}, str(path))
    _settled(path)
    changed = load_dataset(spec)
    assert reads[len(SIZES) :] == ["part-004.safetensors"] and changed.root() != first.root()
    # A shard written just now is racy: read every time until its status can be trusted.
    save_file({"x": x * 3, "y": y}, str(path))
    load_dataset(spec)
    load_dataset(spec)
    assert reads[len(SIZES) + 1 :] == ["part-004.safetensors"] * 2


def test_a_run_of_two_epochs_reads_each_shard_once(tmp_path):
    """`veritrain run` through its Prefect flow (the Python API, in a process of its own): the
    preflight, the run's creation and the two epochs' trainers each build the dataset, and each
    settled shard is read and hashed once in all."""
    _write(tmp_path / "project" / "shards")
    _settled(tmp_path / "project" / "shards")
    spec = _spec(tmp_path / "project", epochs=2)
    script = f"""
import json, sys, veritrain
from veritrain.pipeline.data import sources
reads, real = [], sources.FolderSource.read
sources.FolderSource.read = lambda s, k: reads.append(k) or real(s, k)
uri = veritrain.run({str(tmp_path / "project" / "spec.yaml")!r}, store="store", run_id="thrice")
print(json.dumps({{"uri": uri, "reads": reads}}))
"""
    r = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["uri"] == f"{tmp_path}/store/runs/thrice"
    assert sorted(out["reads"]) == [f"part-{i:03d}.safetensors" for i in range(len(SIZES))]
    assert Manifest.load(LocalStore(tmp_path / "store"), "thrice").spec == spec


def test_a_shard_changed_between_root_and_training_is_named(tmp_path):
    x, y = _write(tmp_path / "project" / "shards")
    spec = _spec(tmp_path / "project")
    store = LocalStore(tmp_path / "store")
    t = open_trainer(spec, store, "moved")
    path = tmp_path / "project" / "shards" / "part-004.safetensors"
    save_file({"x": x[:9] * 2, "y": y[:9]}, str(path))
    with pytest.raises(DatasetChangedError, match=r"part-004\.safetensors: the shard changed"):
        train(t)
    t = open_trainer(_spec(tmp_path / "project"), store, "gone")
    path.unlink()
    with pytest.raises(DatasetChangedError, match=r"part-004\.safetensors: cannot read"):
        train(t)


def _refused(tmp_path: Path, words: str, **dataset) -> None:
    doc = {
        **BASE,
        "dataset": {"kind": "shards", "uri": "shards", "format": "safetensors", **dataset},
    }
    with pytest.raises(SpecError, match=words):
        load_dataset(parse_spec(doc, base=tmp_path).dataset)


def test_bad_shards_are_refused_naming_the_shard(tmp_path):
    (tmp_path / "shards").mkdir()
    _refused(tmp_path, r"shards: no shard files")
    x, y = _write(tmp_path / "shards", sizes=(4, 4))
    save_file({"x": x[:3, :4].copy(), "y": y[:3]}, str(tmp_path / "shards" / "part-002.st"))
    _refused(tmp_path, r"part-002\.st: samples of shape x \(4,\)")
    save_file({"x": x[:3].astype(np.float64), "y": y[:3]}, str(tmp_path / "shards" / "part-002.st"))
    _refused(tmp_path, r"part-002\.st: arrays of dtypes float64, int64; the first shard")
    (tmp_path / "shards" / "part-002.st").write_bytes(b"not a shard")
    _refused(tmp_path, r"part-002\.st: not a safetensors shard")
    (tmp_path / "shards" / "part-002.st").unlink()
    _refused(tmp_path, r"part-000\.safetensors: not a npz shard", format="npz")


def test_spec_rules_for_shards():
    doc = {**BASE, "dataset": {"kind": "shards", "uri": "s3://b/p/", "format": "npz"}}
    assert parse_spec(doc, base="/elsewhere").dataset.uri == "s3://b/p/"  # not a path
    for uri, words in [
        ("gs://b/p", "dataset.uri: gs://b/p: shards are in a local folder or s3://"),
        ("s3:///p", "dataset.uri: s3:///p: no bucket name"),
        ("s3://b/../p", "dataset.uri: s3://b/../p: the prefix after the bucket has an empty"),
    ]:
        with pytest.raises(SpecError, match=words):
            parse_spec({**doc, "dataset": {**doc["dataset"], "uri": uri}})
    doc = {**BASE, "dataset": {"kind": "shards", "uri": "d", "format": "npz"}}
    with pytest.raises(SpecError, match="dataset: arithmetic: canonical does not read sharded"):
        parse_spec({**doc, "arithmetic": "canonical"})
    with pytest.raises(SpecError, match="format"):
        parse_spec({**doc, "dataset": {**doc["dataset"], "format": "csv"}})
