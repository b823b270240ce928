"""The protocol test vectors (tests/vectors/protocol-v1.json), checked from Python twice.

Part A is an independent reading of docs/PROTOCOL.md in pure Python (hashlib and struct only): if
it agrees with the vectors, which rust/core generated, the document and the Rust code say the same
thing. Part B checks the Rust extension ``veritrain.prover._native`` against the same vectors, so
the Python pipeline and the guest cannot drift apart.

Every Part B test has "native" in its name: ``pytest -k "not native"`` runs Part A alone, e.g. on
a machine where the extension is not built yet.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "protocol-v1.json").read_text()
)

# ---------------------------------------------------------------------------------------------
# Part A: a pure-Python reference implementation of docs/PROTOCOL.md
# ---------------------------------------------------------------------------------------------

PROTOCOL_VERSION = 1

TAG_RECORD = "veritrain/record/v1"
TAG_NODE = "veritrain/node/v1"
TAG_EMPTY = "veritrain/empty/v1"
TAG_GENESIS = "veritrain/genesis/v1"
TAG_BATCH = "veritrain/batch/v1"
TAG_HPARAMS = "veritrain/hparams/v1"
TAG_SAMPLER = "veritrain/sampler/v1"
TAG_SAMPLE = "veritrain/sample/v1"
TAG_CHUNK = "veritrain/chunk/v1"
TAG_TENSOR = "veritrain/tensor/v1"
TAG_CLAIM = "veritrain/claim/v1"

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
CHUNK_LEN = 1 << 20
ZERO32 = bytes(32)


def tagged(tag: str, *parts: bytes) -> bytes:
    """H(tag, data) = SHA-256(tag || 0x00 || data)."""
    h = hashlib.sha256(tag.encode("ascii") + b"\x00")
    for part in parts:
        h.update(part)
    return h.digest()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return tagged(TAG_EMPTY)
    if n == 1:
        return leaves[0]
    # RFC 6962: the left subtree holds the largest power of two strictly below n.
    k = 1 << ((n - 1).bit_length() - 1)
    return tagged(TAG_NODE, merkle_root(leaves[:k]), merkle_root(leaves[k:]))


# --- run id ----------------------------------------------------------------------------------

RUN_ID_LEN = 32
RUN_ID_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def encode_run_id(run_id: str) -> bytes:
    raw = run_id.encode("utf-8")
    if not 1 <= len(raw) <= RUN_ID_LEN or not set(raw) <= RUN_ID_CHARS or raw in (b".", b".."):
        raise ValueError(
            f"run id {run_id!r} is not 1-32 characters of [A-Za-z0-9._-], other than . and .."
        )
    return raw.ljust(RUN_ID_LEN, b"\x00")


def decode_run_id(raw: bytes) -> str:
    end = raw.find(0)
    end = RUN_ID_LEN if end < 0 else end
    if any(raw[end:]):
        raise ValueError("run id has bytes after its NUL padding")
    run_id = raw[:end].decode("ascii", errors="replace")
    encode_run_id(run_id)
    return run_id


# --- step record -----------------------------------------------------------------------------

RECORD_LEN = 224
SLOT_LEN = 256  # a record inside its hash message, in the guest input
FLAG_STATE_DIGEST = 1
# version, flags, run id, epoch, step, prev record hash, batch digest, hparams digest,
# loss bits, grad norm bits, param digest, state digest
RECORD_STRUCT = struct.Struct("<II32sQQ32s32s32sII32s32s")
assert RECORD_STRUCT.size == RECORD_LEN


@dataclass(frozen=True)
class Record:
    flags: int
    run_id: str
    epoch: int
    step: int
    prev_record_hash: bytes
    batch_digest: bytes
    hparams_digest: bytes
    loss_bits: int
    grad_norm_bits: int
    param_digest: bytes
    state_digest: bytes

    def encode(self) -> bytes:
        return RECORD_STRUCT.pack(
            PROTOCOL_VERSION,
            self.flags,
            encode_run_id(self.run_id),
            self.epoch,
            self.step,
            self.prev_record_hash,
            self.batch_digest,
            self.hparams_digest,
            self.loss_bits,
            self.grad_norm_bits,
            self.param_digest,
            self.state_digest,
        )

    @classmethod
    def decode(cls, data: bytes) -> Record:
        if len(data) != RECORD_LEN:
            raise ValueError(f"a record is {RECORD_LEN} bytes, got {len(data)}")
        version, flags, run_id, *rest = RECORD_STRUCT.unpack(data)
        if version != PROTOCOL_VERSION:
            raise ValueError(f"unsupported protocol version {version}")
        if flags & ~FLAG_STATE_DIGEST:
            raise ValueError(f"unknown flag bits {flags:#x}")
        rec = cls(flags, decode_run_id(run_id), *rest)
        if not flags & FLAG_STATE_DIGEST and rec.state_digest != ZERO32:
            raise ValueError("state digest set without its flag")
        return rec


def record_hash(data: bytes) -> bytes:
    return tagged(TAG_RECORD, data)


def genesis_hash(run_id: str, start_state: bytes, dataset_root: bytes, seed: int) -> bytes:
    return tagged(
        TAG_GENESIS, encode_run_id(run_id), start_state, dataset_root, struct.pack("<Q", seed)
    )


# --- schedule and hyperparameters -------------------------------------------------------------

SCHEDULE_LEN = 40
KIND_CONSTANT, KIND_STEP_DECAY, KIND_LINEAR_WARMUP, KIND_COSINE, KIND_INVERSE_SQRT = range(5)
KIND_NAMES = {
    KIND_CONSTANT: "constant",
    KIND_STEP_DECAY: "step_decay",
    KIND_LINEAR_WARMUP: "linear_warmup",
    KIND_COSINE: "cosine",
    KIND_INVERSE_SQRT: "inverse_sqrt",
}
WARMUP_KINDS = (KIND_LINEAR_WARMUP, KIND_COSINE, KIND_INVERSE_SQRT)
# kind, reserved, base_lr, slot A (step_size; cosine: total_steps), slot B (gamma; cosine:
# min_lr), warmup_steps
SCHEDULE_STRUCT = struct.Struct("<IIdQdQ")
assert SCHEDULE_STRUCT.size == SCHEDULE_LEN
# PROTOCOL.md §6: the f64 nearest (-1)^k pi^(2k) / (2k)!, written there as these decimals.
COS_PI = [
    1.0,
    -4.934802200544679,
    4.0587121264167685,
    -1.3352627688545895,
    0.2353306303588932,
    -0.02580689139001406,
    0.0019295743094039231,
    -0.0001046381049248457,
    4.303069587032947e-06,
    -1.3878952462213771e-07,
    3.604730797462501e-09,
    -7.700707130601354e-11,
]


def _finite_positive(x: float) -> bool:
    return x > 0.0 and x != float("inf")  # NaN fails the comparison


@dataclass(frozen=True)
class Schedule:
    kind: int
    base_lr: float
    slot_a: int = 0  # step_size, or cosine's total_steps
    slot_b: float = 0.0  # gamma, or cosine's min_lr
    warmup_steps: int = 0

    def encode(self) -> bytes:
        # Fields the kind does not use are written as zero, whatever the object holds.
        uses_slots = self.kind in (KIND_STEP_DECAY, KIND_COSINE)
        a = self.slot_a if uses_slots else 0
        b = self.slot_b if uses_slots else 0.0
        warmup = self.warmup_steps if self.kind in WARMUP_KINDS else 0
        return SCHEDULE_STRUCT.pack(self.kind, 0, self.base_lr, a, b, warmup)

    @classmethod
    def decode(cls, data: bytes) -> Schedule:
        kind, _reserved, base_lr, a, b, warmup = SCHEDULE_STRUCT.unpack(data)
        if kind not in KIND_NAMES:
            raise ValueError(f"schedule: unknown kind {kind}")
        s = cls(kind, base_lr, a, b, warmup)
        # Canonical: reserved and unused fields are zero (compared as bytes, so -0.0 is refused).
        if s.encode() != data:
            raise ValueError("schedule: unused fields must be zero")
        ok = (
            _finite_positive(base_lr)
            and (kind not in WARMUP_KINDS or warmup > 0)
            and {
                KIND_STEP_DECAY: a > 0 and _finite_positive(b),
                # min_lr +0.0 or positive, at most base_lr; warmup within the run.
                KIND_COSINE: (struct.pack("<d", b) == bytes(8) or _finite_positive(b))
                and b <= base_lr
                and warmup <= a,
            }.get(kind, True)
        )
        if not ok:
            raise ValueError("schedule: a field breaks its kind's rule")
        return s

    def lr_at(self, step: int) -> float:
        if self.kind == KIND_STEP_DECAY:
            return self.base_lr * powu(self.slot_b, step // self.slot_a)
        if self.kind in WARMUP_KINDS and step < self.warmup_steps:
            # Left to right, as in Rust: (base_lr * (step + 1)) / warmup_steps.
            return self.base_lr * float(step + 1) / float(self.warmup_steps)
        if self.kind == KIND_COSINE:
            total, min_lr = self.slot_a, self.slot_b
            if step >= total:
                return min_lr
            d = float(step - self.warmup_steps) / float(total - self.warmup_steps)
            c = cospi(d) if d <= 0.5 else -cospi(1.0 - d)
            return min_lr + (self.base_lr - min_lr) * (0.5 * (1.0 + c))
        if self.kind == KIND_INVERSE_SQRT:
            # math.sqrt is IEEE-754's squareRoot (correctly rounded) on every platform CPython
            # supports, as the core's integer square root is.
            return self.base_lr * math.sqrt(float(self.warmup_steps) / float(step + 1))
        return self.base_lr

    def native(self) -> dict[str, Any]:
        """The keyword arguments of veritrain.prover._native.Schedule (only the kind's own
        fields)."""
        d: dict[str, Any] = {"kind": KIND_NAMES[self.kind], "base_lr": self.base_lr}
        if self.kind == KIND_STEP_DECAY:
            d |= {"step_size": self.slot_a, "gamma": self.slot_b}
        if self.kind in WARMUP_KINDS:
            d["warmup_steps"] = self.warmup_steps
        if self.kind == KIND_COSINE:
            d |= {"min_lr": self.slot_b, "total_steps": self.slot_a}
        return d


def cospi(u: float) -> float:
    """cos(pi * u) for 0 <= u <= 1/2: Horner in u * u, a multiplication then an addition per
    coefficient, highest first (Python never fuses them)."""
    y = u * u
    r = COS_PI[11]
    for c in reversed(COS_PI[:11]):
        r = r * y + c
    return r


def powu(x: float, n: int) -> float:
    """x^n by square-and-multiply, low bit first: the same multiplications in the same order as
    the Rust code, so the same rounding (Python floats are IEEE-754 doubles)."""
    acc, base = 1.0, x
    while n:
        if n & 1:
            acc *= base
        base *= base
        n >>= 1
    return acc


def hparams_digest(lr: float, optimizer_digest: bytes) -> bytes:
    return tagged(TAG_HPARAMS, struct.pack("<d", lr), optimizer_digest)


# --- epoch claim -----------------------------------------------------------------------------

CLAIM_LEN = 384
GUARANTEE_STRUCTURE, GUARANTEE_SAMPLER, GUARANTEE_SCHEDULE = 1, 2, 4
GUARANTEE_LINEAGE, GUARANTEE_ARITHMETIC = 8, 16
TORCH_MODE = GUARANTEE_STRUCTURE | GUARANTEE_SAMPLER | GUARANTEE_SCHEDULE | GUARANTEE_LINEAGE
KNOWN_GUARANTEES = TORCH_MODE | GUARANTEE_ARITHMETIC
# version, guarantees, run id, epoch, first step, step count, prev record hash, last record
# hash, records root, start state, end state, dataset root, dataset len, sampler seed,
# batch size, optimizer digest, schedule, image id
CLAIM_STRUCT = struct.Struct("<II32sQQQ32s32s32s32s32s32sQQQ32s40s32s")
assert CLAIM_STRUCT.size == CLAIM_LEN


@dataclass(frozen=True)
class Claim:
    guarantees: int
    run_id: str
    epoch: int
    first_step: int
    step_count: int
    prev_record_hash: bytes
    last_record_hash: bytes
    records_root: bytes
    start_state_digest: bytes
    end_state_digest: bytes
    dataset_root: bytes
    dataset_len: int
    sampler_seed: int
    batch_size: int
    optimizer_digest: bytes
    schedule: Schedule
    image_id: bytes

    def encode(self) -> bytes:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values |= {"run_id": encode_run_id(self.run_id), "schedule": self.schedule.encode()}
        return CLAIM_STRUCT.pack(PROTOCOL_VERSION, *values.values())

    @classmethod
    def decode(cls, data: bytes) -> Claim:
        if len(data) != CLAIM_LEN:
            raise ValueError(f"a claim is {CLAIM_LEN} bytes, got {len(data)}")
        version, *rest = CLAIM_STRUCT.unpack(data)
        if version != PROTOCOL_VERSION:
            raise ValueError(f"unsupported protocol version {version}")
        values = dict(zip((f.name for f in fields(cls)), rest, strict=True))
        if values["guarantees"] & ~KNOWN_GUARANTEES:
            raise ValueError(f"unknown guarantee bits {values['guarantees']:#x}")
        values["run_id"] = decode_run_id(values["run_id"])
        values["schedule"] = Schedule.decode(values["schedule"])
        return cls(**values)

    def digest(self) -> bytes:
        return tagged(TAG_CLAIM, self.encode())


# --- sampler ---------------------------------------------------------------------------------


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & MASK32


class Xoshiro128StarStar:
    def __init__(self, state: Sequence[int]) -> None:
        self.s = list(state)
        if self.s == [0, 0, 0, 0]:
            # xoshiro's one fixed point; the protocol replaces it by (1, 0, 0, 0).
            self.s[0] = 1

    @classmethod
    def from_key(cls, key: bytes) -> Xoshiro128StarStar:
        return cls(struct.unpack("<4I", key[:16]))

    def next_u32(self) -> int:
        s = self.s
        result = (_rotl((s[1] * 5) & MASK32, 7) * 9) & MASK32
        t = (s[1] << 9) & MASK32
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 11)
        return result

    def below(self, bound: int) -> int:
        """Uniform in [0, bound): Lemire's multiply-and-reject, 32-bit."""
        threshold = ((1 << 32) - bound) % bound
        while True:
            m = self.next_u32() * bound
            if m & MASK32 >= threshold:
                return m >> 32


