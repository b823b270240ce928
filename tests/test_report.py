"""`veritrain report`: the audit report of a run, as a self-contained page rendered by a real
headless Chromium, and as markdown. The proven run is the session's tiny run (no proofs are made
here); the failure cases use the unproven run, trained in seconds."""

from __future__ import annotations

import base64
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import PREFECT, ROOT, in_env, veritrain
from PIL import Image
from s3servers import moto_s3, set_s3_env  # noqa: F401 - fixtures

from veritrain.pipeline.publish.report import REPORT_FILES, build_report, markdown_standalone
from veritrain.pipeline.store.local import LocalStore

CHROMIUM = shutil.which("chromium")


class _Dom(HTMLParser):
    """The elements of a page (tag, attributes, text inside), in document order."""

    def __init__(self, page: str):
        super().__init__()
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        el = {"tag": tag, "attrs": dict(attrs), "text": ""}
        el["ids"] = [e["attrs"].get("id") for e in self._open if e["attrs"].get("id")]
        self.elements.append(el)
        if tag not in ("img", "meta", "br", "link", "input"):
            self._open.append(el)

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for el in self._open:
            el["text"] += data

    def find(self, tag: str, within: str | None = None) -> list[dict]:
        return [
            e for e in self.elements if e["tag"] == tag and (within is None or within in e["ids"])
        ]

    def by_id(self, id_: str) -> dict:
        (el,) = [e for e in self.elements if e["attrs"].get("id") == id_]
        return el


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is not installed (scripts/test.sh installs it)"
    return subprocess.run(
        # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={cwd / 'chromium-profile'}",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _rendered_dom(page: Path, tmp_path: Path) -> _Dom:
    r = _chromium("--dump-dom", page.as_uri(), cwd=tmp_path)
    assert r.returncode == 0 and "<html" in r.stdout, r.stderr[-2000:]
    return _Dom(r.stdout)


def _png(data: bytes) -> Image.Image:
    """Decodes a PNG fully (PIL raises on a truncated or corrupt one) and checks it is not
    blank: a plot has lines and text, so more than a couple of colours."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    img.load()
    assert img.width > 100 and img.height > 100
    colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is None or len(colors) > 10, "a blank image"
    return img


def _report(uri: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return veritrain("report", uri, "--out", str(out), *extra)


# -- a proven run, in the browser ----------------------------------------------------------------


@pytest.mark.proving
def test_report_of_a_proven_run_renders_in_chromium(tiny_run, tmp_path):
    src, run_id, _ = tiny_run
    # A store path with markup and quotes in it: the page must show it as text, not as markup.
    store = tmp_path / "st<b>o&re\"x'<img src=x onerror=alert(1)>"
    shutil.copytree(src, store)
    uri = f"{store}/runs/{run_id}"
    out = tmp_path / "report"
    r = _report(uri, out)
    assert r.returncode == 0, r.stderr
    page = Path(r.stdout.strip().splitlines()[-1])
    assert page == out / "index.html" and page.is_file()
    assert {p.name for p in out.iterdir()} == REPORT_FILES

    dom = _rendered_dom(page, tmp_path)
    assert not dom.find("script"), "the page must need no JavaScript"
    assert dom.by_id("run-uri")["text"] == uri
    assert dom.find("b", within="run-uri") == [] and dom.find("img", within="run-uri") == []
    assert "verification passed" in dom.by_id("verdict")["text"]

    # Every plot: an <img> whose data URI decodes to a real, non-blank PNG.
    for name in ("loss", "lr", "finality"):
        (img,) = dom.find("img", within=f"plot-{name}")
        src_attr = img["attrs"]["src"]
        assert src_attr.startswith("data:image/png;base64,"), name
        _png(base64.b64decode(src_attr.split(",", 1)[1], validate=True))

    # The epoch table: every epoch of the run with its status (window 0 and this machine's
    # profile: both proven epochs are final).
    rows = [e for e in dom.find("tr", within="epochs") if "data-epoch" in e["attrs"]]
    assert [r_["attrs"]["data-epoch"] for r_ in rows] == ["0", "1"]
    for row in rows:
        cells = [c["text"] for c in _cells(dom, row)]
        assert cells[2] == "final" and cells[-1] == "ok", cells
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", cells[6]), cells  # first seen

    roots = dom.by_id("trust-roots")["text"]
    manifest = (store / "runs" / run_id / "run.json").read_text()
    image_id = re.search(r'"image_id": "([0-9a-f]{64})"', manifest).group(1)
    key = re.search(r'"public_key": "([0-9a-f]{64})"', manifest).group(1)
    assert image_id in roots and key in roots and "unpinned" in roots

    commands = [e["text"] for e in dom.find("code", within="commands")]
    assert f"veritrain verify {shlex.quote(uri)}" in commands
    assert shlex.split(commands[0])[2] == uri
    assert f"veritrain audit {shlex.quote(uri)} --epoch 1 --out audit-epoch-1" in commands

    # And it looks like something: the screenshot of the page is not blank.
    shot = tmp_path / "shot.png"
    r = _chromium(f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri(), cwd=tmp_path)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    _png(shot.read_bytes())

    # The re-verify command does what it says.
    v = veritrain(*shlex.split(commands[0])[1:])
    assert v.returncode == 0, v.stderr


def _cells(dom: _Dom, row: dict) -> list[dict]:
    i = dom.elements.index(row)
    cells = []
    for el in dom.elements[i + 1 :]:
        if el["tag"] == "tr":
            break
        if el["tag"] == "td":
            cells.append(el)
    return cells


@pytest.mark.proving
def test_report_markdown_has_the_epoch_table_and_its_plots(tiny_run, tmp_path):
    src, run_id, _ = tiny_run
    store = tmp_path / "store"
    shutil.copytree(src, store)
    out = tmp_path / "report"
    assert _report(f"{store}/runs/{run_id}", out).returncode == 0
    md = (out / "report.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (\d+\.\.\d+) \| (\w+) \|", md, re.MULTILINE)
    assert rows == [("0", "0..2", "final"), ("1", "3..5", "final")]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == ["finality.png", "loss.png", "lr.png"]
    for link in links:
        _png((out / link).read_bytes())
    assert f"veritrain verify {shlex.quote(f'{store}/runs/{run_id}')}" in md

    # The standalone form (a Prefect markdown artifact) carries the same plots inline.
    report = build_report(LocalStore(store), run_id)
    standalone = markdown_standalone(report)
    inline = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([^)]+)\)", standalone)
    assert len(inline) == 3
    for data in inline:
        _png(base64.b64decode(data, validate=True))


# -- failures ------------------------------------------------------------------------------------


def test_report_of_a_failing_run_is_written_and_exits_1(unproven_run, tmp_path):
    src, run_id = unproven_run
    store = tmp_path / "store"
    shutil.copytree(src, store)
    records = store / "runs" / run_id / "records" / "epoch-000001.bin"
    data = bytearray(records.read_bytes())
    data[200] ^= 1
    records.write_bytes(bytes(data))
    out = tmp_path / "report"
    r = _report(f"{store}/runs/{run_id}", out)
    assert r.returncode == 1, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(out / "index.html")
    assert len(r.stderr.strip().splitlines()) == 1 and "epoch 1: records" in r.stderr
    dom = _Dom((out / "index.html").read_text())
    assert "verification FAILED" in dom.by_id("verdict")["text"]
    cells = dom.find("td", within="epochs")
    failed = [e["text"] for e in cells if "bad" in e["attrs"].get("class", "")]
    assert failed == ["FAILED: records"]
    # Unproven: no finality plot, both curves (epoch 1's records are not plotted: they do not
    # match their ledger entry).
    assert {p.name for p in out.iterdir()} == REPORT_FILES - {"finality.png"}
    assert "Epoch 1: records not plotted" in (out / "report.md").read_text()


def test_report_exit_codes(unproven_run, tmp_path):
    src, run_id = unproven_run
    uri = f"{src}/runs/{run_id}"

    r = _report(f"{tmp_path}/empty-store/runs/{run_id}", tmp_path / "a")
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no such run" in r.stderr and not (tmp_path / "a").exists()

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = _report(uri, other)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--out" in r.stderr, r.stderr
    assert [p.name for p in other.iterdir()] == ["notes.txt"]

    (tmp_path / "file").write_text("x")
    r = _report(uri, tmp_path / "file" / "report")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--out" in r.stderr, r.stderr

    # A folder holding a report of this run is rewritten; of another run, refused.
    out = tmp_path / "report"
    assert _report(uri, out).returncode == 0
    assert _report(uri, out).returncode == 0
    html = out / "index.html"
    html.write_text(html.read_text().replace(f'content="{run_id}"', 'content="another-run"'))
    r = _report(uri, out)
    assert r.returncode == 2 and "not a report of run" in r.stderr, r.stderr


def test_report_imports_neither_torch_nor_prefect(unproven_run, tmp_path):
    """The report is verification: neither torch nor prefect is imported to write it."""
    src, run_id = unproven_run
    code = (
        "import sys\n"
        "from veritrain.flows.cli import main\n"
        f"rc = main(['report', {str(src / 'runs' / run_id)!r}, '--out', {str(tmp_path / 'r')!r}])\n"
        "assert rc == 0, rc\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'prefect')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.proving
def test_the_training_flow_publishes_the_report_as_a_markdown_artifact(
    tiny_run, prefect_server, tmp_path
):
    """The training flow's last task, on a real Prefect server: the artifact is the report's
    markdown with its plots inline."""
    src, run_id, _ = tiny_run
    store = tmp_path / "store"
    shutil.copytree(src, store)
    code = (
        "from prefect import flow\n"
        "from veritrain.flows.training import publish_report\n"
        "@flow\n"
        "def publish():\n"
        f"    return publish_report({str(store)!r}, {run_id!r})\n"
        "print(publish())\n"
    )
    r = in_env(prefect_server, sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr[-2000:]
    key = r.stdout.strip().splitlines()[-1]
    r = in_env(prefect_server, PREFECT, "artifact", "inspect", key, "--output", "json")
    assert r.returncode == 0, r.stderr[-2000:]
    (artifact,) = json.loads(r.stdout)
    assert artifact["type"] == "markdown"
    md = artifact["data"]
    assert re.findall(r"^\| (\d+) \| \d+\.\.\d+ \| (\w+) \|", md, re.MULTILINE) == [
        ("0", "final"),
        ("1", "final"),
    ]
    inline = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([^)]+)\)", md)
    assert len(inline) == 3
    for data in inline:
        _png(base64.b64decode(data, validate=True))


@pytest.mark.proving
def test_report_on_s3_shows_the_server_times(tiny_run, moto_s3, monkeypatch, tmp_path):  # noqa: F811
    """On S3 the timeline has the times the server wrote: each epoch's ledger entry (committed)
    and receipt (stored), as the server's LastModified says."""
    src, run_id, _ = tiny_run
    set_s3_env(monkeypatch, moto_s3.endpoint)
    bucket = moto_s3.new_bucket()
    client = moto_s3.client()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key=f"p/{path.relative_to(src)}", Body=path.read_bytes())
    uri = f"s3://{bucket}/p/runs/{run_id}"
    out = tmp_path / "report"
    r = _report(uri, out)
    assert r.returncode == 0, r.stderr
    md = (out / "report.md").read_text()
    rows = re.findall(
        r"^\| (\d+) \| [^|]+ \| (\w+) \| ([^|]+) \| [^|]+ \| ([^|]+) \|", md, re.MULTILINE
    )
    assert [(e, status) for e, status, _, _ in rows] == [("0", "final"), ("1", "final")]
    ledger = {
        json.loads(p.read_text())["body"].get("epoch"): p.name
        for p in sorted((src / "runs" / run_id / "ledger").iterdir())
        if json.loads(p.read_text())["kind"] == "epoch"
    }
    for e, _, committed, stored in rows:
        head = client.head_object(Bucket=bucket, Key=f"p/runs/{run_id}/ledger/{ledger[int(e)]}")
        assert committed.strip() == head["LastModified"].strftime("%Y-%m-%d %H:%M:%SZ")
        head = client.head_object(
            Bucket=bucket, Key=f"p/runs/{run_id}/receipts/epoch-{int(e):06d}.receipt"
        )
        assert stored.strip() == head["LastModified"].strftime("%Y-%m-%d %H:%M:%SZ")
