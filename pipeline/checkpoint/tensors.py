"""The tensors a checkpoint must hold, derived from the run's spec in pure Python, and a reader of
safetensors headers: verify compares the two without importing torch.

A checkpoint holds the whole training state after ``step`` steps (pipeline/train/state.py):
``param/<name>`` for each parameter, ``optim/<param index>/<key>`` for the optimizer's state (none
before the first step), ``rng/torch`` (torch's CPU generator state, bytes), ``step`` (the step
counter, one I64) and ``manifest`` (the digest of run.json, 32 U8). The parameter names and shapes
of the built-in models follow pipeline/train/networks.py; tests/test_trust_rules.py checks this
module against the states torch builds."""

from __future__ import annotations

from dataclasses import dataclass

from veritrain.pipeline.documents import DocumentError, load_json
from veritrain.pipeline.errors import IntegrityError
from veritrain.pipeline.run.spec import (
    CnnModel,
    ImportedModel,
    ImportedOptimizer,
    MlpModel,
    RunSpec,
)
from veritrain.pipeline.run.tasks import DiabetesDataset, DigitsDataset, SyntheticDataset

Shape = tuple[int, ...]
# The safetensors dtype names a state digest binds (pipeline/train/state.py maps torch's dtypes to
# them).
DTYPES = frozenset({"F64", "F32", "F16", "BF16", "U64", "I64", "I32", "I16", "I8", "U8", "BOOL"})
# safetensors' own limit on a header (its MAX_HEADER_SIZE): a header scales with the tensor count.
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: Shape
    start: int  # byte range in the file
    end: int


def read_header(data: bytes, source: str) -> dict[str, TensorInfo]:
    """The tensors a safetensors file declares (its header is JSON after a u64 length), with
    each tensor's byte range checked to lie in the file. Raises IntegrityError naming ``source``."""

    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"{source}: not a readable safetensors checkpoint: {why}")

    if len(data) < 8:
        raise bad("shorter than its header length")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise bad("its header is longer than the file")
    try:
        doc = load_json(data[8 : 8 + n], MAX_HEADER_BYTES)
    except DocumentError as e:
        raise bad(f"its header is {e}") from None
    except ValueError as e:
        raise bad(f"its header is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise bad("its header is not an object")
    body = len(data) - 8 - n
    out: dict[str, TensorInfo] = {}
    for name, t in doc.items():
        if name == "__metadata__":
            continue
        ok = isinstance(t, dict) and t.get("dtype") in DTYPES
        shape, offsets = (t.get("shape"), t.get("data_offsets")) if ok else (None, None)
        if (
            not isinstance(shape, list)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0
                for i in [*shape, *offsets]
            )
        ):
            raise bad(
                f"tensor {name!r} has no valid dtype (one of {', '.join(sorted(DTYPES))}), "
                "shape and data_offsets"
            )
        start, end = offsets
        if not start <= end <= body:
            raise bad(f"tensor {name!r} lies outside the file")
        out[name] = TensorInfo(t["dtype"], tuple(shape), 8 + n + start, 8 + n + end)
    return out


def _model_params(spec: RunSpec, in_features: int, classes: int) -> list[tuple[str, Shape]]:
    """(name, shape) of each parameter in the order torch's ``named_parameters`` gives them."""
    m = spec.model
    out: list[tuple[str, Shape]] = []
    if isinstance(m, MlpModel):
        # nn.Sequential(Flatten, Linear, ReLU, ..., Linear): Linear k sits at index 2k + 1.
        width = in_features
        for k, h in enumerate([*m.hidden, classes]):
            out += [(f"{2 * k + 1}.weight", (h, width)), (f"{2 * k + 1}.bias", (h,))]
            width = h
    elif isinstance(m, CnnModel):
        # nn.Sequential(Unflatten, (Conv2d, ReLU)*, AdaptiveAvgPool2d(2), Flatten, Linear).
        c_in = 1
        for k, c in enumerate(m.channels):
            out += [(f"{2 * k + 1}.weight", (c, c_in, 3, 3)), (f"{2 * k + 1}.bias", (c,))]
            c_in = c
        last = 2 * len(m.channels) + 3
        out += [(f"{last}.weight", (classes, c_in * 4)), (f"{last}.bias", (classes,))]
    return out


def _optimizer_state(spec: RunSpec, shape: Shape) -> dict[str, tuple[str, Shape]]:
    """A parameter's optimizer state after the first step (torch's SGD and Adam)."""
    o = spec.optimizer
    if o.kind == "sgd":
        return {"momentum_buffer": ("F32", shape)} if o.momentum > 0 else {}
    return {"step": ("F32", ()), "exp_avg": ("F32", shape), "exp_avg_sq": ("F32", shape)}


def _known_features(spec: RunSpec) -> int | None:
    """Features per sample where the spec alone says (the input width of an MLP's first layer)."""
    if isinstance(spec.dataset, DigitsDataset):
        return 64
    if isinstance(spec.dataset, SyntheticDataset):
        return spec.dataset.features
    if isinstance(spec.dataset, DiabetesDataset):
        return 10
    return None


