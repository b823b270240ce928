"""The audit report: what `veritrain verify` found about a run, as one self-contained HTML page
(``DIR/index.html``: plots inline as PNG, no JavaScript) and the same content as markdown
(``DIR/report.md`` with the plots beside it, or with them inline for a Prefect artifact).

The report is a view of a verification, not a second one: every status, check and trust root in it
comes from veritrain.pipeline.verify.verifier, and the times from the same sources finality decides
with (pipeline/verify/finality.py). What the trainer states about itself (its ``proven_at`` clock)
is shown as such. How it looks is pipeline/publish/render.py. Neither module imports torch or
prefect (what veritrain.pipeline.verify.verifier imports aside), and matplotlib only to draw."""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from veritrain.pipeline.errors import IntegrityError, UsageError
from veritrain.pipeline.publish.render import (
    PLOTS,
    data_uri,
    render_html,
    render_markdown,
    render_plots,
)
from veritrain.pipeline.run.determinism import DeterminismProfile
from veritrain.pipeline.run.entries import CheckpointEntry, Entry
from veritrain.pipeline.run.manifest import (
    Manifest,
    epoch_entries,
    load_epoch_records,
    load_pending_records,
    open_ledger,
    receipt_entries,
)
from veritrain.pipeline.store.base import NotFoundError, Store
from veritrain.pipeline.store.keys import ledger_key, manifest_key
from veritrain.pipeline.store.uris import run_uri
from veritrain.pipeline.verify.checks import EpochReport, RunReport
from veritrain.pipeline.verify.finality import Sighting, first_sightings, window_start
from veritrain.pipeline.verify.policy import Policy
from veritrain.pipeline.verify.verifier import verify_run
from veritrain.prover import StepRecord, VeritrainError, hparams_digest
from veritrain.prover.errors import message

HTML_FILE, MARKDOWN_FILE = "index.html", "report.md"
REPORT_FILES = frozenset({HTML_FILE, MARKDOWN_FILE, *PLOTS.values()})
# index.html names its run here (templates/report.html.j2), so a folder holding a report of
# this run can be rewritten.
_RUN_META = re.compile(r'<meta name="veritrain-run" content="([A-Za-z0-9._-]{1,32})">')


@dataclass(frozen=True)
class TrustRoots:
    """What a verification trusted: the guest image ids and trainer keys (hex), whether the
    trainer key was pinned by the verifier, and where both came from."""

    image_ids: tuple[str, ...]
    trainer_keys: tuple[str, ...]
    trainer_pinned: bool
    source: str


def trust_roots(report: RunReport, manifest: Manifest | None) -> TrustRoots:
    """The trust roots the verification ran under (its policy, pipeline/verify/policy.py): the
    guests the verifier accepts, and the trainer keys it pinned or, unpinned, the run's own key."""
    trust = report.trust
    pinned = trust.get("trainer") == "pinned"
    if pinned:
        keys = tuple(trust["trainer_keys"])
        source = "named by the verifier (--policy, --image-id, --trainer-key)"
    else:
        keys = (manifest.public_key.hex(),) if manifest is not None else ()
        source = (
            f"guests named by the verifier; the trainer key is the run's own "
            f"{manifest_key(report.run_id)}: the store's word, not pinned"
        )
    return TrustRoots(
        image_ids=tuple(trust.get("image_ids", ())),
        trainer_keys=keys,
        trainer_pinned=pinned,
        source=source,
    )


@dataclass(frozen=True)
class Point:
    step: int
    epoch: int
    loss: float
    # None where the record's hyperparameter digest is not the schedule's rate at that step.
    lr: float | None
    # The open epoch's records, stored with a mid-epoch checkpoint and not yet in a claim.
    pending: bool = False


@dataclass(frozen=True)
class EpochTimes:
    """Unix seconds, None where no such time exists (see the report's legend)."""

    committed: float | None  # the store server's write time of the epoch's ledger entry
    proven_at: float | None  # the trainer's own clock, signed in the receipt entry
    receipt_stored: float | None  # the store server's write time of the receipt
    first_seen: float | None  # this verifier's first sighting of the receipt
    window_end: float | None


@dataclass
class Report:
    run_uri: str
    verification: RunReport
    roots: TrustRoots
    generated_at: float
    challenge_window: float | None
    steps_per_epoch: int | None
    points: list[Point] = field(default_factory=list)
    times: dict[int, EpochTimes] = field(default_factory=dict)
    guarantees: dict[int, list[str]] = field(default_factory=dict)
    commands: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.verification.run_id


