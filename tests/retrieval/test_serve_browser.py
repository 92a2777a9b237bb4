"""The page of ``dahash serve`` in a real headless Chromium (Playwright driving the Debian ``chromium``).

A tiny DAH run is trained and the 18 dslr images are indexed, as in tests/test_serve.py; uvicorn
serves ``create_app`` on a free loopback port in a thread.  The test opens ``/``, picks an indexed
image through ``#file`` and checks what the page's own script renders: the hits, their distances,
their thumbnails (decoded by the browser), the predicted class; then a file that is not an image
(the error box), then a good image again (results back, error gone).

Needs the Debian package ``chromium`` (``apt-get install chromium``) and the PyPI package
``playwright`` (``pip install playwright``; no ``playwright install``: the system browser is used).
Without either, the test is skipped and says which is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from tiny_runs import backbone_built_once, running_server, tiny_dslr_index  # noqa: F401 (the fixture must be in this module)
from dahash.retrieval.serve import create_app  # noqa: E402

N_BITS = 16
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.usefixtures("backbone_built_once")


def _chromium() -> str:
    """The system Chromium binary, or a skip naming what to install."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    return exe


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (checked before the run is trained, so a skip costs nothing)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright not installed: pip install playwright (the system chromium is used, "
                    "no 'playwright install' needed)")
    exe = _chromium()
    with sync_playwright() as p:
        try:
            # --no-sandbox: Chromium's sandbox refuses to run as root (CI containers).
            b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        except Exception as exc:  # noqa: BLE001 - playwright's Error: a browser that cannot start here
            pytest.skip(f"{exe} did not start under playwright: {str(exc).splitlines()[0]}")
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def setup(tiny_office31: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trained run and a flat index of the 18 dslr images."""
    return tiny_dslr_index(tiny_office31, tmp_path_factory.mktemp("serve-browser"), bits=N_BITS)



@pytest.fixture(scope="module")
def server(setup: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(base URL, app) of a uvicorn server on a free loopback port, run in a thread."""
    app = create_app(setup["index"])
    with running_server(app, "dahash-serve-browser") as base:
        yield base, app


def _distance(text: str) -> int:
    match = re.search(r"distance (\d+)\s*$", text)
    assert match, f"no distance in {text!r}"
    return int(match.group(1))


def _hits(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#results .hit",
        """els => els.map(li => ({
            distance: li.querySelector('.distance').textContent,
            label: li.querySelector('.label').textContent,
            predicted: li.querySelector('.predicted').textContent,
            path: li.querySelector('.path').textContent,
        }))""")


def _wait_for_results(page: Any) -> list[dict[str, str]]:
    """The rendered hits once the search finished and every thumbnail was decoded."""
    page.wait_for_selector("#results .hit", timeout=TIMEOUT_MS)
    page.wait_for_function("/ results$/.test(document.getElementById('status').textContent)",
                           timeout=TIMEOUT_MS)
    # Thumbnails are lazy images: the tall viewport keeps all of them on screen, so all must load.
    page.wait_for_function(
        """() => { const imgs = [...document.querySelectorAll('#results .hit img.thumb')];
                   return imgs.length > 0 && imgs.every(i => i.complete); }""", timeout=TIMEOUT_MS)
    widths = page.eval_on_selector_all("#results .hit img.thumb", "imgs => imgs.map(i => i.naturalWidth)")
    assert widths and all(w > 0 for w in widths), f"thumbnails not decoded: naturalWidth {widths}"
    return _hits(page)


def _check_layout(page: Any) -> None:
    """What a person sees: one unbroken drop zone, the stats line visible and not covered, the query image
    beside the hits (left of them, at the same height)."""
    box = page.evaluate("""() => { const d = document.getElementById('drop'), r = d.getBoundingClientRect();
        return {rects: d.getClientRects().length, width: r.width, height: r.height,
                style: getComputedStyle(d).borderStyle}; }""")
    assert box["rects"] == 1 and box["width"] > 150 and box["height"] > 40 and box["style"] == "dashed", box
    covered = page.evaluate("""() => { const s = document.getElementById('stats'), r = s.getBoundingClientRect();
        const top = document.elementFromPoint(r.left + 5, r.top + r.height / 2);
        return {height: r.height, visible: getComputedStyle(s).visibility, mine: s.contains(top)}; }""")
    assert covered["height"] > 0 and covered["visible"] == "visible" and covered["mine"], covered
    assert page.is_visible("#stats") and page.is_visible("#drop")
    side = page.evaluate("""() => { const q = document.getElementById('query').getBoundingClientRect(),
        h = document.querySelector('#results .hit').getBoundingClientRect();
        return {queryRight: q.right, hitLeft: h.left, queryTop: q.top, queryBottom: q.bottom, hitTop: h.top}; }""")
    assert side["queryRight"] <= side["hitLeft"], side  # beside, not above
    assert side["queryTop"] < side["hitTop"] + 200 and side["hitTop"] < side["queryBottom"], side


def test_the_page_searches_an_upload_and_shows_errors(browser: Any, server: tuple[str, Any],
                                                      setup: dict[str, Any], tmp_path: Path) -> None:
    base, app = server
    classes = list(app.state.dahash.encoder.classes)
    assert classes
    context = browser.new_context(viewport={"width": 1280, "height": 2400})
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    try:
        page.goto(base + "/", timeout=TIMEOUT_MS)
        # The page's stats line comes from /stats.
        page.wait_for_function("/18 images indexed/.test(document.getElementById('stats').textContent)",
                               timeout=TIMEOUT_MS)
        page.fill("#k", "18")  # every indexed image, so the query is among the distance-0 hits

        query = setup["dslr"][0]
        page.set_input_files("#file", query)
        hits = _wait_for_results(page)
        assert len(hits) >= 1
        assert len(hits) == 18
        assert _distance(hits[0]["distance"]) == 0, hits[0]
        distances = [_distance(h["distance"]) for h in hits]
        assert distances == sorted(distances)
        zero_paths = {h["path"] for h in hits if _distance(h["distance"]) == 0}
        assert str(Path(query).resolve()) in zero_paths
        label = hits[0]["label"].removeprefix("label: ")
        assert label in classes, hits[0]
        predicted = page.inner_text("#predicted")
        assert re.fullmatch(r"Predicted class: (\S+)", predicted.strip()), predicted
        assert predicted.strip().removeprefix("Predicted class: ") in classes
        assert page.inner_text("#error") == ""
        # The page shows the query itself too.
        assert page.eval_on_selector("#query", "img => !img.hidden && img.src.startsWith('blob:')")
        _check_layout(page)
        page.screenshot(path=str(tmp_path / "search_page.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 900})
        if os.environ.get("DAHASH_PAGE_SCREENSHOT"):  # docs/img/search_page.png is made this way
            shutil.copyfile(tmp_path / "search_page.png", os.environ["DAHASH_PAGE_SCREENSHOT"])

        # Not an image: the server's 415 message in the error box, results and prediction cleared.
        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                              "buffer": b"this is not an image\n" * 10}])
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=TIMEOUT_MS)
        message = page.inner_text("#error")
        assert "not an image" in message, message
        assert page.eval_on_selector_all("#results .hit", "els => els.length") == 0
        assert page.inner_text("#predicted") == ""
        assert page.is_visible("#error")

        # A good upload afterwards: results again, the error gone.
        again = setup["dslr"][7]
        page.set_input_files("#file", again)
        hits = _wait_for_results(page)
        assert len(hits) == 18 and _distance(hits[0]["distance"]) == 0
        assert str(Path(again).resolve()) in {h["path"] for h in hits if _distance(h["distance"]) == 0}
        assert page.inner_text("#error") == ""
        assert page.inner_text("#predicted").strip().removeprefix("Predicted class: ") in classes
        assert page_errors == [], page_errors
    finally:
        context.close()
