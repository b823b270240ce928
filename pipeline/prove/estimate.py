"""How long an epoch's proof will take, said before it starts, and how far it has come.

A proof is its execution's parts (pipeline/prove/parts.py): each segment proven and lifted, the
joins of a balanced tree over them, and from epoch 1 on the resolve of the previous epoch's
receipt. The estimate adds up the parts, one after another, at this machine's own rates where
it has proven such a part before: the newest seconds of each kind of part are kept in
``prove-rates.json`` in a folder the caller names (the command line's is ``$VERITRAIN_STATE``),
a segment's by its size, so its rate is 2^po2 cycles per those seconds. Without them it uses
DEFAULT_SECONDS and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

RATES_FILE = "prove-rates.json"
# risc0's segment limit when none is set (its DEFAULT_SEGMENT_LIMIT_PO2).
RISC0_SEGMENT_PO2 = 20
# Measurements kept per kind of part; the estimate takes their median, so one proof made while
# the machine was busy does not set the next estimate.
KEEP = 5
# Seconds of each kind of part measured on the 2-core development machine (risc0 3.1.0-rc.1, load
# average about 2 from other work): a tiny epoch's 2^16 segment and a digits epoch's 2^18
# segment proven and lifted, a join and a resolve (docs/OPERATIONS.md, "How long proving takes").
DEFAULT_SECONDS = {"segment-16": 150.0, "segment-18": 440.0, "join": 150.0, "resolve": 140.0}
DEFAULT_SOURCE = "default rates (measured on a 2-core machine, docs/OPERATIONS.md)"
KINDS = ("segment", "join", "resolve")


def segment_key(po2: int) -> str:
    return f"segment-{po2}"


def segment_po2s(total_cycles: int, segments: int, po2: int | None) -> list[int]:
    """Each segment's size, log2 of its padded cycles (an execution's total is their sum): every
    segment but the last fills the limit (2^po2, risc0's 2^20 when None), the last holds the
    rest. Counts that do not add up that way are read as segments of the limit: an estimate is
    advice and never stops a proof."""
    limit = po2 or RISC0_SEGMENT_PO2
    last = total_cycles - (segments - 1) * (1 << limit)
    if segments < 1 or last < 1 or last & (last - 1) or last > 1 << limit:
        return [limit] * max(segments, 1)
    return [limit] * (segments - 1) + [last.bit_length() - 1]


def duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass
class Rates:
    """The seconds this machine took for its newest proof parts, by kind (``segment-<po2>``,
    ``join``, ``resolve``), kept in ``folder``."""

    folder: Path
    seconds: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> Rates:
        """What ``folder`` holds; nothing if it holds nothing readable."""
        try:
            doc = json.loads((folder / RATES_FILE).read_text())
        except (OSError, ValueError):
            doc = None
        kept = {}
        for kind, values in doc.items() if isinstance(doc, dict) else ():
            if isinstance(values, list) and all(
                isinstance(v, (int, float)) and v > 0 for v in values
            ):
                kept[str(kind)] = [float(v) for v in values][-KEEP:]
        return cls(folder, kept)

    def record(self, kind: str, seconds: float) -> None:
        """Adds a measurement, rereading the file first so that other provers' are kept. A folder
        that cannot be written loses it: the rates only feed estimates."""
        self.seconds = Rates.load(self.folder).seconds
        self.seconds[kind] = [*self.seconds.get(kind, []), round(seconds, 1)][-KEEP:]
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(self.seconds, f, indent=1, sort_keys=True)
                os.replace(tmp, self.folder / RATES_FILE)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def part_seconds(self, kind: str) -> tuple[float, bool]:
        """(seconds, measured here) for one part: the median of this machine's measurements of
        it, else the default. A segment size with neither takes the rate in cycles per second of
        the nearest size measured here, else of the nearest default: a machine's own rate at
        another size says more about it than another machine's at this one."""
        if kind in self.seconds:
            return statistics.median(self.seconds[kind]), True
        if not kind.startswith("segment-"):
            return DEFAULT_SECONDS[kind], False
        po2 = int(kind.removeprefix("segment-"))
        for table, here in ((self.seconds, True), (DEFAULT_SECONDS, False)):
            sizes = [int(k.removeprefix("segment-")) for k in table if k.startswith("segment-")]
            if sizes:
                near = min(sizes, key=lambda p: (abs(p - po2), p))
                seconds = table[segment_key(near)]
                base = statistics.median(seconds) if isinstance(seconds, list) else seconds
                return base * 2.0 ** (po2 - near), here
        raise AssertionError("DEFAULT_SECONDS has segment sizes")


@dataclass(frozen=True)
class ProofPlan:
    """An executed epoch's proof before it starts: its parts and the seconds each should take."""

    epoch: int
    user_cycles: int
    total_cycles: int
    po2s: tuple[int, ...]
    resolve: bool
    seconds: dict[str, float]
    measured: frozenset[str]

    @property
    def joins(self) -> int:
        return len(self.po2s) - 1

    @property
    def parts(self) -> int:
        return len(self.po2s) + self.joins + int(self.resolve)

    def part_estimate(self, kind: str, index: int) -> float:
        return self.seconds[segment_key(self.po2s[index - 1]) if kind == "segment" else kind]

    @property
    def total(self) -> float:
        segments = sum(self.part_estimate("segment", k + 1) for k in range(len(self.po2s)))
        return segments + self.joins * self.seconds["join"] + self.resolve * self.seconds["resolve"]

    def line(self, where: str = "") -> str:
        sizes = sorted(set(self.po2s), reverse=True)
        counts = ", ".join(f"{self.po2s.count(p)} of 2^{p}" for p in sizes)
        n = len(self.po2s)
        rates = [
            f"2^{p} segment {self.seconds[segment_key(p)]:.0f} s "
            f"({(1 << p) / self.seconds[segment_key(p)]:,.0f} cycles/s)"
            for p in sizes
        ]
        if self.joins:
            rates.append(f"join {self.seconds['join']:.0f} s")
        if self.resolve:
            rates.append(f"resolve {self.seconds['resolve']:.0f} s")
        used = {segment_key(p) for p in sizes}
        used |= {k for k, needed in (("join", self.joins), ("resolve", self.resolve)) if needed}
        if used <= self.measured:
            source = "rates measured on this machine"
        elif used & self.measured:
            source = f"rates measured on this machine where it has them, else {DEFAULT_SOURCE}"
        else:
            source = f"{DEFAULT_SOURCE}: none measured on this machine yet"
        return (
            f"epoch {self.epoch}: to prove {self.total_cycles:,} cycles ({self.user_cycles:,} "
            f"user) in {n} segment{'s' * (n != 1)} ({counts}), {self.joins} "
            f"join{'s' * (self.joins != 1)}, {'1 resolve' if self.resolve else 'no resolve'}"
            f"{where}: about {duration(self.total)} ({', '.join(rates)}; {source})"
        )


def plan(
    epoch: int,
    user_cycles: int,
    total_cycles: int,
    segments: int,
    po2: int | None,
    rates: Rates,
) -> ProofPlan:
    """The plan of an executed epoch's proof (at segment limit ``po2``), estimated at ``rates``."""
    po2s = segment_po2s(total_cycles, segments, po2)
    seconds, measured = {}, set()
    for kind in [*(segment_key(p) for p in set(po2s)), "join", "resolve"]:
        seconds[kind], here = rates.part_seconds(kind)
        if here:
            measured.add(kind)
    return ProofPlan(
        epoch, user_cycles, total_cycles, tuple(po2s), epoch > 0, seconds, frozenset(measured)
    )


class ProofProgress:
    """An epoch's proof as its parts finish (in any order, from any thread): one line per part
    with the time since the plan was made and the estimate of what is left."""

    def __init__(self, plan: ProofPlan, started: float | None = None) -> None:
        self.plan = plan
        self.started = time.monotonic() if started is None else started
        self.completed = 0
        self._left = plan.total
        self._lock = threading.Lock()

    def done(
        self, kind: str, index: int, count: int, seconds: float | None, by: str | None = None
    ) -> str:
        """The line for a finished part; ``seconds`` None: it was stored already."""
        with self._lock:
            self.completed += 1
            self._left = max(0.0, self._left - self.plan.part_estimate(kind, index))
            left = self._left
        what = {
            "segment": f"segment {index}/{count} proven and lifted",
            "join": f"join {index}/{count} done",
            "resolve": "the previous epoch's receipt resolved",
        }[kind]
        took = " earlier (stored already)" if seconds is None else f" in {duration(seconds)}"
        elapsed = duration(time.monotonic() - self.started)
        tail = f"about {duration(left)} left" if left else "the rest is quick"
        return (
            f"epoch {self.plan.epoch}: {what}{f' by {by}' if by else ''}{took} "
            f"({elapsed} elapsed, {tail})"
        )
