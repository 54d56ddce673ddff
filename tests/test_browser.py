"""The report in a real browser (Debian's headless Chromium): it loads from a file with no network,
attempts no request, and shows the verdict and every target's measured value on the first screen.

Requests are read from Chromium's own NetLog (--log-net-log): the page's requests carry the
file:// page as their network isolation key, which tells them from the browser's background
traffic. CSP refusals are read from its console log. Both detectors are shown to fire on a
doctored copy, so a clean result means something. Chromium missing is a failure, not a skip:
.ci/run installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from drillkit.report import render_report
from drillkit.report.history import scan, write_html
from drillkit.report.pdf import run_browser

from support.sample_evidence import make_drill

FIRST_SCREEN = (1280, 800)
COLOURS = {"pass": (0x1A, 0x7F, 0x37), "fail": (0xC6, 0x28, 0x28)}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0", "--host-resolver-rules=MAP * ~NOTFOUND"]
PROBE = "http://probe.drillkit.invalid/pixel.png"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("DRILLKIT_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("chromium is not installed: the browser test needs Debian's `chromium` "
                    "(.ci/run installs it: apt-get install chromium)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for verdict in ("pass", "fail"):
        folder = make_drill(tmp_path_factory.mktemp(verdict) / "drill", failing=verdict == "fail")
        out[verdict] = render_report(folder)
    # failures that wait out a client timeout: the latency chart's axis is logarithmic
    out["timeouts"] = render_report(make_drill(tmp_path_factory.mktemp("timeouts") / "drill", failing=True,
                                               timeouts=True))
    return out


class Run:
    def __init__(self, dom: str, log: str, requests: list[str]):
        self.dom, self.log, self.requests = dom, log, requests

    def csp_refusals(self) -> list[str]:
        return [line for line in self.log.splitlines() if "Content Security Policy" in line]


def browse(chromium: str, page: Path, tmp: Path, *extra: str, dump: bool = True) -> Run:
    """One headless Chromium run on `page`; its process group is killed whatever happens."""
    tmp.mkdir(parents=True, exist_ok=True)
    netlog = tmp / "netlog.json"
    args = [chromium, *FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--log-net-log={netlog}",
            *extra, *(["--dump-dom"] if dump else []), page.resolve().as_uri()]
    done = run_browser(args, timeout=90)
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return Run(done.stdout, done.stderr, page_requests(netlog))


def page_requests(netlog: Path) -> list[str]:
    """URLs of network requests the page started (not the browser's own update/sign-in pings)."""
    data = json.loads(netlog.read_text())
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in data["events"]
            if e["type"] == start and "url" in e.get("params", {})
            and ("file://" in str(e["params"].get("network_isolation_key"))
                 or e["params"].get("initiator") == "null")]


class _Text(HTMLParser):
    """Text of the cells of the targets table's "Measured" column."""

    def __init__(self):
        super().__init__()
        self.section, self.col, self.cells, self.buf = None, -1, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.section = dict(attrs).get("id")
        elif self.section == "targets" and tag == "tr":
            self.col = -1
        elif self.section == "targets" and tag in ("td", "th"):
            self.col += 1
            self.buf = [] if (tag == "td" and self.col == 2) else None

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.buf is not None:
            self.cells.append(" ".join("".join(self.buf).split()))
            self.buf = None

    def handle_data(self, data):
        if self.buf is not None:
            self.buf.append(data + " ")


def measured_cells(html: str) -> list[str]:
    p = _Text()
    p.feed(html)
    return p.cells


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.mark.parametrize("verdict", ["pass", "fail"])
def test_report_loads_offline_with_no_request_and_shows_the_verdict(chromium, reports, verdict, tmp_path):
    report = reports[verdict]
    run = browse(chromium, report, tmp_path)
    assert run.dom.rstrip().endswith("</html>") and 'id="timeline"' in run.dom, "page did not load"
    assert f'<div class="verdict">{verdict.upper()}</div>' in run.dom
    assert f"<title>{verdict.upper()} — region-loss — drill report</title>" in run.dom
    assert run.requests == [], f"the report made network requests: {run.requests}"
    assert run.csp_refusals() == [], run.csp_refusals()
    assert "net::ERR_" not in run.log
    cells = measured_cells(report.read_text(encoding="utf-8"))
    assert len(cells) >= 8
    dom_text = text_of(run.dom)
    for cell in cells:
        assert cell in dom_text, f"measured value {cell!r} not in the rendered page"
    assert run.dom.count('<svg class="chart"') == 2


class _SvgText(HTMLParser):
    """Every text node inside an <svg> of the page, as the browser rendered it."""

    def __init__(self):
        super().__init__()
        self.depth, self.texts = 0, []

    def handle_starttag(self, tag, attrs):
        self.depth += tag == "svg"

    def handle_endtag(self, tag):
        self.depth -= tag == "svg"

    def handle_data(self, data):
        if self.depth and data.strip():
            self.texts.append(data.strip())