def epoch_permutation(seed: int, epoch: int, n: int) -> list[int]:
    key = tagged(TAG_SAMPLER, struct.pack("<QQ", seed, epoch))
    rng = Xoshiro128StarStar.from_key(key)
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def batch_indices(perm: Sequence[int], batch_size: int, k: int) -> Sequence[int]:
    return perm[k * batch_size : min((k + 1) * batch_size, len(perm))]


def batch_digest(indices: Sequence[int]) -> bytes:
    return tagged(TAG_BATCH, struct.pack(f"<I{len(indices)}I", len(indices), *indices))


def sample_leaf(index: int, sample: bytes) -> bytes:
    return tagged(TAG_SAMPLE, struct.pack("<Q", index), sample)


# --- tensors and state -----------------------------------------------------------------------


def tensor_digest(name: str, dtype: str, shape: Sequence[int], data: bytes) -> bytes:
    view = memoryview(data)
    chunks = [
        blake3(view[i : i + CHUNK_LEN], derive_key_context=TAG_CHUNK).digest()
        for i in range(0, len(data), CHUNK_LEN)
    ]
    name_b, dtype_b = name.encode("utf-8"), dtype.encode("utf-8")
    header = b"".join(
        [
            struct.pack("<I", len(name_b)),
            name_b,
            struct.pack("<I", len(dtype_b)),
            dtype_b,
            struct.pack(f"<I{len(shape)}Q", len(shape), *shape),
            struct.pack("<Q", len(data)),
        ]
    )
    return tagged(TAG_TENSOR, header, merkle_root(chunks))


