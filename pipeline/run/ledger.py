"""The run's append-only, hash-chained, Ed25519-signed ledger.

Entry ``ledger/<seq:012d>.json``: ``{"seq", "run_id", "prev", "kind", "body", "entry_hash",
"signature"}`` (its kinds and their bodies: pipeline/run/entries.py). ``entry_hash =
SHA-256("veritrain/ledger/v1" || 0x00 || canonical JSON of {seq, run_id, prev, kind, body})``
where canonical JSON has sorted keys and no spaces; ``prev`` is the previous entry's hash ("" for
seq 0); the signature is Ed25519 over the 32-byte entry hash by the run's key, whose public half
is in the run manifest. Entries are created with a conditional create, so two writers cannot both
append the same sequence number.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from veritrain.pipeline.documents import load_json
from veritrain.pipeline.errors import ConflictError, IntegrityError, StorageError, UsageError
from veritrain.pipeline.run.entries import Body, Entry, parse_entry
from veritrain.pipeline.store.base import Store
from veritrain.pipeline.store.keys import ledger_key, ledger_name, ledger_prefix, manifest_key

TAG = b"veritrain/ledger/v1\x00"


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_FIELDS = frozenset({"seq", "run_id", "prev", "kind", "body", "entry_hash", "signature"})


def _entry_hash(run_id: str, seq: int, prev: str, kind: str, body: dict[str, Any]) -> bytes:
    core = {"seq": seq, "run_id": run_id, "prev": prev, "kind": kind, "body": body}
    return hashlib.sha256(TAG + canonical_json(core)).digest()


def key_dir() -> Path:
    return Path(os.environ.get("VERITRAIN_KEYS", Path.home() / ".local/share/veritrain/keys"))


def key_path(run_id: str) -> Path:
    return key_dir() / f"{run_id}.ed25519.pem"


def load_key(run_id: str) -> Ed25519PrivateKey:
    """The run's existing signing key (attestations are signed with it,
    pipeline/publish/attest.py)."""
    path = key_path(run_id)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise StorageError(
            f"{path}: no key of run {run_id} here (it stays on the trainer's machine, in "
            "$VERITRAIN_KEYS or ~/.local/share/veritrain/keys)"
        ) from None
    except OSError as e:
        raise StorageError(f"{path}: cannot read the run key: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise StorageError(f"{path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise StorageError(f"{path}: not an Ed25519 key")
    return key


def read_trainer_key(source: str) -> Ed25519PrivateKey:
    """``run --key FILE``: an unencrypted PEM Ed25519 private key, the trainer's own identity
    across runs (verifiers pin its public half with ``--trainer-key``). UsageError names FILE."""
    try:
        key = serialization.load_pem_private_key(Path(source).read_bytes(), password=None)
    except OSError as e:
        raise UsageError(f"--key {source}: cannot read it: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise UsageError(f"--key {source}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(
            f"--key {source}: not an Ed25519 key (run keys are Ed25519: "
            "openssl genpkey -algorithm ed25519 -out FILE)"
        )
    return key


def install_run_key(run_id: str, key: Ed25519PrivateKey, source: str) -> None:
    """Makes ``key`` the run's signing key (its key file, which training, resuming and attest
    read). A run that has a key file already keeps it, and only if it is the same key."""
    path = key_path(run_id)
    if path.exists():
        if public_key_hex(load_key(run_id)) != public_key_hex(key):
            raise UsageError(f"--key {source}: run {run_id} already has another key ({path})")
        return
    try:
        _write_key(path, key)
    except OSError as e:
        raise StorageError(f"{path}: cannot write the run key: {e.strerror}") from None


def _write_key(path: Path, key: Ed25519PrivateKey) -> None:
    """A new key file, readable by its owner only; never overwrites one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def load_or_create_key(run_id: str) -> Ed25519PrivateKey:
    """The run's signing key, kept outside the store (the store only ever holds the public half)."""
    path = key_path(run_id)
    try:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise IntegrityError(f"{path}: not an Ed25519 key")
            return key
        key = Ed25519PrivateKey.generate()
        _write_key(path, key)
        return key
    except OSError as e:
        raise StorageError(f"{path}: cannot read or create the run key: {e.strerror}") from None


