"""The audit report: what `veritrain verify` found about a run, as one self-contained HTML page
(``DIR/index.html``: plots inline as PNG, no JavaScript) and the same content as markdown
(``DIR/report.md`` with the plots beside it, or with them inline for a Prefect artifact).

The report is a view of a verification, not a second one: every status, check and trust root in it
comes from pipeline.verify, and the times from the same sources finality decides with
(pipeline/finality.py). What the trainer states about itself (its ``proven_at`` clock) is shown
as such. This module imports neither torch nor prefect (what pipeline.verify imports aside), and
matplotlib only to draw.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.determinism import DeterminismProfile
from pipeline.errors import IntegrityError, UsageError
from pipeline.finality import Sighting, first_sightings, window_start
from pipeline.finalize import load_epoch_records
from pipeline.ledger import Entry
from pipeline.run import (
    Manifest,
    claim_of,
    epoch_entries,
    keys,
    open_ledger,
    receipt_entries,
    sha256_hex,
)
from pipeline.store import NotFoundError, Store, run_uri
from pipeline.verify import RunReport, verify_run
from prover import VeritrainError, _native

HTML_FILE, MARKDOWN_FILE = "index.html", "report.md"
PLOTS = {
    "loss": "loss.png",
    "lr": "lr.png",
    "finality": "finality.png",
}
REPORT_FILES = frozenset({HTML_FILE, MARKDOWN_FILE, *PLOTS.values()})
_TEMPLATE = Path(__file__).with_name("templates") / "report.html.j2"
# index.html names its run here, so a folder holding a report of this run can be rewritten.
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
    """The trust roots of a verification as verify exposes them today: the run's own
    ``run.json`` (its pinned image id and public key), which the verifier did not choose."""
    key = manifest.doc.get("public_key", "") if manifest is not None else ""
    return TrustRoots(
        image_ids=(report.image_id,) if report.image_id else (),
        trainer_keys=(key,) if key else (),
        trainer_pinned=False,
        source=f"the run's own {keys(report.run_id)['manifest']}: the store's word, "
        "not named by the verifier",
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
    now: float | None = None,
    state: Path | None = None,
) -> Report:
    """Verifies the run (as ``veritrain verify`` does, with the same ``replayable`` profiles and
    verifier ``state``) and gathers what the report shows. ``replayable_files`` are the files
    those profiles came from, for the re-verify commands."""
    now = time.time() if now is None else now
    verification = verify_run(store, run_id, now=now, replayable=replayable, state=state)
    uri = run_uri(store, run_id)
    manifest = entries = None
    notes: list[str] = []
    # Curves and times read the ledger's entries, so only once verify has found them well formed.
    readable = {c.name for c in verification.checks if c.ok} >= {"manifest", "ledger"}
    if readable:
        manifest = Manifest.load(store, run_id)
        _, entries = open_ledger(store, manifest)
    else:
        notes.append("The manifest or the ledger did not verify (see the run's checks): no "
                     "curves or times.")
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
            e: claim_of(entry).guarantee_names for e, entry in epoch_entries(entries).items()
        }
    report.commands = reverify_commands(uri, verification, replayable_files or [])
    return report


def reverify_commands(
    uri: str, verification: RunReport, replayable_files: list[str]
) -> list[tuple[str, str]]:
    """The commands that repeat this verification, as (what it does, command line), with the
    flags it was made with."""
    extra = "".join(f" --replayable-profile {shlex.quote(f)}" for f in replayable_files)
    q = shlex.quote(uri)
    cmds = [
        ("verify every epoch: ledger, records, receipts, checkpoints; exit 0 only if all pass",
         f"veritrain verify {q}{extra}"),
        ("the same as one JSON document", f"veritrain verify {q} --json{extra}"),
    ]
    proven = [e.epoch for e in verification.epochs if _receipt_ok(e)]
    if proven:
        last = max(proven)
        cmds.append((
            (f"pull epoch {last} (its receipt speaks for the lineage before it) into a folder and "
            "verify it from there alone"),
            f"veritrain audit {q} --epoch {last} --out {shlex.quote(f'audit-epoch-{last}')}{extra}",
        ))
    cmds.append(("regenerate this report", f"veritrain report {q} --out report{extra}"))
    return cmds


def _receipt_ok(epoch_report) -> bool:
    return any(c.name == "receipt" and c.ok for c in epoch_report.checks)


def _points(
    store: Store, manifest: Manifest, entries: list[Entry], notes: list[str]
) -> list[Point]:
    """Loss and learning rate per committed step: every claimed epoch's records, then the open
    epoch's records stored with its newest mid-epoch checkpoint. The rate is the schedule's at
    the step where the record's hyperparameter digest commits to exactly that rate."""
    schedule = manifest.spec.schedule
    optimizer = bytes.fromhex(manifest.doc["optimizer_digest"])
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
        x.body for x in entries
        if x.kind == "checkpoint" and "pending_records" in x.body
        and isinstance(x.body.get("step"), int) and x.body["step"] // spe == open_epoch
    ]
    if pending:
        body = max(pending, key=lambda b: b["step"])
        try:
            blob = store.read(body["pending_records"])
            if sha256_hex(blob) != body.get("pending_sha256"):
                raise IntegrityError(f"{body['pending_records']}: does not match its ledger entry")
            n = _native.RECORD_LEN
            blobs.append((open_epoch, [blob[i : i + n] for i in range(0, len(blob), n)], True))
        except (IntegrityError, NotFoundError) as err:
            notes.append(f"Epoch {open_epoch} (open): records not plotted ({_one_line(err)}).")
    points = []
    for e, records, is_pending in blobs:
        for raw in records:
            try:
                rec = _native.decode_record(raw)
            except VeritrainError as err:
                notes.append(f"Epoch {e}: a record does not decode ({_one_line(err)}).")
                break
            lr = schedule.lr_at(rec["step"])
            if _native.hparams_digest(lr, optimizer) != rec["hparams_digest"]:
                lr = None
            points.append(Point(rec["step"], e, rec["loss"], lr, is_pending))
    if any(p.lr is None for p in points):
        notes.append("Some records commit to another learning rate than the schedule's; those "
                     "steps have no rate in the plot (the records check says which).")
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
    base = keys(manifest.run_id)["base"]
    epochs, receipts = epoch_entries(entries), receipt_entries(entries)
    seen = {
        r.epoch: Sighting(manifest.run_id, r.epoch, receipts[r.epoch].body["receipt_sha256"])
        for r in verification.epochs
        if _receipt_ok(r) and r.epoch in receipts
    }
    first = first_sightings(list(seen.values()), now, state)
    window = manifest.spec.challenge_window
    times = {}
    for e, entry in epochs.items():
        rbody = receipts[e].body if e in receipts else None
        proven_at = rbody.get("proven_at") if rbody else None
        stored = store.server_time(rbody["receipt"]) if rbody else None
        first_seen = first.get(seen[e].key) if e in seen else None
        times[e] = EpochTimes(
            committed=store.server_time(f"{base}/ledger/{entry.seq:012d}.json"),
            proven_at=float(proven_at) if isinstance(proven_at, (int, float)) else None,
            receipt_stored=stored,
            first_seen=first_seen,
            window_end=None if first_seen is None else window_start(first_seen, stored) + window,
        )
    return times


