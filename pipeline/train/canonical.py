"""The canonical training mode (``arithmetic: canonical``, PROTOCOL.md §15): the MLP's state as
named numpy arrays, stepped by the core's fixed-point ``mlp_step`` (veritrain.prover), digested
and checkpointed like torch mode's states. No torch: the trainer, a challenger's replay and the
guest compute the same bits on any machine, with any thread count.

State tensors (the torch mode's names where they exist): ``param/{i}.weight`` I32 ``[out, in]``
and ``param/{i}.bias`` I32 ``[out]`` (Q8.24; ``i`` the Linear's index in the Sequential, 1, 3,
5, ...); ``optim/{j}/momentum_buffer`` I32 (SGD) or ``optim/{j}/exp_avg`` I32 and
``optim/{j}/exp_avg_sq`` U64 (Adam), ``j`` the parameter's position, present from step 0;
``step`` I64 ``[1]``; ``manifest`` U8 ``[32]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from veritrain.pipeline.checkpoint.digest import digest_named
from veritrain.pipeline.checkpoint.tensors import canonical_tensors
from veritrain.pipeline.data.datasets import Dataset
from veritrain.pipeline.data.sampler import batch_indices
from veritrain.pipeline.errors import IntegrityError
from veritrain.pipeline.run.manifest import canonical_settings
from veritrain.pipeline.run.spec import MlpModel, RunSpec
from veritrain.pipeline.train.step import StepResult, Tamper
from veritrain.prover import (
    batch_digest,
    canonical_init,
    canonical_step,
    hparams_digest,
)

_DTYPES = {np.dtype("<i4"): "I32", np.dtype("<u8"): "U64", np.dtype("<i8"): "I64"}
_DTYPES[np.dtype("u1")] = "U8"


def dims(spec: RunSpec, in_features: int, classes: int) -> list[int]:
    """The MLP's layer widths: input, hidden..., classes."""
    assert isinstance(spec.model, MlpModel)
    return [in_features, *spec.model.hidden, classes]


def digest_arrays(tensors: dict[str, np.ndarray], threads: int | None = None) -> bytes:
    """The state digest (PROTOCOL.md §8) of named arrays."""
    items = []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        items.append((name, _DTYPES[a.dtype], list(a.shape), a.reshape(-1).view(np.uint8)))
    return digest_named(items, threads)


class CanonicalState:
    """A canonical run's live training state, updated in place by ``step``."""

    def __init__(self, spec: RunSpec, dataset: Dataset, manifest: bytes):
        self.spec = spec
        self.schedule = spec.schedule_for(len(dataset))
        self.dims = dims(spec, dataset.in_features, dataset.classes)
        self.settings = canonical_settings(spec)
        self.layout = canonical_tensors(spec, self.dims)
        self.manifest = manifest
        self.step = 0
        self.arrays: dict[str, np.ndarray] = {}
        init = canonical_init(spec.seed, self.dims)
        params = [(n, s) for n, (d, s) in self.layout.items() if n.startswith("param/")]
        for (name, shape), raw in zip(params, init, strict=True):
            self.arrays[name] = np.frombuffer(raw, dtype="<i4").reshape(shape).copy()
        for name, (dtype, shape) in self.layout.items():
            if name.startswith("optim/"):
                self.arrays[name] = np.zeros(shape, dtype="<u8" if dtype == "U64" else "<i4")
        self._params = [self.arrays[n] for n, _ in params]
        adam = self.settings.optimizer == "adam"
        key = "exp_avg" if adam else "momentum_buffer"
        self._m = [self.arrays[f"optim/{j}/{key}"] for j in range(len(params))]
        self._v = [self.arrays[f"optim/{j}/exp_avg_sq"] for j in range(len(params))] if adam else []

    def tensors(self) -> dict[str, np.ndarray]:
        """The whole state (arrays shared with the live state: digest before the next step)."""
        t = dict(self.arrays)
        t["step"] = np.array([self.step], dtype="<i8")
        t["manifest"] = np.frombuffer(self.manifest, dtype=np.uint8).copy()
        return t

    def param_tensors(self) -> dict[str, np.ndarray]:
        return {n: a for n, a in self.arrays.items() if n.startswith("param/")}

    def train(self, step: int, rows: np.ndarray) -> tuple[float, float]:
        """Global step ``step`` on the batch's canonical sample rows; (loss, grad norm)."""
        lr = self.schedule.lr_at(step)
        loss, norm = canonical_step(
            self.settings, self.dims, self._params, self._m, self._v, lr, rows, step + 1
        )
        self.step = step + 1
        return loss, norm

    def restore(self, data: bytes, source: str) -> int:
        """Loads a checkpoint into the live state; returns its step counter. Raises
        IntegrityError naming ``source`` unless it holds exactly this model's state."""
        try:
            loaded = st_load(data)
        except (SafetensorError, ValueError, RuntimeError) as e:
            raise IntegrityError(f"{source}: not a readable safetensors checkpoint: {e}") from None
        for name in sorted(set(self.layout) | set(loaded)):
            a, want = loaded.get(name), self.layout.get(name)
            if want is None:
                raise IntegrityError(
                    f"{source}: not a canonical state of the run's model: it has {name}"
                )
            shown = "nothing" if a is None else f"{_DTYPES.get(a.dtype, a.dtype)} {list(a.shape)}"
            if a is None or (_DTYPES.get(a.dtype), a.shape) != want:
                raise IntegrityError(
                    f"{source}: not a canonical state of the run's model: {name} is {shown}, "
                    f"the model has {want[0]} {list(want[1])}"
                )
        if bytes(loaded["manifest"]) != self.manifest:
            raise IntegrityError(f"{source}: holds another manifest digest than run.json's")
        for name, a in self.arrays.items():
            a[...] = loaded[name]
        self.step = int(loaded["step"][0])
        return self.step


def checkpoint_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    return st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()})


class CanonicalStepper:
    """One canonical training step: the same ``StepResult`` as torch mode's ``Stepper`` (the
    trainer and a replay both step through this)."""

    def __init__(
        self,
        run_id: str,
        spec: RunSpec,
        spe: int,
        opt_digest: bytes,
        dataset: Dataset,
        state: CanonicalState,
        tamper: Tamper | None = None,
    ):
        self.run_id, self.spec, self.spe, self.opt_digest = run_id, spec, spe, opt_digest
        self.state, self.tamper = state, tamper
        self.n = len(dataset)
        self.rows = dataset.canonical_rows()

    def batch(self, step: int) -> np.ndarray:
        return batch_indices(self.spec, self.n, step)

    def step(self, step: int, before_update: Callable[[], None] | None = None) -> StepResult:
        """Trains global step ``step``. ``before_update`` runs before the state changes."""
        idx = self.batch(step)
        used = idx if self.tamper is None else self.tamper.batch(step, idx)
        if before_update is not None:
            before_update()
        loss, grad_norm = self.state.train(step, np.ascontiguousarray(self.rows[used]))
        if self.tamper is not None:
            self.tamper.after_update(step, self.state, None)
        return StepResult(
            run_id=self.run_id,
            epoch=step // self.spe,
            step=step,
            batch_digest=batch_digest(idx.tolist()),
            hparams_digest=hparams_digest(self.state.schedule.lr_at(step), self.opt_digest),
            loss=loss,
            grad_norm=grad_norm,
        )
