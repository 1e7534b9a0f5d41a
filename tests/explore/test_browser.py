"""The whole loop in a real Chromium (Debian's chromium + chromedriver through Selenium; nothing downloaded):
search by class, listen, label 20+ windows with the keyboard, search by example and by an uploaded clip,
train, re-rank. Precision@10 for the target class must rise, and the labels file hold exactly what was pressed.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from tests.explore.conftest import HOSTILE, start_explorer, stop_explorer
from tests.support.helpers import png_stats
from yamnet_beam.table.labels import read_labels

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium and chromium-driver are not installed (.ci/run installs them)",
)
CLASS = "beep"


@pytest.fixture
def server(fresh_out):
    """``yamnet-beam explore`` as a process; its URL from its first line; stopped by its PID."""
    proc = start_explorer(str(fresh_out))
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield {"url": line.split(": ", 1)[1].strip(), "out": fresh_out}
    finally:
        stop_explorer(proc)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or browser
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000", "--mute-audio"):
        opts.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        yield driver
    finally:
        pid = service.process.pid if service.process else None
        driver.quit()
        if pid is not None and service.process.poll() is None:
            os.kill(pid, signal.SIGKILL)


def _wait(driver, js: str, timeout: float = 60.0):
    """Polls a JavaScript expression until it is truthy (no fixed sleeps)."""
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({js});")
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {js}: status {driver.find_element('id', 'status').text!r}")
        time.sleep(0.1)


def _renders(driver) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.renders || 0);"))


def _items(driver) -> list[dict]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#results li')].map(li => ({path: li.dataset.path,"
        " start: Number(li.dataset.start), end: Number(li.dataset.end), text: li.querySelector('.path').textContent}));"
    )


def _submit(driver, field: str, text: str, button: str) -> None:
    before = _renders(driver)
    box = driver.find_element("id", field)
    box.clear()
    box.send_keys(text)
    driver.find_element("id", button).click()
    _wait(driver, f"Number(document.body.dataset.renders || 0) > {before}")


def _precision_at_10(items, truth) -> float:
    return sum(truth[x["path"]] == "target" for x in items[:10]) / 10


def _label_with_keys(driver, truth, n: int) -> list[tuple]:
    """Presses p or n for the first ``n`` results (the page moves to the next one itself)."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver.find_element("tag name", "h1").click()  # focus leaves the text boxes
    pressed = []
    items = _items(driver)
    for i in range(n):
        current = driver.execute_script("return document.querySelector('#results li.current').dataset.index;")
        assert int(current) == i
        item = items[i]
        key, label = ("p", "positive") if truth[item["path"]] == "target" else ("n", "negative")
        before = int(driver.execute_script("return Number(document.body.dataset.labelled || 0);"))
        ActionChains(driver).send_keys(key).perform()
        _wait(driver, f"Number(document.body.dataset.labelled || 0) > {before}")
        pressed.append((item["path"], item["start"], item["end"], CLASS, label))
    return pressed


def test_search_listen_label_train_rerank_in_chromium(server, browser, synth, tmp_path):
    truth = synth["truth"]
    d = browser
    d.get(server["url"])
    _wait(d, "document.body.dataset.ready === '1'")
    assert "token=" not in d.execute_script("return document.referrer")

    # 1. search by class
    _submit(d, "class-q", "Beep, bleep", "class-search")
    first = _items(d)
    assert len(first) == 20 and "search: scores" in d.find_element("id", "status").text
    before = _precision_at_10(first, truth)
    assert before < 1.0, "the class search alone should not already be perfect"

    # 2. the first window's audio loads, with the window plus 1 s of context either side (within the file)
    _wait(d, "document.querySelector('#results li audio').readyState >= 1")
    duration = d.execute_script("return document.querySelector('#results li audio').duration;")
    expected = min(first[0]["end"] + 1.0, 6.0) - max(first[0]["start"] - 1.0, 0.0)
    assert duration == pytest.approx(expected, abs=0.01)
    _wait(
        d, "[...document.querySelectorAll('#results li img')].slice(0, 4).every(i => i.complete && i.naturalWidth > 0)"
    )

    # 3. label the page with the keyboard
    d.find_element("id", "label-class").send_keys(CLASS)
    pressed = _label_with_keys(d, truth, 20)

    # 4. search by example (a steady tone's window, "more like this") and label a few more
    tone = next(x for x in first if truth[x["path"]] == "tone")
    frame = d.execute_script(
        "const li = [...document.querySelectorAll('#results li')].find(l => l.dataset.path === arguments[0]);"
        "return li.querySelector('.meta').textContent.match(/frame (\\d+)/)[1];",
        tone["path"],
    )
    _submit(d, "example-q", f"{tone['path']}:{frame}", "example-search")
    assert "search: exact" in d.find_element("id", "status").text
    assert _items(d)[0]["path"] == tone["path"]
    pressed += _label_with_keys(d, truth, 6)

    # 5. search by an uploaded clip
    before_upload = _renders(d)
    target_file = next(p for p, k in truth.items() if k == "target")
    d.find_element("id", "upload").send_keys(target_file)
    _wait(d, f"Number(document.body.dataset.renders || 0) > {before_upload}")
    assert "uploaded" in d.find_element("id", "status").text
    assert truth[_items(d)[0]["path"]] == "target"

    # 6. train and re-rank
    before_train = _renders(d)
    d.find_element("id", "train").click()
    done = f"document.body.dataset.trained && Number(document.body.dataset.renders) > {before_train}"
    _wait(d, f"({done}) || document.querySelector('#train-status.error')", 300)
    assert d.execute_script(f"return Boolean({done})"), d.find_element("id", "train-status").text
    reranked = _items(d)
    after = _precision_at_10(reranked, truth)
    assert after > before, (before, after, d.find_element("id", "train-status").text)
    labelled = {(p, a) for p, a, *_ in pressed}
    assert not {(x["path"], x["start"]) for x in reranked} & labelled  # unlabelled windows only
    assert "cross-validated" in d.find_element("id", "train-status").text

    # the labels file holds exactly what was pressed, in order
    stored = read_labels(str(server["out"] / "labels"))
    assert [(x.path, x.start_s, x.end_s, x.cls, x.label) for x in stored] == pressed

    # the page is not blank
    png = d.get_screenshot_as_png()
    (tmp_path / "explore.png").write_bytes(png)
    stats = png_stats(png)
    assert stats["std"] > 30 and stats["colours"] > 500
    non_white = (stats["rgb"] < 240).any(axis=1).mean()
    assert non_white > 0.2


def test_a_hostile_file_name_is_shown_as_text(server, browser, synth):
    d = browser
    d.get(server["url"])
    _wait(d, "document.body.dataset.ready === '1'")
    hostile = str(synth["audio"] / HOSTILE)
    _submit(d, "example-q", f"{hostile}:1", "example-search")
    item = _items(d)[0]
    assert item["path"] == hostile and item["text"] == hostile
    assert d.title == "yamnet-beam explore"  # the name's onerror never ran
    assert d.execute_script("return document.querySelectorAll('#results img[src=\"x\"]').length") == 0


def test_without_the_token_the_page_is_refused(server, browser):
    d = browser
    d.get(server["url"].split("?")[0])
    assert "missing or wrong token" in d.find_element("tag name", "body").text
