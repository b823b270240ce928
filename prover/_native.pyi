"""Typed stub for veritrain.prover._native (rust/host). Digests are 32-byte ``bytes``.

Records, claims and schedules are rust/core's types as frozen classes: keyword constructors that
apply the core's rules (``ValueError`` on bad arguments), typed read-only attributes, ``==``,
and ``to_bytes``/``from_bytes`` in the canonical encoding (``EncodingError`` on bad bytes).
"""

from collections.abc import Sequence
from typing import Any, ClassVar, Final, Literal, NotRequired, TypedDict, final, overload

PROTOCOL_VERSION: Final[int]
RECORD_LEN: Final[int]
CLAIM_LEN: Final[int]
RECORD_FIELDS: Final[tuple[tuple[str, int, int], ...]]
"""The record's fields in encoding order, ``(name, offset, length)`` (PROTOCOL.md §3)."""
CLAIM_FIELDS: Final[tuple[tuple[str, int, int], ...]]
"""The claim's fields in encoding order, ``(name, offset, length)`` (PROTOCOL.md §9)."""
GUARANTEES: Final[dict[str, int]]
"""The guarantee bits by name, in bit order (structure, sampler, schedule, lineage, arithmetic)."""
TORCH_MODE: Final[int]
"""The guarantees a torch-mode epoch's receipt carries (all but arithmetic)."""

class VeritrainError(Exception):
    exit_code: ClassVar[int]  # set by prover/errors.py: the command line's exit code

class EncodingError(VeritrainError): ...

class EpochCheckError(VeritrainError):
    """``str(e)`` is the message; ``check`` names the rule, ``step`` the global step at fault."""

    check: str
    step: int | None

class GuestError(VeritrainError): ...
class ReceiptFormatError(VeritrainError): ...
class ImageIdMismatchError(VeritrainError): ...
class FakeReceiptError(VeritrainError): ...
class ReceiptVerificationError(VeritrainError): ...

ScheduleKind = Literal["constant", "step_decay", "linear_warmup", "cosine", "inverse_sqrt"]

class ScheduleJson(TypedDict):
    kind: ScheduleKind
    base_lr: float
    step_size: int | None
    gamma: float | None
    warmup_steps: int | None
    min_lr: NotRequired[float]
    total_steps: NotRequired[int]

class EpochClaimJson(TypedDict):
    """Digests are lowercase hex."""

    guarantees: int
    run_id: str
    epoch: int
    first_step: int
    step_count: int
    prev_record_hash: str
    last_record_hash: str
    records_root: str
    start_state_digest: str
    end_state_digest: str
    dataset_root: str
    dataset_len: int
    sampler_seed: int
    batch_size: int
    optimizer_digest: str
    schedule: ScheduleJson
    image_id: str

class JournalJson(EpochClaimJson):
    guarantee_names: list[str]

@final
class Schedule:
    """A learning-rate schedule; each kind takes exactly its own extra fields."""

    def __new__(
        cls,
        *,
        base_lr: float,
        kind: ScheduleKind = "constant",
        step_size: int | None = None,
        gamma: float | None = None,
        warmup_steps: int | None = None,
        min_lr: float | None = None,
        total_steps: int | None = None,
    ) -> Schedule: ...
    @property
    def kind(self) -> ScheduleKind: ...
    @property
    def base_lr(self) -> float: ...
    @property
    def step_size(self) -> int | None: ...
    @property
    def gamma(self) -> float | None: ...
    @property
    def warmup_steps(self) -> int | None: ...
    @property
    def min_lr(self) -> float | None: ...
    @property
    def total_steps(self) -> int | None: ...
    def lr_at(self, step: int) -> float:
        """The learning rate at a global step."""
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> Schedule: ...
    def to_json(self) -> ScheduleJson:
        """kind, base_lr, step_size, gamma, warmup_steps (None where the kind has none), and
        min_lr and total_steps where the kind has them (cosine)."""
    @staticmethod
    def from_json(doc: Any) -> Schedule:
        """Raises EncodingError naming the field that is missing, unknown or wrong."""

