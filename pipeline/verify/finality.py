"""When a proven epoch's challenge window starts, on times the trainer cannot write.

A receipt entry's ``proven_at`` is written and signed by the trainer, who could backdate it, so
it decides nothing. The window starts at the later of
- this verifier's first sighting of the receipt, kept on the verifier's side in
  ``$VERITRAIN_STATE/sightings.json`` (default ``~/.local/state/veritrain``), keyed by run id,
  epoch and the receipt's sha256, and
- the store server's own write time of the receipt object where there is one (S3's
  LastModified; a local folder has none, since its timestamps are whatever the writer set).

Both are times at which the receipt certainly existed; the later one is the one the verifier can
vouch for even if the store's server (possibly run by the trainer) has a wrong clock.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from veritrain.pipeline.documents import MAX_JSON_BYTES, load_json, read_document
from veritrain.pipeline.errors import StorageError

SIGHTINGS_FILE = "sightings.json"


def state_dir() -> Path:
    """The verifier's own state, never in a store."""
    return Path(os.environ.get("VERITRAIN_STATE") or Path.home() / ".local/state/veritrain")


@dataclass(frozen=True)
class Sighting:
    """A receipt as the verifier saw it."""

    run_id: str
    epoch: int
    receipt_sha256: str

    @property
    def key(self) -> str:
        # Run ids are [A-Za-z0-9._-], so "/" cannot occur inside a part.
        return f"{self.run_id}/{self.epoch}/{self.receipt_sha256}"


def first_sightings(
    seen: list[Sighting], now: float, folder: Path | None = None
) -> dict[str, float]:
    """The time this verifier first saw each receipt (by Sighting.key), recording ``now`` for the
    ones it sees for the first time. The file is rewritten atomically under an exclusive lock, so
    concurrent verifiers on one machine neither corrupt it nor lose each other's sightings."""
    path = (folder or state_dir()) / SIGHTINGS_FILE
    if not seen:
        return {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(SIGHTINGS_FILE + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            known = _load(path)
            new = {s.key: now for s in seen if s.key not in known}
            if new:
                known |= new
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                try:
                    with os.fdopen(fd, "w") as f:
                        json.dump(known, f, indent=1, sort_keys=True)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
                except BaseException:
                    os.unlink(tmp)
                    raise
    except OSError as e:
        raise StorageError(
            f"{path}: cannot keep the verifier's receipt sightings ({e.strerror}); "
            "set VERITRAIN_STATE to a writable folder"
        ) from None
    return {s.key: known[s.key] for s in seen}


def _load(path: Path) -> dict[str, float]:
    try:
        doc = load_json(read_document(path, MAX_JSON_BYTES))
    except FileNotFoundError:
        return {}
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in doc.values()
    ):
        raise StorageError(
            f"{path}: not a sightings file (an object of receipt -> first-seen time); "
            "move it away to start afresh (epochs then read final only a window after now)"
        )
    return doc


def window_start(first_seen: float, server_time: float | None) -> float:
    return first_seen if server_time is None else max(first_seen, server_time)
