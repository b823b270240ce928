"""The ledger's entry kinds (pipeline/run/ledger.py signs and chains them), as pydantic models.

An entry is ``{"seq", "run_id", "prev", "kind", "body", "entry_hash", "signature"}``; its body
depends on its kind:

- ``run`` (entry 0): ``manifest_sha256``, the sha256 of run.json's bytes.
- ``checkpoint``: a training state the trainer stored (``step``, ``state_digest``,
  ``checkpoint`` key, ``checkpoint_sha256``), with the epoch's records so far
  (``pending_records``, ``pending_sha256``) when it falls inside an epoch.
- ``epoch``: an epoch's ``claim`` (prover.EpochClaim in JSON), its ``records`` key and
  ``records_sha256``, and its end ``checkpoint`` (a checkpoint body).
- ``receipt``: the ``receipt`` and ``journal`` keys of the epoch's proof, ``receipt_sha256``,
  the ``claim_digest`` it proves (PROTOCOL.md §9) and the trainer's ``proven_at`` clock.

Readers get entries parsed once, when the ledger is read: a signature only says the run's key
wrote an entry, and a buggy or dishonest trainer can sign anything, so a malformed body is an
IntegrityError naming the entry's key there, never a KeyError in whoever reads it later. The
writer dumps these models; the dump is the exact JSON the ledger has always signed.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

from veritrain.pipeline.errors import IntegrityError
from veritrain.prover import EpochClaim

Hex32 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Counter = Annotated[int, Field(strict=True, ge=0)]
ObjectKey = Annotated[str, StringConstraints(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunBody(_Model):
    KIND: ClassVar[str] = "run"
    manifest_sha256: Hex32


class CheckpointBody(_Model):
    KIND: ClassVar[str] = "checkpoint"
    step: Counter
    state_digest: Hex32
    checkpoint: ObjectKey
    checkpoint_sha256: Hex32
    pending_records: ObjectKey | None = None
    pending_sha256: Hex32 | None = None

    @model_validator(mode="after")
    def _pending_pair(self) -> CheckpointBody:
        if (self.pending_records is None) != (self.pending_sha256 is None):
            raise ValueError("pending_records and pending_sha256 come together")
        return self

    @model_serializer(mode="wrap")
    def _omit_no_pending(self, handler: Any) -> dict[str, Any]:
        # A checkpoint without pending records has no such fields (not nulls) in its entry.
        out = handler(self)
        if self.pending_records is None:
            del out["pending_records"], out["pending_sha256"]
        return out


class EpochBody(_Model):
    KIND: ClassVar[str] = "epoch"
    epoch: Counter
    claim: EpochClaim
    records: ObjectKey
    records_sha256: Hex32
    checkpoint: CheckpointBody

    @model_validator(mode="after")
    def _claim_of_this_epoch(self) -> EpochBody:
        if self.claim.epoch != self.epoch:
            raise ValueError(f"its claim is of epoch {self.claim.epoch}, not {self.epoch}")
        return self


class ReceiptBody(_Model):
    KIND: ClassVar[str] = "receipt"
    epoch: Counter
    receipt: ObjectKey
    receipt_sha256: Hex32
    journal: ObjectKey
    claim_digest: Hex32
    proven_at: Counter


Body = RunBody | CheckpointBody | EpochBody | ReceiptBody


class _Entry(_Model):
    seq: Counter
    run_id: str
    prev: str
    entry_hash: Hex32
    signature: str


class RunEntry(_Entry):
    kind: Literal["run"]
    body: RunBody


class CheckpointEntry(_Entry):
    kind: Literal["checkpoint"]
    body: CheckpointBody


class EpochEntry(_Entry):
    kind: Literal["epoch"]
    body: EpochBody


class ReceiptEntry(_Entry):
    kind: Literal["receipt"]
    body: ReceiptBody


Entry = Annotated[
    RunEntry | CheckpointEntry | EpochEntry | ReceiptEntry, Field(discriminator="kind")
]
KINDS = ("run", "checkpoint", "epoch", "receipt")
_ENTRY: TypeAdapter[Entry] = TypeAdapter(Entry)


def parse_entry(doc: dict[str, Any], key: str) -> Entry:
    """The typed entry of a ledger document; IntegrityError naming ``key`` and what is wrong."""
    try:
        return _ENTRY.validate_python(doc)
    except ValidationError as e:
        kind = doc.get("kind")
        if kind not in KINDS:
            raise IntegrityError(
                f"{key}: not a valid ledger entry (kind {kind!r} is none of {', '.join(KINDS)})"
            ) from None
        raise IntegrityError(f"{key}: {kind} entry {describe(e, (kind, 'body'))}") from None


def describe(e: ValidationError, within: tuple[str, ...] = (), tags: tuple[str, ...] = ()) -> str:
    """What a validation error says, on one line: ``lacks a, b`` for missing fields, else ``has
    malformed x (why)``; field paths are dotted, without the leading parts ``within`` names
    (a union's tag, the object every path is in) and without the tags of tagged unions inside
    (``tags``), which are no field of the JSON."""

    def where(err: Any) -> str:
        loc = list(err["loc"])
        for part in within:
            if loc[:1] == [part]:
                loc.pop(0)
        return ".".join(str(p) for p in loc if p not in tags)

    errors = e.errors()
    missing = [where(err) for err in errors if err["type"] == "missing"]
    if missing:
        return f"lacks {', '.join(missing)}"
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    why = first["msg"].removeprefix("Value error, ")
    if not where(first):  # a rule across fields
        return f"is malformed: {why}{more}"
    return f"has malformed {where(first)} ({why}){more}"
