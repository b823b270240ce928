"""What crosses the prover boundary. Step records, epoch claims (= journals) and schedules are the
Rust core's own types (``StepRecord``, ``EpochClaim``, ``Schedule``: frozen classes with
``to_bytes``/``from_bytes``, and for claims and schedules ``to_json``/``from_json``); receipts and
prover statistics are pydantic models here. Digests are ``bytes`` in Python and hex in JSON."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    PlainSerializer,
    PlainValidator,
)
from pydantic_core import core_schema

from veritrain.prover import _json
from veritrain.prover._native import GUARANTEES, TORCH_MODE, EpochClaim, Schedule, StepRecord
from veritrain.prover.errors import EncodingError, message

GUARANTEE_NAMES = {bit: name for name, bit in GUARANTEES.items()}


def _to_digest(v: Any) -> bytes:
    if isinstance(v, str):
        try:
            v = bytes.fromhex(v)
        except ValueError as e:
            raise ValueError("a digest is 64 hex characters") from e
    if not isinstance(v, (bytes, bytearray)) or len(v) != 32:
        raise ValueError("a digest is 32 bytes (64 hex characters)")
    return bytes(v)


# A digest field of a pydantic model (run.json's): bytes in Python, lowercase hex in JSON.
Digest = Annotated[
    bytes, PlainValidator(_to_digest), PlainSerializer(lambda b: b.hex(), return_type=str)
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _schedule_schema(
    cls: type[Schedule], source: Any, handler: GetCoreSchemaHandler
) -> core_schema.CoreSchema:
    def validate(value: Any, fields: core_schema.ValidatorFunctionWrapHandler) -> Schedule:
        if isinstance(value, Schedule):
            return value
        return Schedule(**fields(value).model_dump(exclude_none=True))

    return core_schema.no_info_wrap_validator_function(
        validate,
        handler.generate_schema(_json.Schedule),
        serialization=core_schema.plain_serializer_function_ser_schema(Schedule.to_json),
    )


def _claim_schema(
    cls: type[EpochClaim], source: Any, handler: GetCoreSchemaHandler
) -> core_schema.CoreSchema:
    def validate(value: Any) -> EpochClaim:
        if isinstance(value, EpochClaim):
            return value
        try:
            return EpochClaim.from_json(value)
        except EncodingError as e:
            raise ValueError(message(e)) from None  # pydantic names the field

    return core_schema.no_info_plain_validator_function(
        validate,
        serialization=core_schema.plain_serializer_function_ser_schema(EpochClaim.to_json),
    )


# pydantic looks for these hooks on the class itself (a field's default is serialized by its
# type); the Rust classes have no pydantic of their own, so the hooks are attached here, once.
# The stub (_native.pyi) declares the Rust classes as they are, without the hooks: hence the
# ignores.
Schedule.__get_pydantic_core_schema__ = classmethod(_schedule_schema)  # type: ignore[attr-defined]
EpochClaim.__get_pydantic_core_schema__ = classmethod(_claim_schema)  # type: ignore[attr-defined]


class ProverStats(_Frozen):
    user_cycles: int
    # Paging in and out the memory pages the guest touches; total is the segments' padded sizes.
    paging_cycles: int
    total_cycles: int
    segments: int
    seconds: float


class ProofPart(_Frozen):
    """A part of an epoch's proof that ``prove_epoch`` finished: the execution (``stats`` set), a
    segment proven and lifted, a join, or the resolve of the previous epoch's receipt (from epoch
    1 on). ``index`` counts from 1 among the parts of its kind, of ``count``."""

    kind: Literal["execute", "segment", "join", "resolve"]
    index: int
    count: int
    seconds: float
    stats: ProverStats | None = None


class _WithClaim(_Frozen):
    model_config = ConfigDict(arbitrary_types_allowed=True)


class ExecuteResult(_WithClaim):
    claim: EpochClaim
    stats: ProverStats


class Execution(_WithClaim):
    """One execution of the guest, cut into segments that can be proven independently."""

    claim: EpochClaim
    segments: list[bytes]
    stats: ProverStats


class EpochReceipt(_WithClaim):
    """A real RISC Zero receipt for one epoch (succinct; composite in protocol 1 runs), with its
    decoded journal; ``stats`` when the receipt was proven here, in one process."""

    receipt: bytes
    claim: EpochClaim
    stats: ProverStats | None = None


__all__ = [
    "GUARANTEE_NAMES",
    "Digest",
    "TORCH_MODE",
    "EpochClaim",
    "EpochReceipt",
    "ExecuteResult",
    "Execution",
    "ProofPart",
    "ProverStats",
    "Schedule",
    "StepRecord",
]