def state_digest(tensors: Sequence[tuple[str, bytes]]) -> bytes:
    ordered = sorted(tensors, key=lambda t: t[0].encode("utf-8"))
    names = [name for name, _ in ordered]
    if len(set(names)) != len(names):
        raise ValueError("tensor names must be unique")
    return merkle_root([digest for _, digest in ordered])


# --- guest input and the epoch check ---------------------------------------------------------


class CheckFailed(Exception):
    def __init__(self, name: str, step: int | None) -> None:
        super().__init__(name, step)
        self.name, self.step = name, step


@dataclass(frozen=True)
class EpochInput:
    claim: Claim
    prev: Claim | None
    records: list[bytes]

    @classmethod
    def decode(cls, data: bytes) -> EpochInput:
        def take(n: int) -> bytes:
            nonlocal pos
            if pos + n > len(data):
                raise CheckFailed("encoding", None)
            pos += n
            return data[pos - n : pos]

        def claim() -> Claim:
            try:
                return Claim.decode(take(CLAIM_LEN))
            except ValueError:
                raise CheckFailed("encoding", None) from None

        pos = 0
        this = claim()
        has_prev = struct.unpack("<I", take(4))[0]
        if has_prev not in (0, 1):
            raise CheckFailed("encoding", None)
        prev = claim() if has_prev else None
        (count,) = struct.unpack("<I", take(4))
        # Each record travels inside its hash message: tag || 0x00 || record || SHA-256 padding.
        head = TAG_RECORD.encode() + b"\x00"
        tail = (
            b"\x80"
            + bytes(SLOT_LEN - len(head) - RECORD_LEN - 9)
            + struct.pack(">Q", 8 * (len(head) + RECORD_LEN))
        )
        records = []
        for _ in range(count):
            slot = take(SLOT_LEN)
            if slot[: len(head)] != head or slot[len(head) + RECORD_LEN :] != tail:
                raise CheckFailed("encoding", None)
            records.append(slot[len(head) : len(head) + RECORD_LEN])
        if pos != len(data):
            raise CheckFailed("encoding", None)
        return cls(this, prev, records)


