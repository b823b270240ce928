"""The verifier's own rules, against the real thing: the tensor layout a spec implies
(pipeline/checkpoint/tensors.py) and a checkpoint's state digest (pipeline/checkpoint/digest.py)
against the state torch builds, this machine's replayable profile (pipeline/run/determinism.py)
against torch's own answer, all found without importing torch, and the verifier's receipt sightings
(pipeline/verify/finality.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import ROOT

from veritrain.pipeline.checkpoint.digest import checkpoint_digest
from veritrain.pipeline.checkpoint.tensors import (
    DTYPES,
    check_tensors,
    expected_tensors,
    read_header,
)
from veritrain.pipeline.data.datasets import Dataset
from veritrain.pipeline.errors import IntegrityError, StorageError, UsageError
from veritrain.pipeline.run.determinism import (
    MACHINE_FIELDS,
    DeterminismProfile,
    load_profiles,
    machine_profile,
)
from veritrain.pipeline.run.manifest import Manifest, open_ledger
from veritrain.pipeline.run.spec import parse_spec
from veritrain.pipeline.store.local import LocalStore
from veritrain.pipeline.train import state as st
from veritrain.pipeline.train.networks import build_model, build_optimizer
from veritrain.pipeline.verify.finality import Sighting, first_sightings, window_start

MANIFEST = bytes(range(32))
SPECS = {
    "mlp-sgd-momentum": {
        "model": {"kind": "mlp", "hidden": [16, 5]},
        "dataset": {"kind": "synthetic", "features": 8, "classes": 3},
        "optimizer": {"kind": "sgd", "momentum": 0.9},
    },
    "mlp-no-hidden-sgd": {"model": {"kind": "mlp", "hidden": []}, "dataset": {"kind": "digits"}},
    "cnn-adam": {
        "model": {"kind": "cnn", "channels": [4, 6]},
        "dataset": {"kind": "digits"},
        "optimizer": {"kind": "adam"},
    },
    "mlp-file-adam": {
        "model": {"kind": "mlp", "hidden": [7]},
        "dataset": {"kind": "file", "path": "unused.npz"},
        "optimizer": {"kind": "adam", "weight_decay": 0.1},
    },
}


def _trained_checkpoint(spec, steps: int) -> bytes:
    features, classes = (8, 3) if spec.dataset.kind == "synthetic" else (64, 10)
    torch.manual_seed(0)
    shape = Dataset(np.zeros((1, features), np.float32), np.zeros(1, np.int64), classes)
    model = build_model(spec, shape)
    optimizer = build_optimizer(spec, model.parameters())
    for _ in range(steps):
        for g in optimizer.param_groups:
            g["lr"] = 0.01
        model(torch.randn(4, features)).sum().backward()
        optimizer.step()
    return st.checkpoint_bytes(st.state_tensors(model, optimizer, steps, MANIFEST))


@pytest.mark.parametrize("steps", [0, 2])
@pytest.mark.parametrize("name", SPECS)
def test_the_layout_a_spec_implies_is_the_state_torch_builds(name, steps):
    spec = parse_spec(SPECS[name])
    data = _trained_checkpoint(spec, steps)
    found = read_header(data, "ck")
    assert {n: (t.dtype, t.shape) for n, t in found.items() if n != "rng/torch"} == (
        expected_tensors(spec, steps, found)
    )
    check_tensors(spec, steps, found, data, "ck", MANIFEST)
    loaded = st.load_checkpoint(data, "ck")
    for n, t in found.items():  # the header reader's byte ranges are the tensors' bytes
        assert data[t.start : t.end] == loaded[n].reshape(-1).view(torch.uint8).numpy().tobytes()


def test_another_spec_does_not_build_the_checkpoint():
    spec = parse_spec(SPECS["cnn-adam"])
    data = _trained_checkpoint(spec, 1)
    other = parse_spec({**SPECS["cnn-adam"], "model": {"kind": "cnn", "channels": [4, 7]}})
    with pytest.raises(IntegrityError, match=r"ck: not the state the run's spec \(cnn, adam\)"):
        check_tensors(other, 1, read_header(data, "ck"), data, "ck", MANIFEST)
    sgd = parse_spec({**SPECS["cnn-adam"], "optimizer": {"kind": "sgd", "momentum": 0.5}})
    with pytest.raises(IntegrityError, match="lacks optim/0/momentum_buffer"):
        check_tensors(sgd, 1, read_header(data, "ck"), data, "ck", MANIFEST)
    with pytest.raises(IntegrityError, match="ck: holds another manifest digest than run.json's"):
        check_tensors(spec, 1, read_header(data, "ck"), data, "ck", bytes(32))


def _file(header: dict, body: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + body


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x01", "shorter than its header length"),
        (b"\xff" * 8 + b"{}", "header is longer than the file"),
        ((4).to_bytes(8, "little") + b"nope", "not JSON"),
        (_file([]), "not an object"),
        (
            _file({"x": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}}, b"a"),
            "no valid dtype",
        ),
        (_file({"x": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}), "outside the file"),
    ],
)
def test_a_bad_safetensors_header_is_an_integrity_error(data, words):
    with pytest.raises(
        IntegrityError, match=f"ck: not a readable safetensors checkpoint: .*{words}"
    ):
        read_header(data, "ck")


@pytest.mark.parametrize("steps", [0, 2])
@pytest.mark.parametrize("name", SPECS)
def test_a_checkpoints_digest_without_torch_is_the_one_of_its_live_tensors(name, steps):
    spec = parse_spec(SPECS[name])
    data = _trained_checkpoint(spec, steps)
    loaded = st.load_checkpoint(data, "ck")
    assert checkpoint_digest(data, "ck") == st.digest_tensors(loaded)


def test_every_dtype_and_shape_digests_the_same_without_torch():
    tensors = {
        f"t/{name}": torch.arange(-3, 9).reshape(3, 4).to(dtype)
        for dtype, name in st._DTYPES.items()
    }
    tensors["t/strided"] = torch.arange(24.0).reshape(4, 6)[:, ::2]  # not contiguous
    tensors["t/empty"] = torch.zeros(0, 5)
    tensors["t/scalar"] = torch.tensor(2.5, dtype=torch.float64)
    tensors["t/big"] = torch.arange(600_000, dtype=torch.float32)  # several 1 MiB chunks
    data = st.checkpoint_bytes(tensors)
    assert checkpoint_digest(data, "ck") == st.digest_tensors(tensors)
    one = {"t/F32": tensors["t/F32"]}
    assert checkpoint_digest(st.checkpoint_bytes(one), "ck") != st.digest_tensors(tensors)


def test_a_trained_runs_checkpoints_digest_as_its_ledger_says_without_torch(unproven_run):
    root, run_id = unproven_run
    store = LocalStore(root)
    _, entries = open_ledger(store, Manifest.load(store, run_id))
    bodies = [e.body for e in entries if e.kind == "checkpoint"]
    bodies += [e.body.checkpoint for e in entries if e.kind == "epoch"]
    assert len(bodies) >= 2
    for body in bodies:
        data = store.read(body.checkpoint)
        digest = checkpoint_digest(data, body.checkpoint)
        assert digest.hex() == body.state_digest
        assert digest == st.digest_tensors(st.load_checkpoint(data, body.checkpoint))


@pytest.mark.parametrize(
    ("tensors", "body"),
    [
        # A gap between tensors, overlapping tensors, a size that is not dtype x shape, and
        # trailing bytes: each passes the header reader but not safetensors' own.
        ({"a": ("U8", [2], [0, 2]), "b": ("U8", [2], [3, 5])}, b"12345"),
        ({"a": ("U8", [2], [0, 2]), "b": ("U8", [2], [1, 3])}, b"123"),
        ({"a": ("F32", [2], [0, 4])}, b"1234"),
        ({"a": ("U8", [2], [0, 2])}, b"123"),
    ],
)
def test_a_file_safetensors_rejects_has_no_state_digest(tensors, body):
    header = {n: {"dtype": d, "shape": sh, "data_offsets": o} for n, (d, sh, o) in tensors.items()}
    data = _file(header, body)
    read_header(data, "ck")
    with pytest.raises(IntegrityError, match="^ck: not a readable safetensors checkpoint: "):
        checkpoint_digest(data, "ck")
    with pytest.raises(IntegrityError, match="^ck: not a readable safetensors checkpoint: "):
        st.load_checkpoint(data, "ck")


def test_layout_and_state_name_the_same_dtypes():
    assert set(st._DTYPES.values()) == DTYPES


def test_this_machines_profile_without_torch_is_torchs_own():
    mine, source = machine_profile()
    assert mine is not None and "this machine" in source
    assert mine.machine_difference(DeterminismProfile.current(threads=3)) is None


def test_verification_rules_import_no_torch():
    code = (
        "import sys\n"
        "import veritrain.pipeline.run.determinism, veritrain.pipeline.checkpoint.tensors\n"
        "import veritrain.pipeline.verify.finality, veritrain.pipeline.checkpoint.digest\n"
        "import veritrain.pipeline.verify.disputes, veritrain.pipeline.verify.verifier\n"
        "import veritrain.pipeline.verify.audit\n"
        "veritrain.pipeline.run.determinism.machine_profile()\n"
        "assert 'torch' not in sys.modules, 'torch'\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr


def test_a_profile_differs_for_replay_only_in_machine_fields():
    a = DeterminismProfile.current(threads=1)
    assert a.machine_difference(a.model_copy(update={"threads": 8})) is None
    assert a.machine_difference(a.model_copy(update={"cpu_capability": "DEFAULT!"})) == (
        "cpu_capability"
    )
    assert set(MACHINE_FIELDS) == set(DeterminismProfile.model_fields) - {"threads"}


def test_profiles_load_from_one_object_or_a_list(tmp_path):
    p = DeterminismProfile.current(threads=2).model_dump()
    one, many = tmp_path / "one.json", tmp_path / "many.json"
    one.write_text(json.dumps(p))
    many.write_text(json.dumps([p, {**p, "torch_version": "9.9"}]))
    assert [x.torch_version for x in load_profiles(many)][1] == "9.9"
    assert load_profiles(one) == [DeterminismProfile.model_validate(p)]
    many.write_text(json.dumps([p, {**p, "extra": 1}]))
    with pytest.raises(UsageError, match="not a determinism profile"):
        load_profiles(many)


def test_a_receipt_is_first_seen_once(tmp_path):
    a, b = Sighting("run-a", 0, "aa" * 32), Sighting("run-a", 1, "bb" * 32)
    assert first_sightings([a], 100.0, tmp_path) == {a.key: 100.0}
    assert first_sightings([a, b], 500.0, tmp_path) == {a.key: 100.0, b.key: 500.0}
    # A receipt with other bytes for the same epoch is another receipt: seen afresh.
    c = Sighting("run-a", 0, "cc" * 32)
    assert first_sightings([c], 900.0, tmp_path)[c.key] == 900.0
    assert first_sightings([], 1000.0, tmp_path) == {}


def test_concurrent_verifiers_keep_every_sighting(tmp_path):
    seen = [Sighting(f"run-{i}", 0, f"{i:064x}") for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda s: first_sightings([s], 1.0, tmp_path), seen))
    assert len(json.loads((tmp_path / "sightings.json").read_text())) == 40


def test_a_broken_sightings_file_is_a_storage_error(tmp_path):
    (tmp_path / "sightings.json").write_text('{"x": "yesterday"}')
    with pytest.raises(StorageError, match="sightings.json: not a sightings file"):
        first_sightings([Sighting("r", 0, "aa" * 32)], 1.0, tmp_path)


def test_an_unwritable_state_folder_is_a_storage_error_naming_the_variable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="VERITRAIN_STATE"):
        first_sightings([Sighting("r", 0, "aa" * 32)], 1.0, blocker / "state")


def test_the_window_starts_at_the_later_of_sighting_and_server_time():
    assert window_start(100.0, None) == 100.0
    assert window_start(100.0, 50.0) == 100.0
    assert window_start(100.0, 150.0) == 150.0
