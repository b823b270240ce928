"""Every check `veritrain run` can make before it starts anything (the Prefect server, the flow) or
writes anything: the spec, the run id, the store's URI and reachability, the dataset, the model
(its factory, its size against this machine's memory, one forward pass of one batch) and, when the
run exists, whether this environment may resume it. Each failure is the error the run itself would
raise later, naming the spec file, the flag or the object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from veritrain.pipeline.data.datasets import Dataset, load_dataset
from veritrain.pipeline.errors import SpecError, UsageError
from veritrain.pipeline.run.code import one_line
from veritrain.pipeline.run.ledger import install_run_key, public_key_hex, read_trainer_key
from veritrain.pipeline.run.manifest import Manifest, default_run_id
from veritrain.pipeline.run.spec import (
    U64_MAX,
    ImportedOptimizer,
    RunSpec,
    SgdOptimizer,
    check_sizes,
    load_spec,
    parse_spec,
    resolve_paths,
)
from veritrain.pipeline.store.base import Store, open_store
from veritrain.pipeline.store.keys import manifest_key
from veritrain.pipeline.store.uris import check_run_id, check_store_uri
from veritrain.pipeline.train.losses import Batches, Loss, build_loss, expected_outputs
from veritrain.pipeline.train.networks import parameter_bytes
from veritrain.pipeline.train.trainer import check_resumable, prepare


@dataclass(frozen=True)
class Plan:
    """What the checks admitted: the spec, where the run goes, and its id."""

    spec: RunSpec
    store_uri: str
    run_id: str


def preflight(
    spec_source: str | Path | RunSpec | dict[str, Any],
    store: str | None = None,
    run_id: str | None = None,
    key: str | None = None,
) -> Plan:
    """Checks a run before it starts. ``spec_source`` is a spec file (YAML or JSON), a spec
    (its paths made absolute against the current folder) or a mapping of its keys; ``store``,
    ``run_id`` and ``key`` are the command line's ``--store``, ``--run-id`` and ``--key`` (None
    when not given). The one thing written, once every check passed: ``--key``'s key as the run's
    key file."""
    trainer_key = read_trainer_key(key) if key is not None else None
    spec, spec_path = _spec_of(spec_source)
    run_id = default_run_id(spec) if run_id is None else check_run_id(run_id, "--run-id")
    if store is None:
        store_uri, where = spec.store, f"{spec_path}: store"
    else:
        store_uri, where = check_store_uri(store, "--store"), "--store"
    opened = open_store(store_uri, where)
    opened.probe()
    try:
        _dry_run(spec)
    except SpecError as e:
        raise SpecError(f"{spec_path}: {e}") from None
    _check_existing(opened, spec, run_id, trainer_key, key)
    if trainer_key is not None and key is not None:  # both are --key's
        install_run_key(run_id, trainer_key, key)
    return Plan(spec, store_uri, run_id)


def _spec_of(source: str | Path | RunSpec | dict[str, Any]) -> tuple[RunSpec, str]:
    """The spec and the name its errors go by (the file, or ``spec``)."""
    if isinstance(source, RunSpec):
        return resolve_paths(source), "spec"
    if isinstance(source, dict):
        return parse_spec(source, "spec"), "spec"
    return load_spec(source), str(source)


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _dry_run(spec: RunSpec) -> None:
    """Builds what training builds and runs one batch forward, so that a model that cannot be
    imported, called, allocated or fed the dataset fails here and not in the flow."""
    try:
        dataset = load_dataset(spec.dataset, spec.task)
    except MemoryError:
        raise SpecError("dataset: too large to generate in this machine's memory") from None
    check_sizes(spec, len(dataset))
    # Parameters, their gradients and the optimizer's per-parameter state are resident at once.
    # An imported optimizer is counted as Adam-like: two slots.
    o = spec.optimizer
    slots = int(o.momentum > 0) if isinstance(o, SgdOptimizer) else 2
    size = parameter_bytes(spec, dataset)
    available = _available_memory()
    if size is not None and available is not None and size * (2 + slots) > available:
        gib = 2**30
        raise SpecError(
            f"model: {size / gib:.1f} GiB of parameters need at least "
            f"{size * (2 + slots) / gib:.1f} GiB to train (parameters, gradients, optimizer "
            f"state); this machine has {available / gib:.1f} GiB available"
        )
    _profile, dataset, model, optimizer = prepare(spec, dataset)
    batch = spec.batch_size
    if model is None:
        _canonical_dry_run(spec, dataset)
        return
    x, y = Batches(dataset)[np.arange(batch)]
    loss = build_loss(spec)
    try:
        with torch.no_grad():
            _check_loss(spec, dataset, loss, model(x), y)
    except SpecError:
        raise
    except Exception as e:  # noqa: BLE001 - the model's own forward code may raise anything
        detail = " ".join(str(e).split())
        raise SpecError(
            f"model: the forward pass of one batch fails: {type(e).__name__}: {detail}"
        ) from None
    if isinstance(o, ImportedOptimizer) and optimizer is not None:
        _optimizer_dry_run(spec, o, optimizer, loss(model(x), y))


def _check_loss(spec: RunSpec, dataset: Dataset, loss: Loss, out: Any, y: torch.Tensor) -> None:
    """The outputs of one batch fit the task's loss (its shape), or the imported loss gives a
    scalar tensor for them."""
    if spec.loss is None:
        want = expected_outputs(dataset, len(y))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            what = "outputs" if spec.task == "regression" else "logits"
            raise SpecError(
                f"model: gives {shape} for a batch of {len(y)}; task {spec.task} needs "
                f"{what} of shape {want}"
            )
        loss(out, y)
        return
    try:
        value = loss(out, y)
    except Exception as e:  # noqa: BLE001 - the user's loss may raise anything
        raise SpecError(
            f"loss.fn: {spec.loss.fn}(outputs, targets) fails on one batch: {one_line(e)}"
        ) from None
    if not isinstance(value, torch.Tensor) or value.ndim != 0:
        got = (
            f"shape {tuple(value.shape)}"
            if isinstance(value, torch.Tensor)
            else type(value).__name__
        )
        raise SpecError(f"loss.fn: {spec.loss.fn} returned {got}, not a scalar tensor")


def _optimizer_dry_run(
    spec: RunSpec,
    o: ImportedOptimizer,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
) -> None:
    """One step of an imported optimizer on the throwaway model: a checkpoint holds tensors
    only, so an optimizer keeping other state could not be resumed or replayed exactly."""
    loss.backward()
    for g in optimizer.param_groups:
        g["lr"] = spec.schedule.for_run(U64_MAX).lr_at(0)  # step 0's: the run's length aside
    try:
        optimizer.step()
    except Exception as e:  # noqa: BLE001 - the optimizer's own step may raise anything
        raise SpecError(
            f"optimizer.class: the first step of {o.class_} fails: {one_line(e)}"
        ) from None
    for state in optimizer.state_dict()["state"].values():
        for key, value in state.items():
            if value is not None and not torch.is_tensor(value):
                raise SpecError(
                    f"optimizer.class: {o.class_} keeps its state {key!r} as "
                    f"{type(value).__name__}; a checkpoint holds tensors only, so a resume or "
                    "a replay could not restore it"
                )


def _canonical_dry_run(spec: RunSpec, dataset: Dataset) -> None:
    """One canonical step on the first batch, on a throwaway state: what the core refuses (more
    than 256 classes, a learning rate outside [-2, 2)) fails here."""
    from veritrain.pipeline.train.canonical import CanonicalState

    state = CanonicalState(spec, dataset, bytes(32))
    try:
        state.train(0, dataset.canonical_rows()[: spec.batch_size])
    except ValueError as e:
        raise SpecError(f"arithmetic: canonical: the first step fails: {e}") from None


def _check_existing(
    store: Store,
    spec: RunSpec,
    run_id: str,
    trainer_key: Ed25519PrivateKey | None,
    source: str | None,
) -> None:
    """A run that exists must be resumable here (the same checks as opening it to train), and
    signed by ``--key``'s key when one is given."""
    if store.exists(manifest_key(run_id)):
        manifest = Manifest.load(store, run_id)
        check_resumable(manifest, spec)
        signer = manifest.public_key.hex()
        if trainer_key is not None and public_key_hex(trainer_key) != signer:
            raise UsageError(
                f"--key {source}: run {run_id} is signed by another key "
                f"({signer}); resume it without --key or use a new run id"
            )