@pytest.mark.parametrize("which", ["pass", "fail", "timeouts"])
def test_chart_axis_labels_are_readable_text(chromium, reports, which, tmp_path):
    """No raw mathtext in any chart: a log axis once printed `$\\mathdefault{10^{2}}$`."""
    run = browse(chromium, reports[which], tmp_path)
    parser = _SvgText()
    parser.feed(run.dom)
    assert len(parser.texts) > 20, "the charts hold no text"
    raw = [t for t in parser.texts if "$" in t or "^{" in t or "\\math" in t]
    assert raw == [], f"chart labels in raw mathtext: {raw}"
    if which == "timeouts":
        ticks = set(parser.texts)
        assert {"10", "100", "1000"} <= ticks, f"no logarithmic latency axis: {sorted(ticks)}"


@pytest.mark.parametrize("verdict", ["pass", "fail"])
def test_first_screen_holds_the_verdict_and_every_target(chromium, reports, verdict, tmp_path):
    """Layout measured by a script added to a copy (the report itself runs none): every row of
    the targets table ends within a 1280x800 screen."""
    html = reports[verdict].read_text(encoding="utf-8")
    probe = ("<script>(function(){var o={w:innerWidth,rows:[]};"
             "o.verdict=document.querySelector('#verdict').getBoundingClientRect().bottom;"
             "document.querySelectorAll('#targets tr').forEach(function(r){"
             "o.rows.push([r.cells[0].textContent.trim(),r.getBoundingClientRect().bottom]);});"
             "var p=document.createElement('pre');p.id='layout';p.textContent=JSON.stringify(o);"
             "document.body.appendChild(p);})();</script></body>")
    copy = tmp_path / "layout.html"
    copy.write_text(html.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
                    .replace("</body>", probe), encoding="utf-8")
    run = browse(chromium, copy, tmp_path / "run", f"--window-size={FIRST_SCREEN[0]},{FIRST_SCREEN[1]}")
    m = re.search(r'<pre id="layout">(.*?)</pre>', run.dom)
    assert m, "layout probe did not run"
    layout = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert layout["w"] == FIRST_SCREEN[0]
    assert len(layout["rows"]) >= 9
    below = [(name, bottom) for name, bottom in layout["rows"] if bottom > FIRST_SCREEN[1]]
    assert not below, f"below the first {FIRST_SCREEN[0]}x{FIRST_SCREEN[1]} screen: {below}"
    assert layout["verdict"] < 250


@pytest.mark.parametrize("verdict", ["pass", "fail"])
def test_screenshot_shows_the_verdict_banner_first(chromium, reports, verdict, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    browse(chromium, reports[verdict], tmp_path, f"--window-size={FIRST_SCREEN[0]},{FIRST_SCREEN[1]}",
           f"--screenshot={shot}", dump=False)
    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.shape[1] == FIRST_SCREEN[0]
    want = COLOURS[verdict]
    banner = (abs(pixels[:200] - want).sum(axis=2) <= 6).mean()
    other = COLOURS["fail" if verdict == "pass" else "pass"]
    assert banner > 0.25, f"the {verdict} banner covers only {banner:.0%} of the top 200 px"
    assert (abs(pixels[:200] - other).sum(axis=2) <= 6).mean() < 0.01


def test_report_prints_to_pdf(chromium, reports, tmp_path):
    pdf = tmp_path / "report.pdf"
    browse(chromium, reports["fail"], tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
           dump=False)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= 2


def test_detectors_fire_on_a_page_that_reaches_out(chromium, reports, tmp_path):
    """Without these two positive controls a clean result above could mean a blind detector."""
    html = reports["pass"].read_text(encoding="utf-8")
    img = f'<img alt="" src="{PROBE}">'
    open_page = tmp_path / "no-csp.html"
    open_page.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
                         .replace("</h1>", "</h1>" + img, 1), encoding="utf-8")
    assert browse(chromium, open_page, tmp_path / "a").requests == [PROBE]
    guarded = tmp_path / "csp.html"
    guarded.write_text(html.replace("</h1>", "</h1>" + img, 1), encoding="utf-8")
    run = browse(chromium, guarded, tmp_path / "b")
    assert run.requests == [] and len(run.csp_refusals()) == 1 and PROBE in run.csp_refusals()[0]


def test_history_page_loads_offline(chromium, tmp_path):
    for i, failing in enumerate((False, True, False)):
        folder = make_drill(tmp_path / "reports" / f"d{i}", n_ops=2000, failing=failing,
                            only_summary=True)
        s = json.loads((folder / "summary.json").read_text())
        s["measures"]["t_start"] += i * 86_400
        (folder / "summary.json").write_text(json.dumps(s))
    page = write_html(scan(tmp_path / "reports"))
    run = browse(chromium, page, tmp_path / "run")
    assert run.requests == [] and run.csp_refusals() == []
    assert run.dom.count('<svg class="chart"') == 1 and "Drill history" in run.dom
    drills = text_of(run.dom).split("Readiness as of", 1)[1]
    readiness, _, rows = drills.partition("region-loss")[2].partition("region-loss")
    assert "PASS" in readiness, "readiness names the last drill's verdict"
    assert rows.count("PASS") == 2 and "12.400 s" in run.dom