def build_report(
    store: Store,
    run_id: str,
    *,
    replayable: list[DeterminismProfile] | None = None,
    replayable_files: list[str] | None = None,
    policy: Policy | None = None,
    flags: list[str] | None = None,
    now: float | None = None,
    state: Path | None = None,
) -> Report:
    """Verifies the run (as ``veritrain verify`` does, with the same ``replayable`` profiles,
    ``policy`` and verifier ``state``) and gathers what the report shows. ``replayable_files``
    are the files those profiles came from and ``flags`` the trust flags the policy came from, for
    the re-verify commands."""
    now = time.time() if now is None else now
    verification = verify_run(
        store, run_id, now=now, replayable=replayable, state=state, policy=policy
    )
    uri = run_uri(store, run_id)
    manifest = entries = None
    notes: list[str] = []
    # Curves and times read the ledger's entries, so only once verify has found them well formed.
    readable = {c.name for c in verification.checks if c.ok} >= {"manifest", "ledger"}
    if readable:
        manifest = Manifest.load(store, run_id)
        _, entries = open_ledger(store, manifest)
    else:
        notes.append(
            "The manifest or the ledger did not verify (see the run's checks): no curves or times."
        )
    report = Report(
        run_uri=uri,
        verification=verification,
        roots=trust_roots(verification, manifest),
        generated_at=now,
        challenge_window=None,
        steps_per_epoch=None,
        notes=notes,
    )
    if manifest is not None and entries is not None:
        report.challenge_window = manifest.spec.challenge_window
        report.steps_per_epoch = manifest.steps_per_epoch
        report.points = _points(store, manifest, entries, notes)
        report.times = _times(store, manifest, entries, verification, now, state)
        report.guarantees = {
            e: entry.body.claim.guarantee_names for e, entry in epoch_entries(entries).items()
        }
    report.commands = reverify_commands(uri, verification, replayable_files or [], flags or [])
    return report


