"""The training state as named tensors: digests, and safetensors checkpoints.

Names: ``param/<name>``, ``buffer/<name>``, ``optim/<param index>/<key>``, ``rng/torch``, ``step``
and ``manifest`` (the run's manifest digest, pipeline/run/manifest.py, so that every state digest
binds run.json). The state digest covers all of them, the param digest only ``param/*``. Both are
over tensors (name, dtype, shape, bytes), never file bytes, so anyone recomputes them from a
checkpoint, without torch (pipeline/checkpoint/digest.py). This module holds what needs torch: the
state of live objects, and loading a checkpoint into them."""

from __future__ import annotations

import os

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from veritrain.pipeline.checkpoint.digest import digest_named
from veritrain.pipeline.errors import IntegrityError

# safetensors' dtype names, which the tensor digest binds.
_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.uint64: "U64",  # a canonical state's Adam second moments (pipeline/train/canonical.py)
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def state_tensors(
    model: nn.Module, optimizer: torch.optim.Optimizer, step: int, manifest: bytes
) -> dict[str, torch.Tensor]:
    """The whole training state after ``step`` completed steps, with the run's manifest digest.
    Tensors share memory with the live objects (no copies): digest them before the next
    optimizer step writes to them."""
    t: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        t[f"param/{name}"] = p.detach()
    for name, b in model.named_buffers():
        t[f"buffer/{name}"] = b.detach()
    for idx, st in optimizer.state_dict()["state"].items():
        for key, v in st.items():
            if torch.is_tensor(v):
                t[f"optim/{idx}/{key}"] = v.detach()
    t["rng/torch"] = torch.get_rng_state()
    t["step"] = torch.tensor([step], dtype=torch.int64)
    t["manifest"] = torch.tensor(list(manifest), dtype=torch.uint8)
    return t


def torch_objects(
    model: nn.Module | None, optimizer: torch.optim.Optimizer | None
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The live model and optimizer of a torch-mode run. A canonical run builds neither
    (pipeline/train/trainer.py, ``prepare``), and its code paths never ask for them."""
    if model is None or optimizer is None:
        raise TypeError("a canonical run has no torch model or optimizer")
    return model, optimizer


def param_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"param/{name}": p.detach() for name, p in model.named_parameters()}


def _buffer(t: torch.Tensor) -> np.ndarray | bytearray:
    flat = t.contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy() if flat.numel() else bytearray()


def digest_tensors(tensors: dict[str, torch.Tensor], threads: int | None = None) -> bytes:
    """State digest (Merkle root of tensor digests sorted by name), hashed in parallel in Rust on
    ``threads`` threads (default: all cores)."""
    items = []
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name}: dtype {t.dtype} has no safetensors name")
        items.append((name, _DTYPES[t.dtype], list(t.shape), _buffer(t)))
    return digest_named(items, threads)


def spare_cores() -> int:
    """Cores torch leaves free: the overlapped parameter digest runs on these only."""
    return max(1, (os.cpu_count() or 1) - torch.get_num_threads())


def checkpoint_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return st_save({k: v.contiguous() for k, v in tensors.items()})


def load_checkpoint(data: bytes, source: str) -> dict[str, torch.Tensor]:
    """Parses a safetensors checkpoint (never pickle). Raises IntegrityError naming ``source``."""
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise IntegrityError(f"{source}: not a readable safetensors checkpoint: {e}") from None


def _require_fits(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    live: dict[str, torch.Tensor] = {f"param/{n}": p for n, p in model.named_parameters()}
    live |= {f"buffer/{n}": b for n, b in model.named_buffers()}
    stored = {n for n in tensors if n.startswith(("param/", "buffer/"))}
    for name in sorted(set(live) | stored | {"rng/torch", "step", "manifest"}):
        t, want = tensors.get(name), live.get(name)
        if t is None or (want is not None and (t.shape, t.dtype) != (want.shape, want.dtype)):
            shown = "nothing" if t is None else f"{t.dtype} {list(t.shape)}"
            needs = "" if want is None else f", the model has {want.dtype} {list(want.shape)}"
            raise IntegrityError(
                f"{source}: not a state of the run's model: {name} is {shown}{needs}"
            )
        if want is None and name.startswith(("param/", "buffer/")):
            raise IntegrityError(f"{source}: not a state of the run's model: it has {name}")
    n = len(live) - sum(1 for k in live if k.startswith("buffer/"))
    for name in tensors:
        if name.startswith("optim/"):
            _, idx, _ = name.split("/", 2)
            if not idx.isdigit() or int(idx) >= n:
                raise IntegrityError(f"{source}: {name} names no parameter of the run's model")


def restore(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    source: str = "checkpoint",
) -> int:
    """Loads a state into live objects; returns the step counter. Raises IntegrityError naming
    ``source`` if the state is not one of this model (another spec's checkpoint, say)."""
    _require_fits(model, tensors, source)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(tensors[f"param/{name}"])
        for name, b in model.named_buffers():
            b.copy_(tensors[f"buffer/{name}"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("optim/"):
            _, idx, k = key.split("/", 2)
            state.setdefault(int(idx), {})[k] = v.clone()
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    torch.set_rng_state(tensors["rng/torch"])
    return int(tensors["step"][0])
