"""Pydantic models for what crosses the prover boundary: schedules, epoch claims (= journals),
receipts and prover statistics. Digests are ``bytes`` in Python and lowercase hex in JSON."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, model_validator

from prover import _native


def _to_digest(v: Any) -> bytes:
    if isinstance(v, str):
        try:
            v = bytes.fromhex(v)
        except ValueError as e:
            raise ValueError("a digest is 64 hex characters") from e
    if not isinstance(v, (bytes, bytearray)) or len(v) != 32:
        raise ValueError("a digest is 32 bytes (64 hex characters)")
    return bytes(v)


Digest = Annotated[
    bytes, PlainValidator(_to_digest), PlainSerializer(lambda b: b.hex(), return_type=str)
]

GUARANTEE_NAMES = {
    1 << 0: "structure",
    1 << 1: "sampler",
    1 << 2: "schedule",
    1 << 3: "lineage",
    1 << 4: "arithmetic",
}
TORCH_MODE = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(_Frozen):
    """Learning-rate schedule; only kinds the guest can recompute bit for bit (see PROTOCOL.md)."""

    kind: Literal["constant", "step_decay", "linear_warmup"] = "constant"
    base_lr: float
    step_size: int | None = None
    gamma: float | None = None
    warmup_steps: int | None = None

    @model_validator(mode="after")
    def _fields_match_kind(self) -> Schedule:
        needs = {
            "constant": set(),
            "step_decay": {"step_size", "gamma"},
            "linear_warmup": {"warmup_steps"},
        }
        given = {k for k in ("step_size", "gamma", "warmup_steps") if getattr(self, k) is not None}
        if given != needs[self.kind]:
            extra = sorted(needs[self.kind]) or "no"
            raise ValueError(f"schedule kind {self.kind!r} takes exactly {extra} extra fields")
        _native.schedule_lr(self.native(), 0)  # validates ranges with the core's rules
        return self

    def native(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    def lr_at(self, step: int) -> float:
        return _native.schedule_lr(self.native(), step)


class EpochClaim(_Frozen):
    """What the trainer asserts about one epoch; a receipt's journal is exactly this claim."""

    guarantees: int = TORCH_MODE
    run_id: str
    epoch: int
    first_step: int
    step_count: int
    prev_record_hash: Digest
    last_record_hash: Digest
    records_root: Digest
    start_state_digest: Digest
    end_state_digest: Digest
    dataset_root: Digest
    dataset_len: int
    sampler_seed: int
    batch_size: int
    optimizer_digest: Digest
    schedule: Schedule
    image_id: Digest

    @property
    def guarantee_names(self) -> list[str]:
        return [name for bit, name in GUARANTEE_NAMES.items() if self.guarantees & bit]

    def native(self) -> dict[str, Any]:
        d = dict(self)
        d["schedule"] = self.schedule.native()
        return d

    def to_bytes(self) -> bytes:
        return _native.encode_claim(self.native())

    @classmethod
    def from_bytes(cls, data: bytes) -> EpochClaim:
        return cls.model_validate(_native.decode_claim(data))

    def journal_json(self) -> dict[str, Any]:
        """The ``.journal.json`` document: the claim in hex, with its guarantees spelled out."""
        return {**self.model_dump(mode="json"), "guarantee_names": self.guarantee_names}


class ProverStats(_Frozen):
    user_cycles: int
    # Paging in and out the memory pages the guest touches; total is the segments' padded sizes.
    paging_cycles: int
    total_cycles: int
    segments: int
    seconds: float


class ExecuteResult(_Frozen):
    claim: EpochClaim
    stats: ProverStats


class Execution(_Frozen):
    """One execution of the guest, cut into segments that can be proven independently."""

    claim: EpochClaim
    segments: list[bytes]
    stats: ProverStats


class EpochReceipt(_Frozen):
    """A real RISC Zero receipt for one epoch (succinct; composite in protocol 1 runs), with its
    decoded journal; ``stats`` when the receipt was proven here, in one process."""

    receipt: bytes
    claim: EpochClaim
    stats: ProverStats | None = None
