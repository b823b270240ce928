"""The state digest of named tensors, and of a checkpoint file, without torch.

A tensor is (name, safetensors dtype name, shape, its raw little-endian bytes); the state digest
is the Merkle root of the tensor digests sorted by name (PROTOCOL.md). Training digests its live
tensors through pipeline/train/state.py, which hands their buffers to ``digest_named``; a verifier
digests a checkpoint's bytes with ``checkpoint_digest``, which needs only the ``safetensors``
package: the same function over the same bytes, so both give the same digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safetensors import SafetensorError, deserialize

from veritrain.pipeline.checkpoint.tensors import DTYPES
from veritrain.pipeline.errors import IntegrityError
from veritrain.prover import state_digest, tensor_digests

# (name, dtype, shape, buffer): what the Rust digest takes, zero-copy from the buffer.
NamedTensor = tuple[str, str, Sequence[int], Any]


def digest_named(items: Sequence[NamedTensor], threads: int | None = None) -> bytes:
    """State digest (Merkle root of tensor digests sorted by name), hashed in parallel in Rust on
    ``threads`` threads (default: all cores)."""
    digests = tensor_digests(list(items), threads)
    return state_digest([(name, d) for (name, *_), d in zip(items, digests, strict=True)])


def read_checkpoint(data: bytes, source: str) -> list[NamedTensor]:
    """The tensors of a safetensors checkpoint (never pickle), as safetensors' own reader parses
    and validates them (the one ``safetensors.torch.load`` uses). Raises IntegrityError naming
    ``source``."""
    try:
        parsed = deserialize(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise IntegrityError(f"{source}: not a readable safetensors checkpoint: {e}") from None
    items: list[NamedTensor] = []
    for name, t in parsed:
        if t["dtype"] not in DTYPES:
            raise IntegrityError(
                f"{source}: tensor {name!r} has dtype {t['dtype']}, which a state digest does "
                f"not bind (one of {', '.join(sorted(DTYPES))})"
            )
        items.append((name, t["dtype"], list(t["shape"]), t["data"]))
    return items


def checkpoint_digest(data: bytes, source: str) -> bytes:
    """The state digest of a checkpoint file's tensors. Raises IntegrityError naming ``source``."""
    return digest_named(read_checkpoint(data, source))