@final
class StepRecord:
    """One training step's record (RECORD_LEN bytes encoded)."""

    def __new__(
        cls,
        *,
        run_id: str,
        epoch: int,
        step: int,
        prev_record_hash: bytes,
        batch_digest: bytes,
        hparams_digest: bytes,
        loss: float,
        grad_norm: float,
        param_digest: bytes,
        state_digest: bytes | None = None,
    ) -> StepRecord: ...
    @property
    def run_id(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def step(self) -> int: ...
    @property
    def prev_record_hash(self) -> bytes: ...
    @property
    def batch_digest(self) -> bytes: ...
    @property
    def hparams_digest(self) -> bytes: ...
    @property
    def loss(self) -> float:
        """The f32 loss, exactly."""
    @property
    def grad_norm(self) -> float: ...
    @property
    def param_digest(self) -> bytes: ...
    @property
    def state_digest(self) -> bytes | None:
        """Taken at state steps only (the encoding's flag bit 0)."""
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> StepRecord: ...
    def hash(self) -> bytes:
        """``H(RECORD, record bytes)``: what the next record links to."""

@final
class EpochClaim:
    """What the trainer asserts about one epoch; a receipt's journal is exactly this claim
    (CLAIM_LEN bytes encoded)."""

    def __new__(
        cls,
        *,
        run_id: str,
        epoch: int,
        first_step: int,
        step_count: int,
        prev_record_hash: bytes,
        last_record_hash: bytes,
        records_root: bytes,
        start_state_digest: bytes,
        end_state_digest: bytes,
        dataset_root: bytes,
        dataset_len: int,
        sampler_seed: int,
        batch_size: int,
        optimizer_digest: bytes,
        schedule: Schedule,
        image_id: bytes,
        guarantees: int = ...,
    ) -> EpochClaim:
        """``guarantees`` defaults to TORCH_MODE."""
    @property
    def guarantees(self) -> int: ...
    @property
    def guarantee_names(self) -> list[str]: ...
    @property
    def run_id(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def first_step(self) -> int: ...
    @property
    def step_count(self) -> int: ...
    @property
    def prev_record_hash(self) -> bytes: ...
    @property
    def last_record_hash(self) -> bytes: ...
    @property
    def records_root(self) -> bytes: ...
    @property
    def start_state_digest(self) -> bytes: ...
    @property
    def end_state_digest(self) -> bytes: ...
    @property
    def dataset_root(self) -> bytes: ...
    @property
    def dataset_len(self) -> int: ...
    @property
    def sampler_seed(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def optimizer_digest(self) -> bytes: ...
    @property
    def schedule(self) -> Schedule: ...
    @property
    def image_id(self) -> bytes: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> EpochClaim: ...
    def digest(self) -> bytes:
        """``H(CLAIM, claim bytes)``: how a receipt's ledger entry names its claim."""
    def to_json(self) -> EpochClaimJson:
        """The form an epoch's ledger entry holds."""
    @staticmethod
    def from_json(doc: Any) -> EpochClaim:
        """Raises EncodingError naming the field that is missing, unknown or wrong."""
    def journal_json(self) -> JournalJson:
        """The ``.journal.json`` document: the JSON form with the guarantees spelled out."""

# The core's functions.
@final
class CanonicalSettings:
    """A canonical run's settings (PROTOCOL.md §15); ``digest()`` is its optimizer digest."""

    @staticmethod
    def sgd(
        *, zk_steps_per_epoch: int, momentum: float, weight_decay: float
    ) -> CanonicalSettings: ...
    @staticmethod
    def adam(
        *, zk_steps_per_epoch: int, beta1: float, beta2: float, eps: float, weight_decay: float
    ) -> CanonicalSettings: ...
    @staticmethod
    def from_bytes(data: bytes) -> CanonicalSettings: ...
    def to_bytes(self) -> bytes: ...
    def digest(self) -> bytes: ...
    @property
    def optimizer(self) -> Literal["sgd", "adam"]: ...
    @property
    def zk_steps_per_epoch(self) -> int: ...

def canonical_init(seed: int, dims: Sequence[int]) -> list[bytes]:
    """The canonical MLP's initial parameters, each as little-endian int32 bytes."""

def canonical_step(
    settings: CanonicalSettings,
    dims: Sequence[int],
    params: Sequence[Any],
    exp_avg: Sequence[Any],
    exp_avg_sq: Sequence[Any],
    lr: float,
    rows: Any,
    t: int,
) -> tuple[float, float]:
    """One canonical step in place on writable arrays (int32 params and first moments or
    momentum buffers, uint64 second moments); returns the record's (loss, grad norm)."""

def hparams_digest(lr: float, optimizer_digest: bytes) -> bytes: ...

# (global step, pre-step state [(name, dtype, shape, bytes)], samples [(row, audit path)]).
ZkStepArg = tuple[
    int, Sequence[tuple[str, str, Sequence[int], bytes]], Sequence[tuple[bytes, Sequence[bytes]]]
]

def encode_epoch_input(
    claim: EpochClaim,
    prev: EpochClaim | None,
    records: Sequence[bytes],
    canonical: tuple[bytes, Sequence[ZkStepArg]] | None = None,
) -> bytes: ...
def check_epoch(input: bytes, records_only: bool = False) -> None: ...
def zk_steps(records_root: bytes, step_count: int, k: int) -> list[int]: ...
def genesis_hash(
    run_id: str, start_state_digest: bytes, dataset_root: bytes, sampler_seed: int
) -> bytes: ...
def check_run_id(run_id: str) -> str: ...
def merkle_root(leaves: Sequence[bytes]) -> bytes: ...
def epoch_permutation(seed: int, epoch: int, n: int) -> list[int]: ...
def epoch_batches(seed: int, epoch: int, n: int, batch_size: int) -> list[list[int]]: ...
def steps_per_epoch(dataset_len: int, batch_size: int) -> int: ...
def batch_digest(indices: Sequence[int]) -> bytes: ...

# Digests (parallel, zero-copy, GIL released). Buffers: anything with the buffer protocol.
def tensor_digests(
    tensors: Sequence[tuple[str, str, Sequence[int], Any]], threads: int | None = None
) -> list[bytes]: ...
def state_digest(tensors: Sequence[tuple[str, bytes]]) -> bytes: ...
def dataset_root(rows: Any, row_len: int) -> bytes: ...
def sharded_root(shards: Sequence[tuple[int, bytes]]) -> bytes: ...
def dataset_paths(rows: Any, row_len: int, indices: Sequence[int]) -> list[list[bytes]]: ...

# Each task's canonical sample rows (PROTOCOL.md §4), row i being sample i; buffers C-contiguous.
def classification_rows(features: Any, labels: Any) -> bytes: ...
def regression_rows(features: Any, targets: Any, samples: int) -> bytes: ...
def language_model_rows(windows: Any, context: int) -> bytes: ...
def text_windows(tokens: int, context: int) -> int: ...

# zkVM.
class ExecuteOutput(TypedDict):
    journal: bytes
    user_cycles: int
    paging_cycles: int
    total_cycles: int
    segments: int
    seconds: float

class ExecuteSegments(ExecuteOutput):
    segment_blobs: list[bytes]

def image_id() -> bytes: ...
def guest_elf() -> bytes: ...
def image_id_of(elf: bytes) -> bytes: ...
def recursion_control_ids() -> tuple[list[tuple[str, bytes, bytes]], bytes, bytes]: ...
@overload
def execute(
    input: bytes, po2: int | None = None, segments: Literal[False] = False
) -> ExecuteOutput: ...
@overload
def execute(input: bytes, po2: int | None, segments: Literal[True]) -> ExecuteSegments: ...
def prove_segment(segment: bytes) -> bytes: ...
def join(left: bytes, right: bytes) -> bytes: ...
def finish(
    conditional: bytes, journal: bytes, image_id: bytes, prev_receipt: bytes | None = None
) -> bytes: ...
def receipt_kind(
    receipt: bytes,
) -> Literal["succinct", "composite", "groth16", "fake", "unknown"]: ...
def verify_receipt(receipt: bytes, image_id: bytes) -> bytes: ...
def _fake_receipt(journal: bytes, image_id: bytes) -> bytes: ...
def _execute_elf(elf: bytes, input: bytes) -> tuple[bytes, int]: ...
def _prove_risc0(
    input: bytes, po2: int | None = None, prev_receipt: bytes | None = None
) -> bytes: ...
