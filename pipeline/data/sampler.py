"""The sampler's batches (PROTOCOL.md §5): which samples each step trains on.

The core cuts each epoch's permutation into batches (``prover.epoch_batches``); this module only
keeps the last epochs' batches, so that a trainer, a replay and the guest's input agree by
construction.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from veritrain.pipeline.run.spec import RunSpec
from veritrain.prover import epoch_batches, steps_per_epoch


@lru_cache(maxsize=2)
def _epoch(seed: int, epoch: int, n: int, batch_size: int) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(b, dtype=np.int64) for b in epoch_batches(seed, epoch, n, batch_size))


def batch_indices(spec: RunSpec, n: int, step: int) -> np.ndarray:
    """The indices global step ``step`` of a run over ``n`` samples trains on (shared: read it,
    do not write it)."""
    epoch, k = divmod(step, steps_per_epoch(n, spec.batch_size))
    return _epoch(spec.seed, epoch, n, spec.batch_size)[k]