def reverify_commands(
    uri: str, verification: RunReport, replayable_files: list[str], flags: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """The commands that repeat this verification, as (what it does, command line), with the
    flags it was made with (``flags``: the trust flags, already split into words)."""
    extra = "".join(f" --replayable-profile {shlex.quote(f)}" for f in replayable_files)
    extra += "".join(f" {shlex.quote(f)}" for f in flags)
    q = shlex.quote(uri)
    cmds = [
        (
            "verify every epoch: ledger, records, receipts, checkpoints; exit 0 only if all pass",
            f"veritrain verify {q}{extra}",
        ),
        ("the same as one JSON document", f"veritrain verify {q} --json{extra}"),
    ]
    proven = [e.epoch for e in verification.epochs if _receipt_ok(e)]
    if proven:
        last = max(proven)
        cmds.append(
            (
                (
                    f"pull epoch {last} (its receipt speaks for the lineage before it) into a "
                    "folder and verify it from there alone"
                ),
                f"veritrain audit {q} --epoch {last} "
                f"--out {shlex.quote(f'audit-epoch-{last}')}{extra}",
            )
        )
    cmds.append(("regenerate this report", f"veritrain report {q} --out report{extra}"))
    return cmds


def _receipt_ok(epoch_report: EpochReport) -> bool:
    return any(c.name == "receipt" and c.ok for c in epoch_report.checks)


def _points(
    store: Store, manifest: Manifest, entries: list[Entry], notes: list[str]
) -> list[Point]:
    """Loss and learning rate per committed step: every claimed epoch's records, then the open
    epoch's records stored with its newest mid-epoch checkpoint. The rate is the schedule's at
    the step where the record's hyperparameter digest commits to exactly that rate."""
    schedule = manifest.spec.schedule_for(manifest.dataset_len)
    optimizer = manifest.optimizer_digest
    epochs = epoch_entries(entries)
    blobs: list[tuple[int, list[bytes], bool]] = []
    for e, entry in sorted(epochs.items()):
        try:
            blobs.append((e, load_epoch_records(store, entry), False))
        except (IntegrityError, NotFoundError) as err:
            notes.append(f"Epoch {e}: records not plotted ({_one_line(err)}).")
    spe = manifest.steps_per_epoch
    open_epoch = len(epochs)
    pending = [
        x.body
        for x in entries
        if isinstance(x, CheckpointEntry)
        and x.body.pending_records is not None
        and x.body.step // spe == open_epoch
    ]
    if pending:
        body = max(pending, key=lambda b: b.step)
        try:
            blobs.append((open_epoch, load_pending_records(store, body), True))
        except (IntegrityError, NotFoundError) as err:
            notes.append(f"Epoch {open_epoch} (open): records not plotted ({_one_line(err)}).")
    points = []
    for e, records, is_pending in blobs:
        for raw in records:
            try:
                rec = StepRecord.from_bytes(raw)
            except VeritrainError as err:
                notes.append(f"Epoch {e}: a record does not decode ({_one_line(err)}).")
                break
            rate = schedule.lr_at(rec.step)
            lr = rate if hparams_digest(rate, optimizer) == rec.hparams_digest else None
            points.append(Point(rec.step, e, rec.loss, lr, is_pending))
    if any(p.lr is None for p in points):
        notes.append(
            "Some records commit to another learning rate than the schedule's; those "
            "steps have no rate in the plot (the records check says which)."
        )
    return points


def _times(
    store: Store,
    manifest: Manifest,
    entries: list[Entry],
    verification: RunReport,
    now: float,
    state: Path | None,
) -> dict[int, EpochTimes]:
    """Per epoch, the times finality is decided on. First sightings are read back from the
    verifier's state, where verify_run has just recorded every receipt that verified; receipts
    that did not verify are not asked for, so none is recorded here."""
    epochs, receipts = epoch_entries(entries), receipt_entries(entries)
    seen = {
        r.epoch: Sighting(manifest.run_id, r.epoch, receipts[r.epoch].body.receipt_sha256)
        for r in verification.epochs
        if _receipt_ok(r) and r.epoch in receipts
    }
    first = first_sightings(list(seen.values()), now, state)
    window = manifest.spec.challenge_window
    times = {}
    for e, entry in epochs.items():
        rbody = receipts[e].body if e in receipts else None
        stored = store.server_time(rbody.receipt) if rbody else None
        first_seen = first.get(seen[e].key) if e in seen else None
        times[e] = EpochTimes(
            committed=store.server_time(ledger_key(manifest.run_id, entry.seq)),
            proven_at=float(rbody.proven_at) if rbody else None,
            receipt_stored=stored,
            first_seen=first_seen,
            window_end=None if first_seen is None else window_start(first_seen, stored) + window,
        )
    return times


def _one_line(e: Exception) -> str:
    return " ".join(message(e).split())[:200]


# -- the folder ----------------------------------------------------------------------------------


def check_out_dir(out: Path, run_id: str) -> None:
    """``out`` is missing, empty, or holds a report of this run and nothing else (it is then
    rewritten), and can be written; UsageError otherwise. Checked before verifying, so a bad
    folder costs nothing."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: not a folder")
    try:
        names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    except OSError as e:
        raise UsageError(f"--out {out}: cannot list the folder ({e.strerror})") from None
    if names:
        try:
            meta = _RUN_META.search((out / HTML_FILE).read_text(errors="replace"))
        except OSError:
            meta = None
        if not names <= REPORT_FILES or meta is None or meta.group(1) != run_id:
            raise UsageError(
                f"--out {out}: not empty and not a report of run {run_id}; give an empty or "
                "new folder"
            )
    # The folder itself is made only when the report is written: a run that cannot be read
    # leaves nothing behind. Its nearest existing ancestor must take new entries.
    here = out
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise UsageError(f"--out {out}: cannot be created, {here} is not a folder")
    if not os.access(here, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {here} is not writable by this user")


def markdown_standalone(report: Report) -> str:
    """The markdown with its plots inline as data URIs, for places that hold one document (a
    Prefect markdown artifact)."""
    return render_markdown(report, render_plots(report), lambda _, png: data_uri(png))


def write_report(report: Report, out: Path) -> Path:
    """Writes index.html, report.md and the plots into ``out`` (see check_out_dir), each file
    replaced whole; a plot of an earlier report that this one lacks is removed. Returns the
    path of index.html."""
    out.mkdir(parents=True, exist_ok=True)
    plots = render_plots(report)
    files = {PLOTS[name]: png for name, png in plots.items()}
    files[MARKDOWN_FILE] = render_markdown(report, plots, lambda name, _: PLOTS[name]).encode()
    # Last: its run meta is what lets a rerun rewrite the folder.
    files[HTML_FILE] = render_html(report, plots).encode()
    for name in set(PLOTS.values()) - set(files):
        (out / name).unlink(missing_ok=True)
    for name, data in files.items():
        tmp = out / f".tmp-{os.getpid()}-{name}"
        try:
            with open(tmp, "wb") as f:  # not mkstemp: the files get the umask's modes
                f.write(data)
            os.replace(tmp, out / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return out / HTML_FILE
