"""Sharded datasets in an S3 prefix (pipeline/data/sources.py, cache.py), against the real S3
servers of tests/s3servers.py: on s3s-fs, one run by `veritrain run` with its epoch proven (16
samples in three shards, batch 4: one small segment), verified, challenged honestly, and with a
shard replaced in the bucket refused by challenge and audit naming it; on moto, a listing, ranged
reads in parts and the cache's budget on an unproven run; the cache's own rules without a server.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import yaml
from conftest import veritrain
from s3servers import moto_s3, s3s_fs, set_s3_env  # noqa: F401 - fixtures
from safetensors.numpy import save

from veritrain.pipeline.challenge.search import challenge
from veritrain.pipeline.data import sources
from veritrain.pipeline.data.cache import BUDGET_ENV, ShardCache, budget_from_env
from veritrain.pipeline.data.datasets import load_dataset
from veritrain.pipeline.errors import DatasetChangedError, SpecError, StorageError
from veritrain.pipeline.run.manifest import Manifest
from veritrain.pipeline.run.spec import parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train.loop import train
from veritrain.pipeline.train.trainer import open_trainer
from veritrain.pipeline.verify.verifier import verify_run

SIZES = (6, 6, 4)  # 16 samples: 4 steps of 4, one epoch
SPEC = {
    "model": {"kind": "mlp", "hidden": [8]},
    "seed": 2,
    "epochs": 1,
    "batch_size": 4,
    "state_every": 2,
    "checkpoint_every": 2,
    "challenge_window": 0,
}


def _shards(sizes=SIZES, seed: int = 4) -> list[bytes]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=sum(sizes)).astype(np.int64)
    x = (rng.normal(size=(sum(sizes), 3)) + y[:, None]).astype(np.float32)
    starts = np.cumsum([0, *sizes])
    return [save({"x": x[a:b], "y": y[a:b]}) for a, b in zip(starts, starts[1:], strict=False)]


def _upload(client, bucket: str, prefix: str, blobs: list[bytes]) -> list[str]:
    keys = [f"part-{i:03d}.safetensors" for i in range(len(blobs))]
    for k, b in zip(keys, blobs, strict=True):
        client.put_object(Bucket=bucket, Key=f"{prefix}/{k}", Body=b)
    return keys


def _one_line(r, code: int, *words: str) -> None:
    err = r.stderr.strip()
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture(scope="module")
def s3_run(s3s_fs, tmp_path_factory):  # noqa: F811
    """`veritrain run` of a spec whose dataset is an S3 prefix on s3s-fs, its epoch proven.
    Returns (server, bucket, store, run id, cache folder, the shards' bytes)."""
    tmp = tmp_path_factory.mktemp("s3-shards")
    with pytest.MonkeyPatch.context() as mp:
        set_s3_env(mp, s3s_fs.endpoint)
        mp.setenv("VERITRAIN_CACHE", str(tmp / "cache"))
        client = s3s_fs.client()
        # Named, not random: the bucket is in the spec, so the run is the same from one session
        # to the next and its receipt can come from the receipt cache (tests/conftest.py).
        bucket = s3s_fs.new_bucket(name="vt-s3-shards")
        blobs = _shards()
        _upload(client, bucket, "data/digits", blobs)
        # A "folder" under the prefix is not a shard, as a subfolder is not locally.
        client.put_object(Bucket=bucket, Key="data/digits/old/part-000.safetensors", Body=b"x")
        spec = {**SPEC, "dataset": {"kind": "shards", "uri": f"s3://{bucket}/data/digits"}}
        spec["dataset"]["format"] = "safetensors"
        (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
        store = tmp / "store"
        r = veritrain("run", str(tmp / "spec.yaml"), "--store", str(store), "--run-id", "s3sh")
        (tmp / "run.log").write_text(r.stderr)
        assert r.returncode == 0, r.stderr[-3000:]
        yield s3s_fs, bucket, LocalStore(store), "s3sh", tmp / "cache", blobs


@pytest.mark.proving
def test_an_s3_sharded_run_is_proven_and_verified(s3_run):
    _server, _bucket, store, run_id, cache, blobs = s3_run
    m = Manifest.load(store, run_id)
    assert m.dataset_len == 16 and m.dataset_shards is not None
    assert [s.key for s in m.dataset_shards] == [f"part-{i:03d}.safetensors" for i in range(3)]
    sha = [hashlib.sha256(b).hexdigest() for b in blobs]
    assert [s.sha256 for s in m.dataset_shards] == sha
    assert sorted(p.name for p in (cache / "shards").iterdir()) == sorted(sha)
    report = verify_run(store, run_id)
    assert report.ok, [c for e in report.epochs for c in e.checks if not c.ok]
    assert [e.status for e in report.epochs] == ["final"]
    assert store.exists(f"runs/{run_id}/receipts/epoch-000000.receipt")


@pytest.mark.proving
def test_an_s3_sharded_run_is_challenged_honestly(s3_run, monkeypatch):
    server, _bucket, store, run_id, cache, _ = s3_run
    set_s3_env(monkeypatch, server.endpoint)
    monkeypatch.setenv("VERITRAIN_CACHE", str(cache))
    for p in (cache / "shards").iterdir():  # the replay fetches them again
        p.unlink()
    res = challenge(store, run_id)
    assert res.finding is None and res.replayed_steps == 4
    assert len(list((cache / "shards").iterdir())) == 3
    assert store.list(f"runs/{run_id}/challenges/") == []


@pytest.mark.proving
def test_a_shard_replaced_in_the_bucket_is_refused_by_challenge_and_audit(
    s3_run, monkeypatch, tmp_path
):
    server, bucket, store, run_id, cache, blobs = s3_run
    set_s3_env(monkeypatch, server.endpoint)
    monkeypatch.setenv("VERITRAIN_CACHE", str(cache))
    client = server.client()
    key = "data/digits/part-001.safetensors"
    client.put_object(Bucket=bucket, Key=key, Body=_shards(seed=9)[1])  # same shapes, other data
    try:
        with pytest.raises(DatasetChangedError, match=rf"s3://{bucket}/{key}: not the shard"):
            challenge(store, run_id)
        uri = f"{store.root}/runs/{run_id}"
        _one_line(veritrain("challenge", uri), 3, f"s3://{bucket}/{key}: not the shard")
        out = tmp_path / "audit"
        r = veritrain("audit", uri, "--epoch", "0", "--out", str(out), "--dataset")
        _one_line(r, 3, f"s3://{bucket}/{key}: not the shard", "runs/s3sh/run.json records")
        assert not out.exists()
        client.delete_object(Bucket=bucket, Key=key)
        r = veritrain("audit", uri, "--epoch", "0", "--out", str(out), "--dataset")
        _one_line(r, 3, f"s3://{bucket}/data/digits/part-002.safetensors", "(2 here, 3 recorded")
        assert not out.exists()
        assert store.list(f"runs/{run_id}/challenges/") == []
    finally:
        client.put_object(Bucket=bucket, Key=key, Body=blobs[1])
    r = veritrain("audit", uri, "--epoch", "0", "--out", str(out), "--json", "--dataset")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["epochs"][0]["status"] == "final"


def test_a_shard_replaced_between_its_parts_is_refused(moto_s3, monkeypatch):  # noqa: F811
    """The parts of one shard are pinned to the first part's ETag (If-Match): an object replaced
    by another of the same size mid-read is refused by name, not read as a mix of both."""
    set_s3_env(monkeypatch, moto_s3.endpoint)
    client = moto_s3.client()
    bucket = moto_s3.new_bucket()
    old, new = _shards(sizes=[16])[0], _shards(sizes=[16], seed=9)[0]
    assert len(old) == len(new) and old != new
    client.put_object(Bucket=bucket, Key="p/a.st", Body=old)
    monkeypatch.setattr(sources, "PART_SIZE", 64)
    real = sources.S3Store.read_range

    def replaced_after_the_first_part(s, key, start, stop, etag=""):
        if start == 64:
            client.put_object(Bucket=bucket, Key=f"p/{key}", Body=new)
        return real(s, key, start, stop, etag)

    source = sources.S3Source(f"s3://{bucket}/p")
    assert source.read("a.st") == old
    monkeypatch.setattr(sources, "PARTS_AT_ONCE", 1)  # the replacement comes before later parts
    monkeypatch.setattr(sources.S3Store, "read_range", replaced_after_the_first_part)
    with pytest.raises(DatasetChangedError, match=rf"s3://{bucket}/p/a.st: the shard changed"):
        source.read("a.st")


def test_moto_lists_reads_in_parts_and_trains(moto_s3, monkeypatch, tmp_path):  # noqa: F811
    set_s3_env(monkeypatch, moto_s3.endpoint)
    monkeypatch.setenv("VERITRAIN_CACHE", str(tmp_path / "cache"))
    client = moto_s3.client()
    bucket = moto_s3.new_bucket()
    blobs = _shards()
    # Keys sorted as bytes: "B" before "a"; the prefix names a folder, not a name's start.
    names = ["a.st", "B.st", "c.st"]
    for name, blob in zip(names, blobs, strict=True):
        client.put_object(Bucket=bucket, Key=f"p/{name}", Body=blob)
    client.put_object(Bucket=bucket, Key="p/sub/x.st", Body=b"ignored")
    client.put_object(Bucket=bucket, Key="pp/y.st", Body=b"not under p/")
    monkeypatch.setattr(sources, "PART_SIZE", 64)  # every shard in several ranged GETs
    monkeypatch.setenv(BUDGET_ENV, str(max(map(len, blobs))))  # room for one shard at a time
    reads = []
    real = sources.S3Store.read_range
    monkeypatch.setattr(sources.S3Store, "read_range", lambda s, *a: reads.append(a) or real(s, *a))
    spec = parse_spec(
        {
            **SPEC,
            "finalize_every": 0,
            "dataset": {"kind": "shards", "uri": f"s3://{bucket}/p", "format": "safetensors"},
        }
    )
    d = load_dataset(spec.dataset)
    entries = d.shard_entries()
    assert entries is not None and [e["key"] for e in entries] == ["B.st", "a.st", "c.st"]
    assert len(reads) > 3 * 2 and max(b - a for _, a, b, *_ in reads) == 64
    # Built again in this process (the preflight, then each epoch's trainer): listed, and an
    # object whose ETag is the one read is not fetched again; a replaced one is.
    read = len(reads)
    assert load_dataset(spec.dataset).shard_entries() == entries and len(reads) == read
    client.put_object(Bucket=bucket, Key="p/c.st", Body=blobs[0])
    again = load_dataset(spec.dataset).shard_entries()
    assert again is not None and {r[0] for r in reads[read:]} == {"c.st"}
    assert again[2]["sha256"] == hashlib.sha256(blobs[0]).hexdigest()
    client.put_object(Bucket=bucket, Key="p/c.st", Body=blobs[2])
    assert [e["sha256"] for e in entries] == [
        hashlib.sha256(b).hexdigest() for b in (blobs[1], blobs[0], blobs[2])
    ]
    # Samples come memory-mapped from the cache entry (checked once on its first read).
    d.take(np.arange(len(d)))
    held = d.shards._held  # type: ignore[union-attr]
    assert held and all(isinstance(a.base, np.memmap) for v in held.values() for a in v.values())
    store = LocalStore(tmp_path / "store")
    train(open_trainer(spec, store, "moto"))
    assert verify_run(store, "moto").ok
    held = ShardCache(tmp_path / "cache" / "shards", 1 << 30).entries()
    assert len(held) == 1 and held[0] in [e["sha256"] for e in entries]
    # An empty prefix and an unreachable endpoint: one line naming the prefix.
    with pytest.raises(SpecError, match=rf"s3://{bucket}/q/: no shard objects"):
        load_dataset(spec.dataset.model_copy(update={"uri": f"s3://{bucket}/q"}))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(StorageError, match=rf"s3://{bucket}/p/: cannot reach the S3 endpoint"):
        load_dataset(spec.dataset)


def test_the_cache_is_checked_bounded_and_atomic(tmp_path, monkeypatch):
    blobs = [bytes([i]) * (100 + i) for i in range(4)]
    sha = [hashlib.sha256(b).hexdigest() for b in blobs]
    cache = ShardCache(tmp_path / "c", budget=250)
    cache.put(sha[0], blobs[0])
    cache.put(sha[1], blobs[1])
    os.utime(tmp_path / "c" / sha[1], ns=(1, 1))  # 1 used longer ago than 0
    assert cache.get(sha[0]) == blobs[0]
    cache.put(sha[2], blobs[2])  # over the budget: the least recently used goes
    assert cache.entries() == sorted([sha[0], sha[2]])
    with pytest.raises(ValueError, match="another sha256"):
        cache.put(sha[3], blobs[2])
    (tmp_path / "c" / sha[0]).write_bytes(b"rot")  # a bad entry is dropped, not served
    assert cache.get(sha[0]) is None and cache.entries() == [sha[2]]
    ShardCache(tmp_path / "c", budget=10).put(sha[3], blobs[3])  # larger than the budget
    assert cache.entries() == [sha[2]]
    assert [p.name for p in (tmp_path / "c").iterdir()] == [sha[2]]  # no temporary files left
    for raw, n in [("", 4 << 30), ("1000", 1000), ("2M", 2 << 20), ("3GiB", 3 << 30)]:
        monkeypatch.setenv(BUDGET_ENV, raw)
        assert budget_from_env() == n
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(StorageError, match=f"{BUDGET_ENV}='lots' is not a size"):
        budget_from_env()