def check_link(prev: Claim, c: Claim) -> None:
    same_run = all(
        getattr(prev, f) == getattr(c, f)
        for f in (
            "run_id",
            "dataset_root",
            "dataset_len",
            "sampler_seed",
            "batch_size",
            "optimizer_digest",
            "schedule",
            "image_id",
            "guarantees",
        )
    )
    if (
        not same_run
        or prev.epoch + 1 != c.epoch
        or prev.first_step + prev.step_count != c.first_step
        or prev.last_record_hash != c.prev_record_hash
        or prev.end_state_digest != c.start_state_digest
    ):
        raise CheckFailed("lineage", None)


def check_epoch(data: bytes) -> None:
    """The epoch check, rule by rule in the documented order; raises CheckFailed(name, step)."""
    inp = EpochInput.decode(data)
    c = inp.claim
    if c.guarantees not in (TORCH_MODE, TORCH_MODE | GUARANTEE_ARITHMETIC):
        raise CheckFailed("guarantees", None)
    if not 0 < c.dataset_len <= 0xFFFF_FFFF or c.batch_size == 0:
        raise CheckFailed("parameters", None)
    spe = steps_per_epoch(c.dataset_len, c.batch_size)
    if c.epoch * spe != c.first_step or c.step_count != spe or len(inp.records) != spe:
        raise CheckFailed("step_range", None)
    if inp.prev is None and c.epoch == 0:
        g = genesis_hash(c.run_id, c.start_state_digest, c.dataset_root, c.sampler_seed)
        if g != c.prev_record_hash:
            raise CheckFailed("genesis", None)
    elif inp.prev is not None and c.epoch > 0:
        check_link(inp.prev, c)
    else:
        raise CheckFailed("genesis", None)

    perm = epoch_permutation(c.sampler_seed, c.epoch, c.dataset_len)
    prev_hash, hashes, last = c.prev_record_hash, [], None
    for k, raw in enumerate(inp.records):
        step = c.first_step + k
        try:
            r = Record.decode(raw)
        except ValueError:
            raise CheckFailed("encoding", step) from None
        if (r.run_id, r.epoch, r.step) != (c.run_id, c.epoch, step):
            raise CheckFailed("record_place", step)
        if r.prev_record_hash != prev_hash:
            raise CheckFailed("chain", step)
        if r.batch_digest != batch_digest(batch_indices(perm, c.batch_size, k)):
            raise CheckFailed("batch", step)
        if r.hparams_digest != hparams_digest(c.schedule.lr_at(step), c.optimizer_digest):
            raise CheckFailed("hparams", step)
        prev_hash = record_hash(raw)
        hashes.append(prev_hash)
        last = r
    assert last is not None  # step_range guarantees at least one record
    if not last.flags & FLAG_STATE_DIGEST or last.state_digest != c.end_state_digest:
        raise CheckFailed("end_state", last.step)
    if prev_hash != c.last_record_hash or merkle_root(hashes) != c.records_root:
        raise CheckFailed("records_root", None)