def _one_line(e: Exception) -> str:
    return " ".join(str(e.args[0] if e.args else type(e).__name__).split())[:200]


# -- plots ---------------------------------------------------------------------------------------

_STATUS_COLORS = {
    "committed": "#8c8c8c",
    "proven": "#1f77b4",
    "final": "#2ca02c",
    "unreplayable": "#ff7f0e",
    "disputed": "#d62728",
}


def render_plots(report: Report) -> dict[str, bytes]:
    """PNG bytes per plot name (PLOTS); a plot with nothing to show is left out."""
    # Figure and the Agg canvas, not pyplot: no global state, no GUI backend to pick.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def png(fig: Figure) -> bytes:
        FigureCanvasAgg(fig)
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        return buf.getvalue()

    out: dict[str, bytes] = {}
    pts = report.points
    boundaries = sorted({p.step for p in pts if report.steps_per_epoch
                         and p.step % report.steps_per_epoch == 0 and p.step > 0})
    for name, label, value in (("loss", "loss", lambda p: p.loss), ("lr", "learning rate",
                                                                    lambda p: p.lr)):
        shown = [p for p in pts if value(p) is not None]
        if not shown:
            continue
        fig = Figure(figsize=(7.5, 2.8))
        ax = fig.add_subplot()
        for pending, style in ((False, "-"), (True, "--")):
            part = [p for p in shown if p.pending == pending]
            if part:
                ax.plot([p.step for p in part], [value(p) for p in part], style,
                        marker="." if len(part) < 60 else None, color="#1f77b4",
                        label="open epoch (not yet claimed)" if pending else "claimed epochs")
        for b in boundaries:
            ax.axvline(b - 0.5, color="#cccccc", linewidth=0.8, zorder=0)
        ax.set_xlabel("global step (grey lines: epoch boundaries)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if any(p.pending for p in shown):
            ax.legend(loc="best", fontsize=8)
        out[name] = png(fig)
    timeline = _timeline(report)
    if timeline is not None:
        out["finality"] = png(timeline)
    return out


# Rows of the timeline plot (the newest epochs); the table below it lists every epoch.
TIMELINE_ROWS = 30


def _timeline(report: Report):
    """One row per epoch (the newest TIMELINE_ROWS): committed (server), proven (trainer's
    clock), receipt stored, first sighting, and the challenge window from its start to its end,
    coloured by status; None if no epoch has a time."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    rows = [(e.epoch, e.status, report.times.get(e.epoch)) for e in report.verification.epochs]
    rows = [r for r in rows if r[2] is not None][-TIMELINE_ROWS:]
    if all(t.committed is None and t.proven_at is None and t.first_seen is None
           for _, _, t in rows):
        return None
    fig = Figure(figsize=(7.5, 1.6 + 0.45 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    day = 86400.0  # matplotlib's dates are days since 1970-01-01 UTC
    labelled: set[str] = set()

    def mark(x: float | None, y: int, **kw) -> None:
        if x is None:
            return
        label = kw.pop("label")
        ax.plot([x / day], [y], linestyle="none", label=None if label in labelled else label, **kw)
        labelled.add(label)

    for i, (_, status, t) in enumerate(rows):
        color = _STATUS_COLORS.get(status, "#000000")
        if t.first_seen is not None and t.window_end is not None:
            start = window_start(t.first_seen, t.receipt_stored)
            ax.plot([start / day, t.window_end / day], [i, i], color=color, linewidth=6,
                    solid_capstyle="butt", alpha=0.6)
        mark(t.committed, i, marker="^", color="#8c8c8c", label="committed (server)")
        mark(t.proven_at, i, marker="o", markerfacecolor="none", color="#555555",
             label="proven (trainer's clock)")
        mark(t.receipt_stored, i, marker="s", color="#9467bd", label="receipt stored (server)")
        mark(t.first_seen, i, marker="D", color="#000000", label="first seen (this verifier)")
        mark(t.window_end, i, marker="|", markersize=14, color=color, label="window ends")
    ax.axvline(report.generated_at / day, color="#d62728", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(rows)), [f"epoch {e} ({s})" for e, s, _ in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.invert_yaxis()
    ax.xaxis_date()
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.legend(loc="outside upper center", ncol=2, fontsize=8, frameon=False)
    return fig


# -- content shared by the page and the markdown -------------------------------------------------

_NO_TIME = "—"
LEGEND = [
    ("committed", ("the store server's write time of the epoch's ledger entry (S3's "
     "LastModified); a local folder keeps none, its file times being the writer's")),
    ("proven (trainer)", ("the receipt entry's proven_at: the trainer's own clock, signed by the "
     "trainer, so it decides nothing")),
    ("receipt stored", "the store server's write time of the receipt"),
    ("first seen", "when this verifier (its state folder) first saw the receipt verify"),
    ("window ends", ("the later of first seen and receipt stored, plus the run's challenge "
     "window: a proven epoch is final from then on if no fraud proof is upheld and the run's "
     "determinism profile is one the verifier can replay (else unreplayable)")),
]
STATUS_MEANING = [
    ("committed", "the trainer's signed claim and records are in the ledger; no verified receipt"),
    ("proven", "its receipt verifies against the image id; the challenge window is still open"),
    ("final", "proven, the window has passed, no upheld fraud proof, and replayable"),
    ("unreplayable", ("proven and past the window, but no replayable profile could have "
     "challenged it")),
    ("disputed", "an upheld fraud proof names it or an earlier epoch"),
]


def _utc(t: float | None) -> str:
    return _NO_TIME if t is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def _until(t: float | None, now: float) -> str:
    if t is None:
        return _NO_TIME
    left = t - now
    if left <= 0:
        return _utc(t)
    d, rest = divmod(int(left), 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    span = f"{d} d {h} h" if d else f"{h} h {m} min" if h else f"{m} min {sec} s"
    return f"{_utc(t)} (in {span})"


def _view(report: Report) -> dict:
    """Everything the page and the markdown show, as plain strings, in the order shown."""
    v = report.verification
    epochs = []
    for e in v.epochs:
        t = report.times.get(e.epoch)
        failed = [c.name for c in e.checks if not c.ok]
        epochs.append({
            "epoch": str(e.epoch),
            "steps": f"{e.first_step}..{e.first_step + e.step_count - 1}",
            "status": e.status,
            "committed": _utc(t.committed) if t else _NO_TIME,
            "proven_at": _utc(t.proven_at) if t else _NO_TIME,
            "receipt_stored": _utc(t.receipt_stored) if t else _NO_TIME,
            "first_seen": _utc(t.first_seen) if t else _NO_TIME,
            "window_end": _until(t.window_end, report.generated_at) if t else _NO_TIME,
            "guarantees": ", ".join(report.guarantees.get(e.epoch, [])) or _NO_TIME,
            "checks": "ok" if not failed else "FAILED: " + ", ".join(failed),
            "ok": e.ok,
        })
    checks = [("run", c.name, c.ok, c.detail) for c in v.checks]
    checks += [(f"epoch {e.epoch}", c.name, c.ok, c.detail) for e in v.epochs for c in e.checks]
    roots = report.roots
    counts: dict[str, int] = {}
    for e in v.epochs:
        counts[e.status] = counts.get(e.status, 0) + 1
    window = report.challenge_window
    summary = [
        ("verification", "passed" if v.ok else "FAILED"),
        ("epochs", ", ".join(f"{n} {s}" for s, n in counts.items()) or "none committed"),
        ("steps per epoch", _NO_TIME if report.steps_per_epoch is None
         else str(report.steps_per_epoch)),
        ("steps plotted", str(len(report.points))),
        ("challenge window", _NO_TIME if window is None else f"{window:g} s"),
        ("report made", _utc(report.generated_at)),
    ]
    return {
        "run_id": report.run_id,
        "run_uri": report.run_uri,
        "ok": v.ok,
        "summary": summary,
        "roots": [
            ("guest image id", ", ".join(roots.image_ids) or _NO_TIME, bool(roots.image_ids)),
            ("trainer key (Ed25519)", ", ".join(roots.trainer_keys) or _NO_TIME,
             bool(roots.trainer_keys)),
            ("trainer", "pinned" if roots.trainer_pinned else "unpinned", False),
            ("taken from", roots.source, False),
        ],
        "epochs": epochs,
        "checks": checks,
        "commands": report.commands,
        "notes": report.notes,
        "legend": LEGEND,
        "statuses": STATUS_MEANING,
    }


_PLOT_TEXT = {
    "loss": ("Loss per step",
             "The loss each step's record commits to (f32 bits in the signed record)."),
    "lr": ("Learning rate per step",
           ("The schedule's rate at each step, shown where the record's hyperparameter digest "
           "commits to exactly that rate (the guest checks this for proven epochs).")),
    "finality": ("Finality timeline", (f"Per epoch (the newest {TIMELINE_ROWS}): the challenge "
                 "window as a bar coloured by status, from its start to its end, with the times "
                 "of the table below; the dotted red line is when this report was made.")),
}


def render_html(report: Report, plots: dict[str, bytes]) -> str:
    """The self-contained page: styles and PNGs inline, no scripts, every value escaped."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    template = env.from_string(_TEMPLATE.read_text())
    images = [
        {"name": name, "title": _PLOT_TEXT[name][0], "caption": _PLOT_TEXT[name][1],
         "src": _data_uri(plots[name])}
        for name in PLOTS if name in plots
    ]
    missing = [_PLOT_TEXT[name][0] for name in PLOTS if name not in plots]
    return template.render(**_view(report), images=images, missing=missing)


def render_markdown(
    report: Report, plots: dict[str, bytes], link: Callable[[str, bytes], str]
) -> str:
    """The same content as markdown; ``link(name, png)`` gives each plot's link target: its
    file beside report.md, or a data URI where the markdown must stand alone (an artifact)."""
    images = {name: link(name, png) for name, png in plots.items()}
    v = _view(report)
    out = [f"# veritrain audit report: run {_code(v['run_id'])}", "",
           f"Run URI: {_code(v['run_uri'])}", ""]
    out += _md_table(["", ""], [[k, val] for k, val in v["summary"]])
    out += ["", "## Trust roots", ""]
    out += _md_table(["", ""], [[k, _code(val) if code else val]
                                for k, val, code in v["roots"]])
    out += ["", "## Training curves", ""]
    for name in ("loss", "lr"):
        title, caption = _PLOT_TEXT[name]
        if name in images:
            out += [f"![{_md(title)}]({images[name]})", "", _md(caption), ""]
        else:
            out += [f"{_md(title)}: no records to plot.", ""]
    out += ["## Finality timeline", ""]
    if "finality" in images:
        out += [f"![{_md(_PLOT_TEXT['finality'][0])}]({images['finality']})", ""]
    cols = ["epoch", "steps", "status", "committed", "proven (trainer)", "receipt stored",
            "first seen", "window ends", "guarantees", "checks"]
    keys_ = ["epoch", "steps", "status", "committed", "proven_at", "receipt_stored", "first_seen",
             "window_end", "guarantees", "checks"]
    out += _md_table(cols, [[e[k] for k in keys_] for e in v["epochs"]])
    out += ["", "Times are UTC. " + " ".join(f"*{_md(k)}*: {_md(m)}." for k, m in v["legend"]), ""]
    out += ["Statuses: " + " ".join(f"*{s}*: {_md(m)}." for s, m in v["statuses"]), ""]
    out += ["## Verification checks", ""]
    out += _md_table(["where", "check", "result", "detail"],
                     [[w, n, "ok" if ok else "FAIL", d] for w, n, ok, d in v["checks"]])
    out += ["", "## Re-verify", ""]
    for what, cmd in v["commands"]:
        fence = "`" * max(3, _longest_backticks(cmd) + 1)
        out += [f"{_md(what)}:", "", f"{fence}sh", cmd, fence, ""]
    if v["notes"]:
        out += ["## Notes", ""] + [f"- {_md(n)}" for n in v["notes"]] + [""]
    return "\n".join(out)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(c if c.startswith("`") else _md(c) for c in row) + " |")
    return lines


_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")


def _md(text: str) -> str:
    """Plain text for a markdown paragraph or table cell: HTML and markdown syntax escaped,
    line breaks folded (a table row is one line)."""
    text = " ".join(str(text).split())
    text = html.escape(text, quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)


def _code(text: str) -> str:
    """A code span for any text: HTML escapes do not apply inside, but a table cell still
    ends at an unescaped pipe (GitHub's rule), and a backtick run needs a longer fence."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    fence = "`" * (_longest_backticks(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _longest_backticks(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


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
    return render_markdown(report, render_plots(report), lambda _, png: _data_uri(png))


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


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
