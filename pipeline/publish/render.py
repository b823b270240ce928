"""How the audit report looks: its plots (matplotlib, PNG), the page (a jinja2 template with
autoescape, pipeline/publish/templates/report.html.j2) and the markdown, all from one view of a
Report (pipeline/publish/report.py), so the page and the markdown say the same."""

from __future__ import annotations

import base64
import html
import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veritrain.pipeline.run.code import describe_code
from veritrain.pipeline.verify.checks import COMMITTED, DISPUTED, FINAL, PROVEN, UNREPLAYABLE
from veritrain.pipeline.verify.finality import window_start

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from veritrain.pipeline.publish.report import Report

# Plot name -> file name beside report.md.
PLOTS = {
    "loss": "loss.png",
    "lr": "lr.png",
    "finality": "finality.png",
}
_TEMPLATE = Path(__file__).with_name("templates") / "report.html.j2"


# -- plots ---------------------------------------------------------------------------------------

_STATUS_COLORS = {
    COMMITTED: "#8c8c8c",
    PROVEN: "#1f77b4",
    FINAL: "#2ca02c",
    UNREPLAYABLE: "#ff7f0e",
    DISPUTED: "#d62728",
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
    boundaries = sorted(
        {
            p.step
            for p in pts
            if report.steps_per_epoch and p.step % report.steps_per_epoch == 0 and p.step > 0
        }
    )
    for name, label, value in (
        ("loss", "loss", lambda p: p.loss),
        ("lr", "learning rate", lambda p: p.lr),
    ):
        shown = [p for p in pts if value(p) is not None]
        if not shown:
            continue
        fig = Figure(figsize=(7.5, 2.8))
        ax = fig.add_subplot()
        for pending, style in ((False, "-"), (True, "--")):
            part = [p for p in shown if p.pending == pending]
            if part:
                ax.plot(
                    [p.step for p in part],
                    [value(p) for p in part],
                    style,
                    marker="." if len(part) < 60 else None,
                    color="#1f77b4",
                    label="open epoch (not yet claimed)" if pending else "claimed epochs",
                )
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


def _timeline(report: Report) -> Figure | None:
    """One row per epoch (the newest TIMELINE_ROWS): committed (server), proven (trainer's
    clock), receipt stored, first sighting, and the challenge window from its start to its end,
    coloured by status; None if no epoch has a time."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    rows = [
        (e.epoch, e.status, report.times[e.epoch])
        for e in report.verification.epochs
        if e.epoch in report.times
    ][-TIMELINE_ROWS:]
    if all(
        t.committed is None and t.proven_at is None and t.first_seen is None for _, _, t in rows
    ):
        return None
    fig = Figure(figsize=(7.5, 1.6 + 0.45 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    day = 86400.0  # matplotlib's dates are days since 1970-01-01 UTC
    labelled: set[str] = set()

    def mark(x: float | None, y: int, **kw: Any) -> None:
        if x is None:
            return
        label = kw.pop("label")
        ax.plot([x / day], [y], linestyle="none", label=None if label in labelled else label, **kw)
        labelled.add(label)

    for i, (_, status, t) in enumerate(rows):
        color = _STATUS_COLORS.get(status, "#000000")
        if t.first_seen is not None and t.window_end is not None:
            start = window_start(t.first_seen, t.receipt_stored)
            ax.plot(
                [start / day, t.window_end / day],
                [i, i],
                color=color,
                linewidth=6,
                solid_capstyle="butt",
                alpha=0.6,
            )
        mark(t.committed, i, marker="^", color="#8c8c8c", label="committed (server)")
        mark(
            t.proven_at,
            i,
            marker="o",
            markerfacecolor="none",
            color="#555555",
            label="proven (trainer's clock)",
        )
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
    (
        "committed",
        (
            "the store server's write time of the epoch's ledger entry (S3's "
            "LastModified); a local folder keeps none, its file times being the writer's"
        ),
    ),
    (
        "proven (trainer)",
        (
            "the receipt entry's proven_at: the trainer's own clock, signed by the "
            "trainer, so it decides nothing"
        ),
    ),
    ("receipt stored", "the store server's write time of the receipt"),
    ("first seen", "when this verifier (its state folder) first saw the receipt verify"),
    (
        "window ends",
        (
            "the later of first seen and receipt stored, plus the run's challenge "
            "window: a proven epoch is final from then on if no fraud proof is upheld and the "
            "run's determinism profile is one the verifier can replay (else unreplayable)"
        ),
    ),
]
STATUS_MEANING = [
    (COMMITTED, "the trainer's signed claim and records are in the ledger; no verified receipt"),
    (PROVEN, "its receipt verifies against the image id; the challenge window is still open"),
    (FINAL, "proven, the window has passed, no upheld fraud proof, and replayable"),
    (
        UNREPLAYABLE,
        ("proven and past the window, but no replayable profile could have challenged it"),
    ),
    (DISPUTED, "an upheld fraud proof names it or an earlier epoch"),
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


def _view(report: Report) -> dict[str, Any]:
    """Everything the page and the markdown show, as plain strings, in the order shown."""
    v = report.verification
    epochs = []
    for e in v.epochs:
        t = report.times.get(e.epoch)
        failed = [c.name for c in e.checks if not c.ok]
        epochs.append(
            {
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
            }
        )
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
        (
            "steps per epoch",
            _NO_TIME if report.steps_per_epoch is None else str(report.steps_per_epoch),
        ),
        ("steps plotted", str(len(report.points))),
        ("challenge window", _NO_TIME if window is None else f"{window:g} s"),
        ("code", describe_code(v.code)),
        ("report made", _utc(report.generated_at)),
    ]
    return {
        "run_id": report.run_id,
        "run_uri": report.run_uri,
        "ok": v.ok,
        "summary": summary,
        "roots": [
            ("guest image id", ", ".join(roots.image_ids) or _NO_TIME, bool(roots.image_ids)),
            (
                "trainer key (Ed25519)",
                ", ".join(roots.trainer_keys) or _NO_TIME,
                bool(roots.trainer_keys),
            ),
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
    "loss": (
        "Loss per step",
        "The loss each step's record commits to (f32 bits in the signed record).",
    ),
    "lr": (
        "Learning rate per step",
        (
            "The schedule's rate at each step, shown where the record's hyperparameter digest "
            "commits to exactly that rate (the guest checks this for proven epochs)."
        ),
    ),
    "finality": (
        "Finality timeline",
        (
            f"Per epoch (the newest {TIMELINE_ROWS}): the challenge "
            "window as a bar coloured by status, from its start to its end, with the times "
            "of the table below; the dotted red line is when this report was made."
        ),
    ),
}


def render_html(report: Report, plots: dict[str, bytes]) -> str:
    """The self-contained page: styles and PNGs inline, no scripts, every value escaped."""
    import jinja2

    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    template = env.from_string(_TEMPLATE.read_text())
    images = [
        {
            "name": name,
            "title": _PLOT_TEXT[name][0],
            "caption": _PLOT_TEXT[name][1],
            "src": data_uri(plots[name]),
        }
        for name in PLOTS
        if name in plots
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
    out = [
        f"# veritrain audit report: run {_code(v['run_id'])}",
        "",
        f"Run URI: {_code(v['run_uri'])}",
        "",
    ]
    out += _md_table(["", ""], [[k, val] for k, val in v["summary"]])
    out += ["", "## Trust roots", ""]
    out += _md_table(["", ""], [[k, _code(val) if code else val] for k, val, code in v["roots"]])
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
    cols = [
        "epoch",
        "steps",
        "status",
        "committed",
        "proven (trainer)",
        "receipt stored",
        "first seen",
        "window ends",
        "guarantees",
        "checks",
    ]
    keys_ = [
        "epoch",
        "steps",
        "status",
        "committed",
        "proven_at",
        "receipt_stored",
        "first_seen",
        "window_end",
        "guarantees",
        "checks",
    ]
    out += _md_table(cols, [[e[k] for k in keys_] for e in v["epochs"]])
    out += ["", "Times are UTC. " + " ".join(f"*{_md(k)}*: {_md(m)}." for k, m in v["legend"]), ""]
    out += ["Statuses: " + " ".join(f"*{s}*: {_md(m)}." for s, m in v["statuses"]), ""]
    out += ["## Verification checks", ""]
    out += _md_table(
        ["where", "check", "result", "detail"],
        [[w, n, "ok" if ok else "FAIL", d] for w, n, ok, d in v["checks"]],
    )
    out += ["", "## Re-verify", ""]
    for what, cmd in v["commands"]:
        fence = "`" * max(3, _longest_backticks(cmd) + 1)
        out += [f"{_md(what)}:", "", f"{fence}sh", cmd, fence, ""]
    if v["notes"]:
        out += ["## Notes", ""] + [f"- {_md(n)}" for n in v["notes"]] + [""]
    return "\n".join(out)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
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


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
