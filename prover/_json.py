"""The JSON forms of the core's types as pydantic models: what a pydantic field of that type reads
and writes, and what its published JSON schema says. The core checks the values
(veritrain.prover.results)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Schedule(BaseModel):
    """Learning-rate schedule; only kinds the guest can recompute bit for bit (see PROTOCOL.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["constant", "step_decay", "linear_warmup", "cosine", "inverse_sqrt"] = "constant"
    base_lr: float
    step_size: int | None = None
    gamma: float | None = None
    warmup_steps: int | None = None
    min_lr: float | None = None
    total_steps: int | None = None