def expected_tensors(
    spec: RunSpec, step: int, found: dict[str, TensorInfo]
) -> dict[str, tuple[str, Shape]] | None:
    """Name -> (dtype, shape) of every tensor but ``rng/torch`` that the spec's model and
    optimizer hold after ``step`` steps; None where either is ``kind: import`` (code). The
    dataset's class count, and its feature count where the spec does not state it, are read from
    ``found``'s outer layers: the dataset decides them, not the spec. An imported loss changes
    no tensor."""
    if isinstance(spec.model, ImportedModel) or isinstance(spec.optimizer, ImportedOptimizer):
        return None
    names = [name for name, _ in _model_params(spec, 0, 0)]
    first, last = names[0], names[-1]
    bias = found.get(f"param/{last}")
    classes = bias.shape[0] if bias is not None and len(bias.shape) == 1 else 0
    features = _known_features(spec)
    if features is None:
        weight = found.get(f"param/{first}")
        features = weight.shape[-1] if weight is not None and weight.shape else 0
    # A canonical spec names an MLP (pipeline/run/spec.py); isinstance says so to the type checker.
    if spec.arithmetic == "canonical" and isinstance(spec.model, MlpModel):
        return canonical_tensors(spec, [features, *spec.model.hidden, classes])
    params = _model_params(spec, features, classes)
    out = {f"param/{name}": ("F32", shape) for name, shape in params}
    if step > 0:
        for i, (_, shape) in enumerate(params):
            for key, info in _optimizer_state(spec, shape).items():
                out[f"optim/{i}/{key}"] = info
    out["step"] = ("I64", (1,))
    out["manifest"] = ("U8", (32,))
    return out


def canonical_tensors(spec: RunSpec, widths: list[int]) -> dict[str, tuple[str, Shape]]:
    """Name -> (dtype, shape) of every tensor of a canonical state (PROTOCOL.md §15) of an MLP of
    layer widths ``widths``: I32 parameters and optimizer state (U64 for Adam's second moments),
    present from step 0, the step counter and the manifest digest."""
    out: dict[str, tuple[str, Shape]] = {}
    shapes: list[tuple[str, Shape]] = []
    for k, (n_in, n_out) in enumerate(zip(widths, widths[1:], strict=False)):
        shapes += [(f"{2 * k + 1}.weight", (n_out, n_in)), (f"{2 * k + 1}.bias", (n_out,))]
    for j, (name, shape) in enumerate(shapes):
        out[f"param/{name}"] = ("I32", shape)
        if spec.optimizer.kind == "adam":
            out[f"optim/{j}/exp_avg"] = ("I32", shape)
            out[f"optim/{j}/exp_avg_sq"] = ("U64", shape)
        else:
            out[f"optim/{j}/momentum_buffer"] = ("I32", shape)
    out["step"] = ("I64", (1,))
    out["manifest"] = ("U8", (32,))
    return out


def check_tensors(
    spec: RunSpec,
    step: int,
    found: dict[str, TensorInfo],
    data: bytes,
    source: str,
    manifest: bytes,
) -> None:
    """Raises IntegrityError naming ``source`` unless the checkpoint holds exactly the tensors
    ``expected_tensors`` gives, a 1-D U8 ``rng/torch`` (torch mode only), a step counter equal
    to ``step`` and the digest ``manifest`` of the run's manifest."""
    expected = expected_tensors(spec, step, found)
    # A torch state's generator state has no fixed size; a canonical state has none.
    rng = set() if spec.arithmetic == "canonical" else {"rng/torch"}
    if expected is not None:
        missing = sorted(set(expected) - set(found) - rng)
        extra = sorted(set(found) - set(expected) - rng)
        wrong = sorted(
            n for n in set(expected) & set(found) if (found[n].dtype, found[n].shape) != expected[n]
        )
        problems = []
        if missing:
            problems.append(f"lacks {', '.join(missing)}")
        if extra:
            problems.append(f"has {', '.join(extra)}, which the spec does not build")
        if wrong:
            n = wrong[0]
            problems.append(
                f"has {n} as {found[n].dtype}{list(found[n].shape)} where the spec builds "
                f"{expected[n][0]}{list(expected[n][1])}"
                + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else "")
            )
        if problems:
            raise IntegrityError(
                f"{source}: not the state the run's spec ({spec.model.kind}, "
                f"{spec.optimizer.kind}) builds after step {step}: {'; '.join(problems)}"
            )
    gen = found.get("rng/torch")
    if rng and (gen is None or gen.dtype != "U8" or len(gen.shape) != 1):
        raise IntegrityError(f"{source}: has no 1-D U8 rng/torch (the generator state)")
    counter = found.get("step")
    if counter is None or (counter.dtype, counter.shape) != ("I64", (1,)):
        raise IntegrityError(f"{source}: has no I64[1] step counter")
    value = int.from_bytes(data[counter.start : counter.end], "little", signed=True)
    if value != step:
        raise IntegrityError(f"{source}: its step counter is {value}, not {step}")
    held = found.get("manifest")
    if held is None or (held.dtype, held.shape) != ("U8", (32,)):
        raise IntegrityError(f"{source}: holds no manifest digest (U8[32])")
    if data[held.start : held.end] != manifest:
        raise IntegrityError(
            f"{source}: holds another manifest digest than run.json's: the manifest was changed "
            "after this state was committed"
        )


def same_layout(a: dict[str, TensorInfo], b: dict[str, TensorInfo]) -> bool:
    """Same parameter and buffer names, dtypes and shapes (optimizer state appears after step 0)."""

    def model_part(h: dict[str, TensorInfo]) -> dict[str, tuple[str, Shape]]:
        return {n: (t.dtype, t.shape) for n, t in h.items() if n.startswith(("param/", "buffer/"))}

    return model_part(a) == model_part(b)