# --- helpers for the tests -------------------------------------------------------------------


def unhex(s: str) -> bytes:
    return bytes.fromhex(s)


def big_tensor_data(n: int) -> bytes:
    """bytes(i % 251 for i in range(n)), built by repeating one period instead of a generator."""
    period = bytes(range(251))
    return (period * (n // 251 + 1))[:n]


def record_from_vector(values: dict[str, Any]) -> Record:
    digests = ("prev_record_hash", "batch_digest", "hparams_digest", "param_digest", "state_digest")
    return Record(**{k: unhex(v) if k in digests else v for k, v in values.items()})


def lr_bits(lr: float) -> str:
    return struct.pack(">d", lr).hex()


RECORDS = VECTORS["records"]
CLAIMS = VECTORS["claims"]
SAMPLER = VECTORS["sampler"]
SCHEDULES = VECTORS["schedules"]
TENSORS = VECTORS["tensors"]
VALID_EPOCHS = VECTORS["epochs"]["valid"]
INVALID_EPOCHS = VECTORS["epochs"]["invalid"]
TENSOR_NAMES = ("small", "big", "empty")


def tensor_data(which: str) -> bytes:
    t = TENSORS[which]
    if which == "big":
        return big_tensor_data(t["shape"][0])
    return unhex(t.get("data", ""))


def _mutate(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


# Byte edits that make a valid record non-canonical; each must be refused by every decoder.
# Record 0 has no state digest (flags 0), so it is the base for all of them.
RECORD_MUTATIONS = {
    "version-2": (0, struct.pack("<I", 2)),
    "unknown-flag-bit": (4, struct.pack("<I", 2)),
    "state-digest-without-flag": (192, b"\x01"),
    "run-id-empty": (8, bytes(32)),
    "run-id-bad-char": (8, b"vector/run"),
    "run-id-byte-after-padding": (39, b"x"),
    "run-id-non-ascii": (8, "vectör".encode()),
    "run-id-dot": (8, b".".ljust(32, b"\x00")),
    "run-id-dot-dot": (8, b"..".ljust(32, b"\x00")),
}


def _record_id(case: dict[str, Any]) -> str:
    return f"step-{case['fields']['step']}"


def _merkle_id(case: dict[str, Any]) -> str:
    return f"{len(case['leaves'])}-leaves"


def _sampler_id(case: dict[str, Any]) -> str:
    return f"seed{case['seed']}-epoch{case['epoch']}-n{case['n']}"


def _schedule_id(case: dict[str, Any]) -> str:
    return KIND_NAMES[int(case["encoding"][:2], 16)]


def _epoch_id(index: int) -> str:
    return f"epoch-{index}"


# --- Part A tests ----------------------------------------------------------------------------


def test_vectors_are_protocol_v1():
    assert VECTORS["protocol_version"] == PROTOCOL_VERSION


@pytest.mark.parametrize("case", VECTORS["tagged_hash"], ids=lambda c: c["tag"])
def test_tagged_hash(case):
    assert tagged(case["tag"], unhex(case["data"])).hex() == case["digest"]


@pytest.mark.parametrize("case", VECTORS["merkle"], ids=_merkle_id)
def test_merkle_root(case):
    assert merkle_root([unhex(x) for x in case["leaves"]]).hex() == case["root"]


@pytest.mark.parametrize("case", RECORDS, ids=_record_id)
def test_record_decode(case):
    assert Record.decode(unhex(case["bytes"])) == record_from_vector(case["fields"])


@pytest.mark.parametrize("case", RECORDS, ids=_record_id)
def test_record_encode(case):
    assert record_from_vector(case["fields"]).encode().hex() == case["bytes"]


@pytest.mark.parametrize("case", RECORDS, ids=_record_id)
def test_record_hash(case):
    assert record_hash(unhex(case["bytes"])).hex() == case["hash"]


@pytest.mark.parametrize("mutation", RECORD_MUTATIONS)
def test_record_decode_rejects_noncanonical(mutation):
    data = _mutate(unhex(RECORDS[0]["bytes"]), *RECORD_MUTATIONS[mutation])
    with pytest.raises(ValueError):
        Record.decode(data)


@pytest.mark.parametrize("index", range(len(CLAIMS)), ids=_epoch_id)
def test_claim_encode_roundtrip(index):
    data = unhex(CLAIMS[index]["bytes"])
    claim = Claim.decode(data)
    assert claim.epoch == index
    assert claim.guarantees == TORCH_MODE
    assert claim.encode() == data


@pytest.mark.parametrize("index", range(len(CLAIMS)), ids=_epoch_id)
def test_claim_digest(index):
    assert Claim.decode(unhex(CLAIMS[index]["bytes"])).digest().hex() == CLAIMS[index]["digest"]


def test_genesis_hash():
    g = VECTORS["genesis"]
    h = genesis_hash(
        g["run_id"], unhex(g["start_state_digest"]), unhex(g["dataset_root"]), g["sampler_seed"]
    )
    assert h.hex() == g["hash"]
    # Epoch 0's first record links to it.
    assert RECORDS[0]["fields"]["prev_record_hash"] == g["hash"]


def test_xoshiro128starstar_first_output_by_hand():
    # From state (1, 2, 3, 4): rotl(2 * 5, 7) * 9 = 1280 * 9; the permutation vectors check the
    # rest.
    assert Xoshiro128StarStar([1, 2, 3, 4]).next_u32() == 11520


@pytest.mark.parametrize("case", SAMPLER, ids=_sampler_id)
def test_epoch_permutation(case):
    assert epoch_permutation(case["seed"], case["epoch"], case["n"]) == case["permutation"]


@pytest.mark.parametrize("case", SAMPLER, ids=_sampler_id)
def test_batch_digest(case):
    first = batch_indices(case["permutation"], case["batch_size"], 0)
    assert batch_digest(first).hex() == case["first_batch_digest"]


@pytest.mark.parametrize("case", SCHEDULES, ids=_schedule_id)
def test_schedule_encoding_roundtrip(case):
    data = unhex(case["encoding"])
    assert Schedule.decode(data).encode() == data


@pytest.mark.parametrize("case", SCHEDULES, ids=_schedule_id)
def test_schedule_lr_bits(case):
    schedule = Schedule.decode(unhex(case["encoding"]))
    got = [[step, lr_bits(schedule.lr_at(step))] for step, _ in case["lr_bits"]]
    assert got == case["lr_bits"]


def test_claim_schedule_is_a_valid_schedule():
    # The claims' step decay (0.1, every 2 steps, x0.5) must decode with the same rules.
    s = Claim.decode(unhex(CLAIMS[0]["bytes"])).schedule
    assert (s.kind, s.base_lr, s.slot_a, s.slot_b) == (KIND_STEP_DECAY, 0.1, 2, 0.5)


def test_hparams_digest():
    hp = VECTORS["hparams"]
    assert hparams_digest(hp["lr"], unhex(hp["optimizer_digest"])).hex() == hp["digest"]


def test_sample_leaf():
    s = VECTORS["sample_leaf"]
    assert sample_leaf(s["index"], unhex(s["data"])).hex() == s["leaf"]


@pytest.mark.parametrize("which", TENSOR_NAMES)
def test_tensor_digest(which):
    t = TENSORS[which]
    assert tensor_digest(t["name"], t["dtype"], t["shape"], tensor_data(which)).hex() == t["digest"]


def test_big_tensor_spans_several_chunks():
    # 2.5 MiB: two full chunks and a short one, so the chunk tree is not a single leaf.
    assert TENSORS["big"]["shape"] == [CHUNK_LEN * 5 // 2]


def test_state_digest():
    pairs = [(TENSORS[w]["name"], unhex(TENSORS[w]["digest"])) for w in TENSOR_NAMES]
    assert state_digest(pairs).hex() == TENSORS["state_digest"]
    assert state_digest(pairs[::-1]).hex() == TENSORS["state_digest"]  # input order is irrelevant
    with pytest.raises(ValueError):
        state_digest(pairs + pairs[:1])


@pytest.mark.parametrize("index", range(len(VALID_EPOCHS)), ids=_epoch_id)
def test_epoch_check_accepts_valid_epoch(index):
    data = unhex(VALID_EPOCHS[index])
    check_epoch(data)
    # The guest commits the claim unchanged, so it must be the claim vector.
    assert EpochInput.decode(data).claim.encode().hex() == CLAIMS[index]["bytes"]


@pytest.mark.parametrize("case", INVALID_EPOCHS, ids=lambda c: c["error"])
def test_epoch_check_rejects_invalid_epoch(case):
    with pytest.raises(CheckFailed) as failed:
        check_epoch(unhex(case["input"]))
    assert (failed.value.name, failed.value.step) == (case["error"], case["step"])


# ---------------------------------------------------------------------------------------------
# Part B: the Rust extension against the same vectors
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def native():
    # Imported here, not at module level, so `-k "not native"` works without the extension.
    from veritrain.prover import _native

    return _native


def test_native_constants(native):
    assert (native.PROTOCOL_VERSION, native.RECORD_LEN, native.CLAIM_LEN) == (1, 224, 384)


def _protocol_table(section: str) -> list[tuple[str, int, int]]:
    """The rows ``(name, offset, size)`` of the field table (the one headed ``| offset | size |
    name |``) in a section of docs/PROTOCOL.md."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text()
    body = text.split(f"\n## {section}\n")[1].split("\n## ")[0]
    table = body.split("\n| offset | size | name |")[1].split("\n\n")[0]
    rows = [line.split("|")[1:4] for line in table.splitlines()[2:]]
    return [(name.strip(" `"), int(o), int(n)) for o, n, name in rows]


@pytest.mark.parametrize(
    ("section", "table"), [("3. Step record", "RECORD_FIELDS"), ("9. Epoch claim", "CLAIM_FIELDS")]
)
def test_native_field_tables_are_protocol_md(native, section, table):
    # The core's table is the one the code uses; the document's is the one people read.
    assert list(getattr(native, table)) == _protocol_table(section)


def _field_bytes(value: Any, size: int) -> bytes:
    """A record's or claim's attribute as its encoding spells it."""
    if value is None:  # a record's state digest where the flag is clear
        return bytes(size)
    if isinstance(value, str):
        return value.encode().ljust(size, b"\0")
    if isinstance(value, float):
        return struct.pack("<f", value)
    if isinstance(value, int):
        return value.to_bytes(size, "little")
    return value if isinstance(value, bytes) else value.to_bytes()


@pytest.mark.parametrize("index", range(len(RECORDS) + len(CLAIMS)))
def test_native_field_tables_place_every_field(native, index):
    """Each field of the table holds, at its offset, the attribute of the same name."""
    if index < len(RECORDS):
        data, table = unhex(RECORDS[index]["bytes"]), native.RECORD_FIELDS
        obj: Any = native.StepRecord.from_bytes(data)
        extra = {"flags": int(obj.state_digest is not None)}
    else:
        data, table = unhex(CLAIMS[index - len(RECORDS)]["bytes"]), native.CLAIM_FIELDS
        obj, extra = native.EpochClaim.from_bytes(data), {}
    extra["version"] = native.PROTOCOL_VERSION
    for name, offset, size in table:
        value = extra[name] if name in extra else getattr(obj, name)
        assert data[offset : offset + size] == _field_bytes(value, size), name


# The record's attributes in Python: the encoded fields without version and flags (the state
# digest is None when the flag is clear), loss and grad norm as floats.
RECORD_ATTRS = (
    "run_id",
    "epoch",
    "step",
    "prev_record_hash",
    "batch_digest",
    "hparams_digest",
    "loss",
    "grad_norm",
    "param_digest",
    "state_digest",
)


@pytest.mark.parametrize("case", RECORDS, ids=_record_id)
def test_native_record_hash(native, case):
    assert native.StepRecord.from_bytes(unhex(case["bytes"])).hash().hex() == case["hash"]


@pytest.mark.parametrize("case", RECORDS, ids=_record_id)
def test_native_decode_record(native, case):
    f = case["fields"]
    r = native.StepRecord.from_bytes(unhex(case["bytes"]))
    assert r.run_id == f["run_id"]
    assert (r.epoch, r.step) == (f["epoch"], f["step"])
    for key in ("prev_record_hash", "batch_digest", "hparams_digest", "param_digest"):
        assert getattr(r, key) == unhex(f[key]), key
    # Loss and grad norm cross as Python floats holding the f32 value exactly.
    assert struct.pack("<f", r.loss) == struct.pack("<I", f["loss_bits"])
    assert struct.pack("<f", r.grad_norm) == struct.pack("<I", f["grad_norm_bits"])
    has_state = f["flags"] & FLAG_STATE_DIGEST
    assert r.state_digest == (unhex(f["state_digest"]) if has_state else None)


@pytest.mark.parametrize("case", RECORDS, ids=_record_id)
def test_native_encode_record_roundtrip(native, case):
    data = unhex(case["bytes"])
    r = native.StepRecord.from_bytes(data)
    assert r.to_bytes() == data
    made = native.StepRecord(**{k: getattr(r, k) for k in RECORD_ATTRS})
    assert made == r and made.to_bytes() == data


@pytest.mark.parametrize("mutation", RECORD_MUTATIONS)
def test_native_decode_record_rejects_noncanonical(native, mutation):
    data = _mutate(unhex(RECORDS[0]["bytes"]), *RECORD_MUTATIONS[mutation])
    with pytest.raises(native.EncodingError, match="^record: "):
        native.StepRecord.from_bytes(data)


@pytest.mark.parametrize("index", range(len(CLAIMS)), ids=_epoch_id)
def test_native_claim_roundtrip(native, index):
    data = unhex(CLAIMS[index]["bytes"])
    c = native.EpochClaim.from_bytes(data)
    ref = Claim.decode(data)
    names = [f.name for f in fields(Claim)]
    assert c.schedule == native.Schedule(**ref.schedule.native())
    assert {k: getattr(c, k) for k in names if k != "schedule"} == {
        k: getattr(ref, k) for k in names if k != "schedule"
    }
    assert c.to_bytes() == data
    assert native.EpochClaim(**{k: getattr(c, k) for k in names}) == c
    assert native.EpochClaim.from_json(c.to_json()) == c


@pytest.mark.parametrize("index", range(len(CLAIMS)), ids=_epoch_id)
def test_native_pipeline_claim_digest(native, index):
    """The claim digest a receipt entry carries is the tagged one rust/core generated."""
    from veritrain.pipeline.run.manifest import claim_digest
    from veritrain.prover import EpochClaim

    claim = EpochClaim.from_bytes(unhex(CLAIMS[index]["bytes"]))
    assert claim_digest(claim) == CLAIMS[index]["digest"]
    assert claim_digest(claim) != hashlib.sha256(claim.to_bytes()).hexdigest()


@pytest.mark.parametrize("case", VECTORS["merkle"], ids=_merkle_id)
def test_native_merkle_root(native, case):
    assert native.merkle_root([unhex(x) for x in case["leaves"]]).hex() == case["root"]


@pytest.mark.parametrize("case", SAMPLER, ids=_sampler_id)
def test_native_epoch_permutation(native, case):
    assert native.epoch_permutation(case["seed"], case["epoch"], case["n"]) == case["permutation"]


@pytest.mark.parametrize("case", SAMPLER, ids=_sampler_id)
def test_native_batch_digest(native, case):
    first = case["permutation"][: case["batch_size"]]
    assert native.batch_digest(first).hex() == case["first_batch_digest"]


def test_native_steps_per_epoch(native):
    assert [native.steps_per_epoch(10, b) for b in (1, 3, 4, 10, 11)] == [10, 4, 3, 1, 1]


def test_native_genesis_hash(native):
    g = VECTORS["genesis"]
    h = native.genesis_hash(
        g["run_id"], unhex(g["start_state_digest"]), unhex(g["dataset_root"]), g["sampler_seed"]
    )
    assert h.hex() == g["hash"]


@pytest.mark.parametrize("case", SCHEDULES, ids=_schedule_id)
def test_native_schedule_lr(native, case):
    encoding = unhex(case["encoding"])
    schedule = native.Schedule(**Schedule.decode(encoding).native())
    assert schedule == native.Schedule.from_bytes(encoding)
    assert schedule.to_bytes() == encoding
    got = [[step, lr_bits(schedule.lr_at(step))] for step, _ in case["lr_bits"]]
    assert got == case["lr_bits"]


def test_native_hparams_digest(native):
    hp = VECTORS["hparams"]
    assert native.hparams_digest(hp["lr"], unhex(hp["optimizer_digest"])).hex() == hp["digest"]


@pytest.mark.parametrize("buffer_kind", ["numpy", "bytes", "bytearray"])
def test_native_tensor_digests(native, buffer_kind):
    np = pytest.importorskip("numpy")
    convert = {
        "numpy": lambda b: np.frombuffer(b, dtype=np.uint8),
        "bytes": bytes,
        "bytearray": bytearray,
    }[buffer_kind]
    tensors = [
        (TENSORS[w]["name"], TENSORS[w]["dtype"], TENSORS[w]["shape"], convert(tensor_data(w)))
        for w in TENSOR_NAMES
    ]
    got = [d.hex() for d in native.tensor_digests(tensors)]
    assert got == [TENSORS[w]["digest"] for w in TENSOR_NAMES]


def test_native_state_digest(native):
    pairs = [(TENSORS[w]["name"], unhex(TENSORS[w]["digest"])) for w in TENSOR_NAMES]
    assert native.state_digest(pairs).hex() == TENSORS["state_digest"]
    assert native.state_digest(pairs[::-1]).hex() == TENSORS["state_digest"]
    with pytest.raises(ValueError):
        native.state_digest(pairs + pairs[:1])


@pytest.mark.parametrize("index", range(len(VALID_EPOCHS)), ids=_epoch_id)
def test_native_check_epoch_accepts_valid_epoch(native, index):
    assert native.check_epoch(unhex(VALID_EPOCHS[index])) is None


@pytest.mark.parametrize("case", INVALID_EPOCHS, ids=lambda c: c["error"])
def test_native_check_epoch_rejects_invalid_epoch(native, case):
    with pytest.raises(native.EpochCheckError) as failed:
        native.check_epoch(unhex(case["input"]))
    assert failed.value.check == case["error"]
    assert failed.value.step == case["step"]


@pytest.mark.parametrize("index", range(len(VALID_EPOCHS)), ids=_epoch_id)
def test_native_encode_epoch_input(native, index):
    data = unhex(VALID_EPOCHS[index])
    inp = EpochInput.decode(data)
    prev = native.EpochClaim.from_bytes(inp.prev.encode()) if inp.prev else None
    claim = native.EpochClaim.from_bytes(inp.claim.encode())
    assert native.encode_epoch_input(claim, prev, inp.records) == data
