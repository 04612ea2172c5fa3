"""The report in a real browser: headless Chromium (Debian's package) driven by Playwright.

Checks what a person would notice: no script errors, every picture shows, the per-class table
sorts when a header is clicked, nothing is fetched from the network. Saves screenshots (to
tmp_path, and to $SPORTSDET_SCREENSHOT_DIR when set, to look at by eye).

Needs `apt-get install -y chromium` and `pip install playwright` (never `playwright install`:
no browser download). Without them the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
from test_report_fixtures import make_run

from sportsdet.report import write_comparison, write_report

CHROMIUM = os.environ.get("SPORTSDET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]


def _missing() -> list[str]:
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the Python package playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        missing.append(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    return missing


@pytest.fixture(scope="module")
def browser():
    missing = _missing()
    if missing:
        reason = "; ".join(missing) + " - see scripts/install_browser.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Opened:
    """A page with its console errors and any network request the report tried to make."""

    def __init__(self, browser, path: Path, width: int = 1300) -> None:
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def guard(route):
            url = route.request.url
            if url.startswith(("file:", "data:")):
                route.continue_()
            else:  # a self-contained report asks for nothing else
                self.requests.append(url)
                route.abort()

        self.page.route("**/*", guard)
        self.page.goto(path.resolve().as_uri(), wait_until="load")

    def broken_images(self) -> list[str]:
        return self.page.evaluate(
            "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.alt || i.src.slice(0, 40))"
        )

    def column(self, table: str, index: int) -> list[str]:
        return self.page.evaluate(
            f"Array.from(document.querySelectorAll('#{table} tbody tr'))"
            f".map(r => r.cells[{index}].getAttribute('data-v') ?? r.cells[{index}].textContent.trim())"
        )

    def shot(self, tmp_path: Path, name: str) -> Path:
        target = tmp_path / name
        self.page.screenshot(path=str(target), full_page=True)
        extra = os.environ.get("SPORTSDET_SCREENSHOT_DIR")
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(target, Path(extra) / name)
        return target


@pytest.fixture(scope="module", params=[8, 100], ids=["8-classes", "100-classes"])
def report(request, tmp_path_factory):
    n = request.param
    folder = tmp_path_factory.mktemp(f"browser{n}")
    fake = make_run(folder, n_classes=n, per_class=4 if n == 8 else 3, skill=3.0)
    return n, write_report(fake.run)


def test_renders_without_errors_and_every_image_loads(browser, report, tmp_path):
    n, path = report
    opened = Opened(browser, path)
    assert opened.errors == []
    assert opened.requests == []
    count = opened.page.evaluate("document.images.length")
    assert count > 4  # curves, reliability and gallery thumbnails
    # hovering a confusion square marks its row and column class names
    opened.page.locator("svg.confusion rect.cell").first.hover()
    assert opened.page.locator("svg.confusion text.hl").count() == 2
    assert opened.broken_images() == []
    assert opened.page.locator("#per-class-table tbody tr").count() == n
    shot = opened.shot(tmp_path, f"report-{n}-classes.png")
    with Image.open(shot) as image:
        assert image.width == 1300 and image.height > 2000
    opened.page.close()


def test_a_phone_reads_it_without_scrolling_sideways(browser, report):
    # At 375 px the per-class table's box grew to the table's width (a 522 px page), long paths did
    # not wrap, a nav jump hid its heading under the sticky nav, and figures shrunk to 3-pixel
    # labels could not be opened full size, nor the confusion matrix switched by keyboard.
    _, path = report
    opened = Opened(browser, path, width=375)
    page = opened.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    heights = page.locator("nav a").evaluate_all("links => links.map(a => a.getClientRects().length)")
    assert set(heights) == {1}  # no link broken over two lines ("Per" / "class")
    page.locator("nav a", has_text="Per class").click()
    page.wait_for_timeout(300)
    heading = page.locator("#per-class h2").bounding_box()
    nav = page.locator("nav").bounding_box()
    assert heading["y"] >= nav["height"] - 1  # below the sticky nav, not under it
    curves = page.locator(".zoomable", has=page.locator("img[alt='training curves']"))
    curves.focus()
    page.keyboard.press("Enter")
    assert "zoomed" in curves.get_attribute("class")
    assert curves.locator("img").bounding_box()["width"] > 375  # full size, scrolling in its box
    assert opened.errors == []
    page.close()


def test_each_figure_has_its_own_size_button_named_after_it(browser, report):
    # Every figure box was a role=button named "figure: Enter switches ...": a screen reader heard
    # the same button three times (axe: label-content-name-mismatch on the confusion matrix).
    _, path = report
    opened = Opened(browser, path)
    page = opened.page
    buttons = page.locator("button.zoom-toggle")
    names = buttons.evaluate_all("bs => bs.map(b => b.getAttribute('aria-label'))")
    assert len(names) == page.locator(".zoomable").count() >= 3
    assert len(set(names)) == len(names) and "Full size: confusion matrix" in names
    assert page.locator(".zoomable[role='button']").count() == 0
    figure = page.locator("#confusion-figure")
    button = page.get_by_role("button", name="Full size: confusion matrix")
    before = "zoomed" in figure.get_attribute("class")
    assert button.get_attribute("aria-pressed") == str(before).lower()
    button.focus()
    page.keyboard.press("Enter")
    assert ("zoomed" in figure.get_attribute("class")) != before
    assert button.get_attribute("aria-pressed") == str(not before).lower()
    assert opened.errors == []
    page.close()


def test_a_tap_on_a_confusion_square_reads_out_its_numbers(browser, report):
    # A square's numbers were in an SVG <title>, which only a mouse hover shows: a phone showed
    # none, and the tap switched the figure's size instead.
    _, path = report
    context = browser.new_context(viewport={"width": 375, "height": 800}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(path.resolve().as_uri(), wait_until="load")
    figure = page.locator("#confusion-figure")
    zoomed_before = "zoomed" in figure.get_attribute("class")
    cell = page.locator("svg.confusion rect.cell.wrong").first
    cell.scroll_into_view_if_needed()
    cell.tap()
    said = page.locator("#confusion-readout").text_content()
    title = cell.locator("title").text_content()
    assert said == title.replace("\n", " \u00b7 ")
    assert said.startswith("true: ") and " of " in said
    assert ("zoomed" in figure.get_attribute("class")) == zoomed_before
    assert page.locator("svg.confusion text.hl").count() == 2
    page.locator("svg.confusion text.row").first.tap()  # elsewhere on the figure: switches its size
    assert ("zoomed" in figure.get_attribute("class")) != zoomed_before
    context.close()


def test_clicking_a_header_sorts_the_table(browser, report):
    _, path = report
    opened = Opened(browser, path)
    f1 = opened.page.locator("#per-class-table thead th", has_text="F1")
    before = [float(x) for x in opened.column("per-class-table", 3)]
    f1.click()
    ascending = [float(x) for x in opened.column("per-class-table", 3)]
    assert ascending == sorted(before)
    assert f1.get_attribute("aria-sort") == "ascending"
    f1.click()
    descending = [float(x) for x in opened.column("per-class-table", 3)]
    assert descending == sorted(before, reverse=True)
    assert f1.get_attribute("aria-sort") == "descending"
    opened.page.locator("#per-class-table thead th", has_text="support").click()
    assert opened.column("per-class-table", 4) == sorted(opened.column("per-class-table", 4), key=int)
    assert f1.get_attribute("aria-sort") is None
    opened.page.locator("#per-class-table thead th").first.click()
    names = opened.column("per-class-table", 0)
    assert names == sorted(names, key=str.lower)
    # the filter box hides the classes that do not match
    first = names[0]
    opened.page.fill("input[data-filter=per-class-table]", first)
    visible = opened.page.evaluate(
        "Array.from(document.querySelectorAll('#per-class-table tbody tr'))"
        ".filter(r => r.style.display !== 'none').map(r => r.cells[0].textContent)"
    )
    assert first in visible and len(visible) < len(names)
    assert opened.errors == []
    opened.page.close()


def test_comparison_page_renders_and_sorts(browser, tmp_path):
    a = make_run(tmp_path / "a", n_classes=6, per_class=5, seed=1)
    b = make_run(tmp_path / "b", n_classes=6, per_class=5, seed=2, skill=3.0)
    path = write_comparison([a.run, b.run], tmp_path / "compare.html")
    opened = Opened(browser, path)
    assert opened.errors == [] and opened.requests == []
    assert opened.broken_images() == []
    opened.page.locator("#compare-classes thead th").nth(3).click()
    deltas = [float(x) for x in opened.column("compare-classes", 3)]
    assert deltas == sorted(deltas)
    opened.shot(tmp_path, "comparison.png")
    opened.page.close()