def public_key_hex(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


class Ledger:
    def __init__(self, store: Store, run_id: str, public_key: str):
        self.store = store
        self.run_id = run_id
        self.prefix = ledger_prefix(run_id)
        try:
            self.public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        except ValueError:
            raise IntegrityError(
                f"{manifest_key(run_id)}: public_key is not an Ed25519 key"
            ) from None

    def entries(self) -> list[Entry]:
        """All entries, each checked: file name, sequence, chain, hash, signature and body."""
        out: list[Entry] = []
        prev = ""
        for i, key in enumerate(self.store.list(self.prefix)):
            name = key.rsplit("/", 1)[-1]
            if name != ledger_name(i):
                raise IntegrityError(f"{key}: unexpected ledger object (expected {ledger_name(i)})")
            entry = self._parse(key, self.store.read(key))
            if entry.seq != i or entry.prev != prev:
                raise IntegrityError(f"{key}: breaks the ledger chain")
            out.append(entry)
            prev = entry.entry_hash
        return out

    def _parse(self, key: str, data: bytes) -> Entry:
        try:
            d = load_json(data)
            if not isinstance(d, dict) or set(d) != _FIELDS:
                raise ValueError(f"its fields are not {', '.join(sorted(_FIELDS))}")
            if d["run_id"] != self.run_id:
                raise ValueError(f"names run {d['run_id']!r}")
            expected = _entry_hash(self.run_id, d["seq"], d["prev"], d["kind"], d["body"])
        except (ValueError, TypeError) as e:
            raise IntegrityError(f"{key}: not a valid ledger entry ({e})") from None
        if expected.hex() != d["entry_hash"]:
            raise IntegrityError(f"{key}: entry hash does not match its content")
        try:
            self.public_key.verify(bytes.fromhex(d["signature"]), expected)
        except (InvalidSignature, ValueError, TypeError):
            raise IntegrityError(f"{key}: bad signature") from None
        return parse_entry(d, key)

    def document(
        self, key: Ed25519PrivateKey, seq: int, prev: str, kind: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], bytes]:
        """Ledger entry ``seq`` after the entry whose hash is ``prev``, signed with ``key``: the
        document and the bytes stored. Nothing checks ``body`` here (see append)."""
        h = _entry_hash(self.run_id, seq, prev, kind, body)
        doc = {
            "seq": seq,
            "run_id": self.run_id,
            "prev": prev,
            "kind": kind,
            "body": body,
            "entry_hash": h.hex(),
            "signature": key.sign(h).hex(),
        }
        return doc, json.dumps(doc, indent=1, sort_keys=True).encode()

    def append(
        self,
        key: Ed25519PrivateKey,
        body: Body,
        entries: list[Entry],
        tolerate: frozenset[str] = frozenset(),
    ) -> Entry:
        """Appends ``body`` (its kind is its model's) after ``entries`` (the caller's view,
        updated in place).

        If another writer appended first, the conditional create fails; when every entry it
        appended has a kind in ``tolerate`` (say the trainer's view meets the prover's "receipt"
        entries) the view is re-read and the append retried after them. Otherwise two writers are
        racing for the same run: ConflictError.
        """
        while True:
            seq = len(entries)
            where = ledger_key(self.run_id, seq)
            prev = entries[-1].entry_hash if entries else ""
            doc, data = self.document(key, seq, prev, body.KIND, body.model_dump(mode="json"))
            entry = parse_entry(doc, where)
            try:
                self.store.create(where, data)
            except ConflictError:
                fresh = self.entries()
                foreign = fresh[len(entries) :]
                if not foreign or any(e.kind not in tolerate for e in foreign):
                    raise ConflictError(
                        f"{where}: another writer appended to run {self.run_id} first "
                        f"({', '.join(e.kind for e in foreign) or 'same seq'}); "
                        "only one trainer may write a run"
                    ) from None
                entries[:] = fresh
                continue
            entries.append(entry)
            return entry
