"""`topicli report`: the page as a real headless Chromium shows it, the PNGs, sampling, escaping and errors.

One `topicli run` and one `topicli report --png` serve the module (a run takes seconds, and
UMAP compiles once per process). The browser is Debian's `chromium`, driven over the DevTools
protocol: that reports uncaught exceptions, console.error calls and the browser's own errors
(failed loads, parse errors) as separate events, lists every request the page makes, and
takes the screenshot, with no log text to parse.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import websocket
from typer.testing import CliRunner

from topicli.cli import app
from topicli.config import Settings
from topicli.method.base import Candidate
from topicli.method.timeline import read_over_time, trends
from topicli.report.data import PostMap, Report, TopicView
from topicli.report.html import render_html
from topicli.report.png import RELIABILITY_SIZE, bar_chart_size, map_size
from topicli.runs.outputs import OVER_TIME_FILE

from .conftest import EXAMPLES

runner = CliRunner()
MIN_POSTS = Settings().output.min_posts
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)
VIEWPORT = (1280, 900)


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@dataclass
class Reported:
    folder: Path
    run: Path
    html: Path
    png: Path
    posts: pd.DataFrame
    table: pd.DataFrame  # the topic table, topics and unmatched clusters

    @property
    def topics(self) -> pd.DataFrame:
        return self.table[self.table["kind"] == "topic"].reset_index(drop=True)

    @property
    def listed(self) -> pd.DataFrame:
        """The topics the page lists one by one: at least [output] min_posts posts (the rest fold into a line)."""
        topics = self.topics
        return topics[topics["size"].astype(int) >= MIN_POSTS].reset_index(drop=True)

    @property
    def unmatched(self) -> pd.DataFrame:
        return self.table[self.table["kind"] == "unmatched"].reset_index(drop=True)


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Reported:
    folder = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))
        patch.setenv("TOPICLI_LABELLING_UNMATCHED_BELOW", "0.5")  # so that the page lists clusters no topic fits
        code, _, err = invoke("run", EXAMPLES)
        assert code == 0, err
        code, out, err = invoke("report", "--png", "png")
        assert code == 0, err
    run = folder / "topicli-out" / "posts"
    assert f"wrote {Path('topicli-out/posts/report.html')}" in " ".join(out.split())
    read = {"dtype": str, "keep_default_na": False}
    return Reported(
        folder,
        run,
        run / "report.html",
        folder / "png",
        pd.read_csv(run / "posts.csv", **read),
        pd.read_csv(run / "posts.topics.csv", **read),
    )


# Chromium over the DevTools protocol.


class DevTools:
    """Commands to one page, and every event that arrived meanwhile."""

    def __init__(self, url: str) -> None:
        self.socket = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self.last_id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        self.socket.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") != self.last_id:
                self.events.append(message)
            elif "error" in message:
                raise AssertionError(f"{method}: {message['error']}")
            else:
                return message["result"]

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.socket.recv()))

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls and errors the browser logged itself."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"]))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(json.dumps(params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]


def chromium_binary() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def devtools_port(profile: Path, process: subprocess.Popen[bytes], deadline: float) -> int:
    """The port Chromium picked, from the file it writes into the profile once it listens."""
    port_file = profile / "DevToolsActivePort"
    while True:
        lines = port_file.read_text().split() if port_file.exists() else []
        if len(lines) >= 2:
            return int(lines[0])
        assert process.poll() is None and time.monotonic() < deadline, "chromium did not start"
        time.sleep(0.1)


@contextmanager
def chromium(profile: Path) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile; its DevTools port is read from the profile, so no port is guessed."""
    process = subprocess.Popen(
        [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tools = None
    try:
        deadline = time.monotonic() + 60
        listing = f"http://127.0.0.1:{devtools_port(profile, process, deadline)}/json/list"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
        pages: list[dict[str, Any]] = []
        while not pages:
            assert time.monotonic() < deadline, "chromium opened no page"
            pages = [t for t in json.loads(opener.open(listing, timeout=10).read()) if t["type"] == "page"]
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        yield tools
    finally:
        if tools is not None:
            tools.socket.close()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


PAGE_FACTS = """(() => {
  const box = el => { const r = el.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; };
  const text = el => el.textContent.trim();
  return {
    height: document.documentElement.scrollHeight,
    bars: [...document.querySelectorAll("svg.bars g.bar")].map(g => ({
      topic: g.getAttribute("data-topic"), size: +g.getAttribute("data-size"), t: g.getAttribute("data-t"),
      width: g.querySelector("rect").getBBox().width})),
    barsBox: box(document.querySelector("svg.bars")),
    mapBox: box(document.querySelector("svg.map")),
    dots: document.querySelectorAll("svg.map circle").length,
    mapNote: text(document.getElementById("map-note")),
    figures: Object.fromEntries([...document.querySelectorAll(".figure")].map(f =>
      [f.getAttribute("data-figure"), text(f.querySelector("b"))])),
    topics: [...document.querySelectorAll("#topics tbody tr")].map(tr => ({
      topic: text(tr.querySelector("td.topic")), examples: [...tr.querySelectorAll("ol.examples li")].map(text)})),
    candidates: [...document.querySelectorAll("#candidates tbody tr")].map(tr => [...tr.cells].map(text)),
    folded: [...document.querySelectorAll("#other-candidates tbody tr")].map(tr => [...tr.cells].map(text)),
    chosen: [...document.querySelectorAll("#candidates tr.chosen")].map(tr => [...tr.cells].map(text)),
  };
})()"""

CLICK_TARGET = """(() => {
  const rect = document.querySelector('svg.bars g.bar[data-t="0"] rect');
  rect.scrollIntoView({block: "center"});
  const r = rect.getBoundingClientRect();
  return [r.left + r.width / 2, r.top + r.height / 2];
})()"""

AFTER_CLICK = """(() => ({
  focused: document.querySelector("svg.map").classList.contains("focus"),
  on: document.querySelectorAll("svg.map circle.on").length,
  onTopics: [...new Set([...document.querySelectorAll("svg.map circle.on")].map(c => c.getAttribute("data-t")))],
}))()"""


@dataclass
class Seen:
    problems: list[str]
    requests: list[str]
    facts: dict[str, Any]
    screenshot: np.ndarray  # RGB, 0-255
    after_click: dict[str, Any]


@pytest.fixture(scope="module")
def seen(reported: Reported, tmp_path_factory: pytest.TempPathFactory) -> Seen:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as tools:
        for domain in ("Runtime", "Log", "Network", "Page"):
            tools.send(f"{domain}.enable")
        width, height = VIEWPORT
        tools.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        tools.send("Page.navigate", url=reported.html.as_uri())
        tools.wait_for("Page.loadEventFired")
        tools.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        facts = tools.evaluate(PAGE_FACTS)
        clip = {"x": 0, "y": 0, "width": width, "height": facts["height"], "scale": 1}
        shot = tools.send("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        png = base64.b64decode(shot["data"])
        (reported.folder / "screenshot.png").write_bytes(png)
        x, y = tools.evaluate(CLICK_TARGET)
        for kind in ("mousePressed", "mouseReleased"):
            tools.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        after = tools.evaluate(AFTER_CLICK)
        image = matplotlib.image.imread(io.BytesIO(png), format="png")
        return Seen(tools.problems(), tools.requests(), facts, np.round(image[..., :3] * 255).astype(int), after)


def coloured_share(pixels: np.ndarray) -> float:
    """Share of saturated pixels: chart marks, not white background or grey text."""
    return float(np.mean(pixels.max(axis=-1) - pixels.min(axis=-1) > 60))


def distinct_colours(pixels: np.ndarray) -> int:
    saturated = pixels[pixels.max(axis=-1) - pixels.min(axis=-1) > 60]
    return len(np.unique(saturated[:, 0] * 65536 + saturated[:, 1] * 256 + saturated[:, 2]))


def crop(image: np.ndarray, box: dict[str, float]) -> np.ndarray:
    return image[int(box["y"]) : int(box["y"] + box["height"]), int(box["x"]) : int(box["x"] + box["width"])]


def expected_examples(posts: pd.DataFrame, topic: str) -> list[str]:
    """Independently of the library: the topic's most confident posts, file order on ties, each text once."""
    mine = posts[posts["topic"] == topic].assign(c=lambda f: f["topic_confidence"].astype(float))
    texts = mine.sort_values("c", ascending=False, kind="stable")["caption"].map(lambda t: " ".join(t.split()))
    return texts[~texts.str.casefold().duplicated()].head(5).tolist()


# The page as the browser shows it.


def test_page_loads_with_no_errors_and_no_network(seen: Seen) -> None:
    assert seen.problems == []
    assert seen.requests and all(url.startswith(("file:", "data:")) for url in seen.requests), seen.requests


def test_bar_chart_has_one_bar_per_topic_with_the_tables_sizes(seen: Seen, reported: Reported) -> None:
    bars = seen.facts["bars"]
    assert [(b["topic"], b["size"]) for b in bars] == list(
        zip(reported.listed["topic"], reported.listed["size"].astype(int), strict=True)
    )
    assert all(b["width"] > 0 for b in bars)
    widths = [b["width"] for b in bars]
    sizes = [b["size"] for b in bars]
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0], "bar lengths follow the sizes"
    assert widths[0] / widths[-1] == pytest.approx(sizes[0] / sizes[-1], rel=0.05), "in proportion to them"


def test_every_topic_has_its_five_most_confident_posts(seen: Seen, reported: Reported) -> None:
    shown = {row["topic"]: row["examples"] for row in seen.facts["topics"]}
    assert list(shown) == reported.listed["topic"].tolist()
    for topic, examples in shown.items():
        expected = expected_examples(reported.posts, topic)
        assert len(examples) == min(5, len(expected))
        assert all(e.rstrip("…") == x[: len(e.rstrip("…"))] for e, x in zip(examples, expected, strict=True)), topic


def test_map_note_figures_and_candidates(seen: Seen, reported: Reported) -> None:
    filled = reported.posts["caption"].str.strip() != ""
    assert seen.facts["dots"] == filled.sum() == 325
    assert seen.facts["mapNote"].startswith("Showing 325 of 325 posts. Layout: UMAP")
    labels = np.load(reported.run / "clusters.npy")
    assert seen.facts["figures"]["noise"] == f"{np.mean(labels[filled.to_numpy()] < 0):.0%}"
    assert seen.facts["figures"]["coverage"] == f"{np.mean(reported.posts.loc[filled, 'topic'] != ''):.0%}"
    assert seen.facts["figures"]["topics"] == str(len(reported.topics))
    assert seen.facts["figures"]["unmatched"] == str(len(reported.unmatched))
    clustering = json.loads((reported.run / "clustering.json").read_text())
    in_range = [c for c in clustering["candidates"] if c["in_range"]]
    assert len(seen.facts["candidates"]) == len(in_range) >= 1, "the chosen clustering and those in the range"
    assert len(seen.facts["candidates"]) + len(seen.facts["folded"]) == len(clustering["candidates"])
    assert all(row[-2] == "outside range" for row in seen.facts["folded"])
    chosen = clustering["chosen"]
    assert [row[:3] for row in seen.facts["chosen"]] == [
        [f"{chosen['eps']:g}", str(chosen["min_samples"]), str(chosen["n_clusters"])]
    ]


def test_screenshot_shows_both_charts(seen: Seen, reported: Reported) -> None:
    image, facts = seen.screenshot, seen.facts
    assert image.shape[:2] == (facts["height"], VIEWPORT[0])
    bars, dots = crop(image, facts["barsBox"]), crop(image, facts["mapBox"])
    assert coloured_share(bars) > 0.1 and distinct_colours(bars) >= 20
    # every post with a topic is a coloured dot (r = 3.5, about 38 pixels; overlaps hide some): at least 5
    # saturated pixels a post, however many the feed shows
    shown = int((reported.posts["topic"] != "").sum())
    assert shown > 0 and coloured_share(dots) * dots.shape[0] * dots.shape[1] >= 5 * shown
    assert distinct_colours(dots) >= 20
    assert coloured_share(image[: int(facts["barsBox"]["y"]) - 40]) < 0.01, "the header above the charts is text"


def test_clicking_a_bar_picks_out_its_posts_on_the_map(seen: Seen, reported: Reported) -> None:
    assert seen.after_click == {"focused": True, "on": int(reported.topics["size"][0]), "onTopics": ["0"]}


# The page at a desktop's and a phone's width.

LAYOUT_FACTS = """(() => {
  const width = document.documentElement.clientWidth;
  const name = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.getAttribute("class") ? "." + el.getAttribute("class").split(" ").join(".") : "");
  const shown = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const text = el => el.textContent.trim();
  const box = el => { const r = el.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; };
  return {
    width, scrollWidth: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
    // an element inside an SVG is clipped by it: the SVG itself is checked
    overflowing: [...document.querySelectorAll("body *")].filter(el => !el.parentElement.closest("svg"))
      .filter(el => { const r = el.getBoundingClientRect();
        return r.width > 0 && (r.left < -0.5 || r.right > width + 0.5); }).map(name).slice(0, 20),
    barCharts: [...document.querySelectorAll("svg.bars, svg.bars-phone")].filter(shown).map(name),
    barLabelPx: Math.min(...[...document.querySelectorAll("svg.bars g.bar text, svg.bars-phone g.bar text")]
      .filter(shown).map(t => t.getBoundingClientRect().height)),
    keywords: [...document.querySelectorAll("#topics td.kw")].map(text),
    unmatched: [...document.querySelectorAll("#unmatched tbody tr")].map(tr => ({
      name: text(tr.querySelector("td.name b")), posts: text(tr.querySelector("td.n")),
      examples: tr.querySelectorAll("ol.examples li").length})),
    lines: [...document.querySelectorAll("#lines .line")].map(l => l.getAttribute("data-topic")),
    growing: [...document.querySelectorAll("#growing li b")].map(text),
    shrinking: [...document.querySelectorAll("#shrinking li b")].map(text),
    volumeBars: document.querySelectorAll("svg.volume rect").length,
    // the volume chart and each topic's strip: the same x range, and period i's bar at the same x in all
    volume: box(document.querySelector("svg.volume")),
    strips: [...document.querySelectorAll("#lines .line svg")].map(box),
    volumeBarX: [...document.querySelectorAll("svg.volume rect")].map(r => box(r).x),
    stripBarX: [...document.querySelectorAll("#lines .line svg")].map(svg => [...svg.querySelectorAll("rect")]
      .map(r => box(r).x)),
    candidatesShown: [...document.querySelectorAll("#candidates tbody tr")].filter(tr => tr.checkVisibility()).length,
    foldedShown: [...document.querySelectorAll("#other-candidates tbody tr")].filter(tr => tr.checkVisibility()).length,
    folded: document.querySelectorAll("#other-candidates tbody tr").length,
    foldedHeight: box(document.getElementById("other-candidates")).height,
    candidatesHeight: box(document.getElementById("candidates")).height,
    // names as drawn: each bar's label (the lines of a wrapped name joined), its box against its chart's
    barNames: [...document.querySelectorAll("svg.bars g.bar, svg.bars-phone g.bar")].filter(shown).map(g => {
      const label = g.querySelector("text"), chart = box(g.closest("svg"));
      const spans = [...label.querySelectorAll("tspan")];
      return {topic: g.getAttribute("data-topic"),
        drawn: spans.length ? spans.map(text).join(" ") : text(label),
        inside: [label, ...spans].every(el => { const b = box(el);
          return b.x >= chart.x - 0.5 && b.x + b.width <= chart.x + chart.width + 0.5; })};
    }),
    mapLabelsInside: [...document.querySelectorAll("svg.map text.label")].every(el => {
      const b = box(el), chart = box(el.closest("svg"));
      return b.x >= chart.x - 0.5 && b.x + b.width <= chart.x + chart.width + 0.5; }),
    trendTest: text(document.getElementById("trend-test")),
  };
})()"""
SCREENSHOT_ROWS = 16000  # Chromium draws at most 16,384 rows in one capture


@dataclass
class Layout:
    width: int
    facts: dict[str, Any]
    screenshot: np.ndarray  # RGB, 0-255: the page from the top, as wide as it is laid out
    problems: list[str]


@pytest.fixture(scope="module", params=[1280, 390], ids=["desktop-1280", "phone-390"])
def layout(request: pytest.FixtureRequest, reported: Reported, tmp_path_factory: pytest.TempPathFactory) -> Layout:
    width = request.param
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as tools:
        for domain in ("Runtime", "Log", "Page"):
            tools.send(f"{domain}.enable")
        tools.send(
            "Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=width < 640
        )
        tools.send("Page.navigate", url=reported.html.as_uri())
        tools.wait_for("Page.loadEventFired")
        tools.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        facts = tools.evaluate(LAYOUT_FACTS)
        # as wide as the page is laid out, so that anything past the viewport's right edge would be in the picture
        clip = {"x": 0, "y": 0, "width": facts["scrollWidth"], "height": min(facts["height"], SCREENSHOT_ROWS)}
        shot = tools.send("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip={**clip, "scale": 1})
        png = base64.b64decode(shot["data"])
        (reported.folder / f"screenshot-{width}.png").write_bytes(png)
        image = matplotlib.image.imread(io.BytesIO(png), format="png")
        return Layout(width, facts, np.round(image[..., :3] * 255).astype(int), tools.problems())


def test_no_element_is_wider_than_the_viewport(layout: Layout) -> None:
    facts = layout.facts
    assert layout.problems == []
    assert facts["overflowing"] == [], f"at {layout.width} px"
    assert facts["scrollWidth"] == facts["width"] <= layout.width, "no horizontal scrolling"


def test_screenshot_has_nothing_past_the_right_edge(layout: Layout) -> None:
    image, facts = layout.screenshot, layout.facts
    assert image.shape[1] == facts["width"], "the page is laid out no wider than the viewport"
    edge = image[:, -6:]  # the page's margin: anything drawn there would run into or past the edge
    assert (edge >= 250).all(), f"something drawn in the last 6 px at {layout.width} px"
    assert coloured_share(image) > 0.003 and distinct_colours(image) >= 20, "the charts are drawn"


def test_the_bar_chart_stays_legible_at_both_widths(layout: Layout) -> None:
    expected = "svg.bars" if layout.width >= 640 else "svg.bars-phone"
    assert layout.facts["barCharts"] == [expected]
    assert layout.facts["barLabelPx"] >= 11, "bar labels are drawn at a readable size"


def test_keywords_unmatched_clusters_and_topics_over_time_are_shown(layout: Layout, reported: Reported) -> None:
    facts = layout.facts
    assert facts["keywords"] == reported.listed["keywords"].tolist() and any(facts["keywords"])
    unmatched = reported.unmatched
    assert len(unmatched) >= 1, "0.5 leaves some example clusters unmatched"
    assert [u["name"] for u in facts["unmatched"]] == unmatched["topic"].tolist()
    assert [u["posts"] for u in facts["unmatched"]] == unmatched["size"].astype(str).tolist()
    assert all(u["examples"] >= 1 for u in facts["unmatched"])
    counts = read_over_time(reported.run / OVER_TIME_FILE)
    ranked = trends(counts)
    assert facts["volumeBars"] == counts["period"].nunique() >= 10
    assert facts["lines"] == [t for t in reported.topics["topic"] if t in set(counts["topic"])][:10]
    assert facts["growing"] == ranked[ranked["trend"] == "grows"]["topic"].head(5).tolist()
    assert facts["shrinking"] == ranked[ranked["trend"] == "shrinks"]["topic"].iloc[::-1].head(5).tolist()
    test = " ".join(facts["trendTest"].split())
    assert "Fisher's exact test" in test and f"Holm-adjusted across the {len(ranked)} topics" in test


def test_the_time_strips_line_up_with_the_volume_chart(layout: Layout) -> None:
    facts = layout.facts
    volume, strips = facts["volume"], facts["strips"]
    assert len(strips) >= 5 and volume["width"] > 0.5 * layout.width
    for strip in strips:  # before: x 384-1078 px for the strips against 141-1099 px for the volume at 1280 px
        assert abs(strip["x"] - volume["x"]) < 1 and abs(strip["width"] - volume["width"]) < 1, (strip, volume)
    for xs in facts["stripBarX"]:
        assert np.allclose(xs, facts["volumeBarX"], atol=1), "period i's bar at the same x in every chart"


def test_the_clusterings_outside_the_range_are_folded(layout: Layout) -> None:
    facts = layout.facts
    assert facts["candidatesShown"] >= 1 and facts["folded"] >= 1 and facts["foldedShown"] == 0
    assert facts["foldedHeight"] < 60, "closed: one line, the toggle"
    assert facts["candidatesHeight"] < 0.2 * facts["height"], "a short table, not a third of the page"


def test_topic_names_are_whole_at_both_widths(layout: Layout, reported: Reported) -> None:
    names = layout.facts["barNames"]
    assert [n["topic"] for n in names] == reported.listed["topic"].tolist()
    if layout.width < 640:  # on the phone: every name as it is, wrapped if it must be, never cut
        assert all(n["drawn"] == n["topic"] for n in names), [n for n in names if n["drawn"] != n["topic"]]
    assert [n["topic"] for n in names if not n["inside"]] == [] and layout.facts["mapLabelsInside"]


def test_unmatched_posts_keep_their_closest_topic_in_a_column(reported: Reported) -> None:
    posts = reported.posts
    for row in reported.unmatched.itertuples():
        mine = posts[posts["cluster"] == row.clusters]
        assert len(mine) == int(row.size) and (mine["topic"] == "").all()
        assert (mine["topic_runner_up"] == row.runner_up).all()
    assert (posts.loc[posts["topic"] != "", "topic_runner_up"] == "").all()


# The files.


def test_pngs_are_nonblank_charts_of_the_expected_size(reported: Reported) -> None:
    for name, (width, height) in (("topics.png", bar_chart_size(len(reported.listed))), ("map.png", map_size())):
        image = np.round(matplotlib.image.imread(reported.png / name)[..., :3] * 255).astype(int)
        assert image.shape[:2] == (height, width), name
        # posts with no topic shown (unsure, unmatched) are grey on the map
        assert coloured_share(image) > (0.1 if name == "topics.png" else 0.0005), name
        assert distinct_colours(image) >= 20, name


def test_the_reliability_diagram_draws_the_bundles_calibrator_and_the_runs_confidences(reported: Reported) -> None:
    page = reported.html.read_text(encoding="utf-8")
    sets = json.loads((reported.run / "bundle" / "manifest.json").read_text())["calibration"]["reliability"]["sets"]
    chart = page[page.index('<svg class="reliability"') :]
    chart = chart[: chart.index("</svg>")]
    assert chart.count('<polyline class="set"') == len(sets) >= 1
    assert chart.count('<rect class="bin"') == sum(len(s["calibrated"]) for s in sets.values())
    drawn = [int(n.replace(",", "")) for n in re.findall(r"this run: ([\d,]+) posts at confidence", chart)]
    assert len(drawn) == 10 and sum(drawn) == (pd.to_numeric(reported.posts["topic_confidence"]) >= 0).sum()
    assert "the probability that its topic is right" in page
    image = np.round(matplotlib.image.imread(reported.png / "reliability.png")[..., :3] * 255).astype(int)
    assert image.shape[:2] == RELIABILITY_SIZE[::-1] and distinct_colours(image) >= 20


def test_page_is_self_contained_and_escaped(reported: Reported) -> None:
    page = reported.html.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//|url\(|@import""", page)
    assert page.count("<script") == 1 and "<script>" in page
    markup = page.split("<script>")[0]  # the script is fixed text, not data
    assert not re.search(r"&(?!amp;|lt;|gt;|quot;|#x27;)", markup), "every & in the data is escaped"
    assert "Music &amp; Concerts" in page and "Real moments &gt; posed smiles." in page


def test_same_run_gives_the_same_page_and_pngs(reported: Reported, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(reported.folder)
    code, _, err = invoke("report", "--run", "topicli-out/posts", "-o", "again.html", "--png", "again")
    assert code == 0, err
    assert (reported.folder / "again.html").read_bytes() == reported.html.read_bytes()
    for name in ("topics.png", "map.png"):
        assert (reported.folder / "again" / name).read_bytes() == (reported.png / name).read_bytes()


def test_large_runs_are_sampled_and_say_so(reported: Reported, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(reported.folder)
    code, out, err = invoke("report", "--max-points", "40", "-o", "sampled.html")
    assert code == 0, err
    assert "40 of 325 posts mapped" in out
    page = (reported.folder / "sampled.html").read_text(encoding="utf-8")
    assert page.count("<circle") == 40
    assert "Showing 40 of 325 posts, a random sample (at most 40 are drawn" in page
    assert "Layout: PCA" in page, "too few points for UMAP's neighbourhood graph"


def test_hostile_text_is_shown_as_text() -> None:
    hostile = "</script><script>alert('x')</script> & \"quoted\" <img src=x onerror=alert(1)> 🎉"
    candidate = Candidate("dbscan", 0.3, 2, 0, 1, 0.5, True, {"score": 0.4, "agreement": 0.8, "topics_used": 1})
    report = Report(
        run_folder=Path("run"),
        posts_path=Path("posts.csv"),
        input=f"{hostile}.csv",
        encoder="enc",
        posts=2,
        empty=0,
        without_topic=0,
        noise=0,
        unsure=0,
        min_posts=1,
        topics=(TopicView(hostile, 2, 0, 0.5, hostile, "0", "#4e79a7", (hostile, "plain")),),
        map=PostMap(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([0, 0]), (hostile, hostile), 2, 10, "PCA", "enc"),
        candidates=(candidate,),
        chosen=candidate,
        reason=hostile,
    )

    class Reader(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    reader = Reader()
    reader.feed(render_html(report))
    assert reader.tags.count("script") == 1 and "img" not in reader.tags
    assert sum(hostile in chunk for chunk in reader.text) >= 5


# Errors: one line, exit code 2.


def test_no_run_yet(isolated: Path) -> None:
    code, _, err = invoke("report")
    assert code == 2 and "no clustering under topicli-out" in err and len(err.strip().splitlines()) == 1


def test_posts_written_elsewhere_need_posts(isolated: Path, reported: Reported) -> None:
    # a run folder without the record of its outputs (written before runs recorded them), posts moved by hand
    shutil.copytree(reported.run, "run", ignore=shutil.ignore_patterns("report.html", "bundle", "outputs.json"))
    Path("elsewhere").mkdir()
    for name in ("posts.csv", "posts.topics.csv"):
        Path("run", name).rename(Path("elsewhere", name))
    code, _, err = invoke("report", "--run", "run")
    assert code == 2 and "pass --posts PATH" in err
    code, _, err = invoke("report", "--run", "run", "--posts", EXAMPLES)
    assert code == 2 and "no topic table" in err
    code, _, err = invoke("report", "--run", "run", "--max-points", "0", "--posts", "elsewhere/posts.csv")
    assert code == 2 and "--max-points is 0" in err
    code, _, err = invoke("report", "--run", "run", "--posts", "elsewhere/posts.csv")
    assert code == 0, err
    assert Path("run/report.html").is_file()
