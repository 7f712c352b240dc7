"""The operator's page in a real Chromium, against a real herd and server on loopback.

One browser for the whole run; each test opens its own browser context (viewport, colour
scheme, sessionStorage) on a herd of its own, and asserts what the herd did through
``stats()``. Without Playwright or Chromium these tests skip, saying why; with
HERDEXEC_REQUIRE_BROWSER=1 (``tox -e browser``, and so CI) they fail instead.

Chromium logs every failed request on the console ("Failed to load resource: ... 401"):
a test that provokes refusals checks that those, and only those, were logged.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry

from herdexec import ControlServer, HerdExecutor, Retry

from .browser import launch, missing
from .helpers import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Locator, Page

TOKEN = "browser-token"
REQUIRED = os.environ.get("HERDEXEC_REQUIRE_BROWSER") == "1"
PHONE = (390, 844)
DESKTOP = (1280, 800)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser for this module's tests. Not for the session: Playwright's sync API
    runs an event loop on the main thread until it stops, and a later test's
    ``asyncio.run()`` would find that loop running."""
    why = missing()
    if why is not None:
        if REQUIRED:
            pytest.fail(f"{why}; HERDEXEC_REQUIRE_BROWSER=1 says the browser tests must run")
        pytest.skip(why)
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415

    # A poll a second, on a machine other tests may be loading: room for a few.
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


def expect(target: Page | Locator) -> Any:
    from playwright.sync_api import expect as playwright_expect  # noqa: PLC0415

    return playwright_expect(target)


@dataclass
class Tab:
    """A page, and what it logged and requested."""

    page: Page
    console: list[ConsoleMessage] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)  # uncaught, in the page's script
    requests: list[str] = field(default_factory=list)

    def console_errors(self) -> list[str]:
        return [m.text for m in self.console if m.type == "error"]

    def field(self, name: str) -> Locator:
        return self.page.locator(f'[data-field="{name}"]')

    def refusals_only(self, status: int) -> None:
        """Nothing went wrong in the page but the server's ``status`` answers."""
        assert self.errors == []
        refused = f"the server responded with a status of {status} "
        assert [e for e in self.console_errors() if refused not in e] == []


@pytest.fixture
def open_tab(browser: Browser) -> Iterator[Callable[..., Tab]]:
    contexts = []

    def open_tab(url: str, *, size: tuple[int, int] = DESKTOP, color_scheme: str = "light") -> Tab:
        width, height = size
        context = browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme=color_scheme,  # type: ignore[arg-type]
        )
        contexts.append(context)
        tab = Tab(context.new_page())
        # Handlers must be Python functions: Playwright tags them with an attribute,
        # which a builtin like list.append refuses.
        tab.page.on("console", lambda message: tab.console.append(message))  # noqa: PLW0108
        tab.page.on("pageerror", lambda error: tab.errors.append(error))  # noqa: PLW0108
        tab.page.on("request", lambda request: tab.requests.append(request.url))
        tab.page.goto(url)
        return tab

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def herd(make_herd: Callable[..., HerdExecutor]) -> HerdExecutor:
    return make_herd(
        2, name="browsed", registry=CollectorRegistry(), max_herd_size=8, max_retries=1
    )


@pytest.fixture
def server(herd: HerdExecutor) -> ControlServer:
    return herd.serve("127.0.0.1:0")  # closed by the herd's shutdown


def test_the_numbers_move_while_works_run(
    herd: HerdExecutor, server: ControlServer, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(server.url)
    expect(tab.page).to_have_title("browsed · herdexec")
    expect(tab.field("succeeded")).to_have_text("0")
    gate = threading.Event()
    held = [herd.submit(gate.wait, 30) for _ in range(2)]
    blocked = threading.Thread(target=lambda: held.append(herd.submit(int)))
    blocked.start()  # the herd is busy: this submit waits for a gopher
    expect(tab.field("busy")).to_have_text("2")
    expect(tab.field("idle")).to_have_text("0")
    expect(tab.field("waiting_submitters")).to_have_text("1")
    gate.set()
    blocked.join()
    tries = iter([Retry(), None])

    def flaky() -> None:
        if (exc := next(tries)) is not None:
            raise exc

    herd.submit(flaky).result(timeout=10)
    with pytest.raises(ValueError, match="invalid literal"):
        herd.submit(int, "x").result(timeout=10)
    for future in held:
        future.result(timeout=10)
    expect(tab.field("succeeded")).to_have_text("4")
    expect(tab.field("retried")).to_have_text("1")
    expect(tab.field("failed")).to_have_text("1")
    expect(tab.field("busy")).to_have_text("0")
    expect(tab.field("waiting_submitters")).to_have_text("0")
    # Four ended in the last ten seconds: a rate above zero, a line, a histogram.
    expect(tab.page.locator('[data-rate="succeeded"]')).to_have_text(re.compile(r"[1-9].*/s"))
    expect(tab.page.locator("#line-succeeded")).to_have_attribute("points", re.compile(r"\d"))
    expect(tab.page.locator("#durations-summary")).to_contain_text("6 attempts")
    assert sum(herd.stats().duration_counts) == 6
    assert tab.requests
    assert [url for url in tab.requests if not url.startswith(server.url + "/")] == []
    assert tab.console_errors() == []
    assert tab.errors == []


def test_resizing_from_the_page_changes_the_herd(
    herd: HerdExecutor, server: ControlServer, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(server.url)
    size = tab.page.get_by_label("Herd size")
    said = tab.page.locator("#control-msg")
    expect(size).to_have_value("2")
    size.fill("5")
    size.press("Enter")
    assert wait_until(lambda: herd.stats().herd_size == 5)
    expect(said).to_have_text("Herd size set to 5.")
    expect(tab.field("num")).to_have_text("5")
    size.fill("3")
    tab.page.get_by_role("button", name="Apply").click()
    assert wait_until(lambda: herd.stats().herd_size == 3)
    expect(said).to_have_text("Herd size set to 3.")
    # The server's refusals are shown next to the control, as it worded them.
    for asked, answer in (
        ("9", "Herd size cannot be above 8, the herd's max_herd_size"),
        ("-1", "Herd size cannot be negative"),
        ("3", "Herd size already 3."),
    ):
        size.fill(asked)
        size.press("Enter")
        expect(said).to_have_text(answer)
    assert herd.stats().herd_size == 3
    tab.refusals_only(400)


def test_pause_and_resume(
    herd: HerdExecutor, server: ControlServer, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(server.url)
    page = tab.page
    expect(tab.field("num")).to_have_text("2")
    page.get_by_role("button", name="Pause").click()
    assert wait_until(lambda: herd.stats().herd_size == 0)
    expect(page.locator("#paused")).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_be_hidden()
    waiting = threading.Thread(target=lambda: herd.submit(int).result(timeout=10))
    waiting.start()  # paused: it waits
    expect(tab.field("waiting_submitters")).to_have_text("1")
    page.reload()  # the size to go back to is kept for the tab
    page.get_by_role("button", name="Resume").click()
    assert wait_until(lambda: herd.stats().herd_size == 2)
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    expect(page.locator("#paused")).to_be_hidden()
    expect(tab.field("succeeded")).to_have_text("1")
    assert tab.console_errors() == []
    assert tab.errors == []


def test_a_wrong_token_is_refused_and_said_so(
    herd: HerdExecutor, open_tab: Callable[..., Tab]
) -> None:
    server = herd.serve("127.0.0.1:0", token=TOKEN)
    tab = open_tab(server.url)
    page = tab.page
    expect(tab.field("num")).to_have_text("2")  # reads are open: no token asked
    form = page.locator("#token-form")
    expect(form).to_be_hidden()
    size = page.get_by_label("Herd size")
    size.fill("4")
    size.press("Enter")
    expect(form).to_be_visible()
    expect(page.locator("#token-why")).to_have_text(
        "The server needs its token to resize this herd."
    )
    expect(page.locator("#control-msg")).to_contain_text("needs a token")
    token = page.get_by_label("Token")
    token.fill("not-the-token")
    token.press("Enter")  # the resize is retried with it
    expect(page.locator("#token-why")).to_contain_text("refused the token: it is wrong")
    assert herd.stats().herd_size == 2
    assert page.evaluate("sessionStorage.getItem('herdexec.token')") is None
    token.fill(TOKEN)
    token.press("Enter")
    assert wait_until(lambda: herd.stats().herd_size == 4)
    expect(form).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('herdexec.token')") == TOKEN
    assert TOKEN not in page.url
    page.reload()  # kept for the tab: asked once
    size.fill("5")
    size.press("Enter")
    assert wait_until(lambda: herd.stats().herd_size == 5)
    expect(form).to_be_hidden()
    tab.refusals_only(401)


def test_protected_reads_ask_for_the_token_first(
    herd: HerdExecutor, open_tab: Callable[..., Tab]
) -> None:
    server = herd.serve("127.0.0.1:0", token=TOKEN, protect_reads=True)
    tab = open_tab(server.url)
    page = tab.page
    expect(page.locator("#connection")).to_have_text("Needs a token")
    expect(page.locator("#token-why")).to_have_text(
        "The server needs its token to show this herd's figures."
    )
    expect(tab.field("num")).to_have_text("\N{EN DASH}")  # no figure yet
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Use token").click()
    expect(tab.field("num")).to_have_text("2")
    expect(page.locator("#connection")).to_have_text("Live")
    assert len(tab.console_errors()) == 1  # one 401, not one a second
    tab.refusals_only(401)


def test_the_server_going_away_and_coming_back(
    herd: HerdExecutor, server: ControlServer, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(server.url)
    page = tab.page
    status = page.locator("#connection")
    expect(status).to_have_text("Live")
    port = server.port
    server.close()
    expect(status).to_contain_text("Disconnected")
    expect(page.get_by_role("button", name="Apply")).to_be_disabled()
    expect(status).to_contain_text("Retrying in 2 s")  # after 1 s: it backs off
    herd.serve(f"127.0.0.1:{port}")  # the same address, as a restarted process would
    expect(status).to_have_text("Live")
    size = page.get_by_label("Herd size")
    size.fill("3")
    size.press("Enter")
    assert wait_until(lambda: herd.stats().herd_size == 3)
    assert tab.errors == []
    # One line per attempt that found nobody, and few attempts: no flood.
    failed = tab.console_errors()
    assert 1 <= len(failed) <= 4, failed
    assert all("net::ERR_" in text for text in failed), failed


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_page_fits_and_reads_well(
    server: ControlServer,
    open_tab: Callable[..., Tab],
    size: tuple[int, int],
    color_scheme: str,
) -> None:
    width = size[0]
    tab = open_tab(server.url, size=size, color_scheme=color_scheme)
    page = tab.page
    expect(tab.field("num")).to_have_text("2")
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll
    for control in (
        page.get_by_label("Herd size"),
        page.get_by_role("button", name="Apply"),
        page.get_by_role("button", name="Pause"),
    ):
        box = control.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= width
    colours = page.evaluate(
        """() => {
        const css = (selector, property) =>
            getComputedStyle(document.querySelector(selector))[property];
        return {
            page: css("body", "backgroundColor"),
            card: css(".card", "backgroundColor"),
            text: css("body", "color"),
            label: css(".figures dt", "color"),
            button: css("#apply", "color"),
            buttonFace: css("#apply", "backgroundColor"),
            link: css("a", "color"),
        };
    }"""
    )
    page_luminance = luminance(colours["page"])
    assert page_luminance < 0.05 if color_scheme == "dark" else page_luminance > 0.8
    # WCAG AA: 4.5 to 1 for text, against the card it sits on.
    assert contrast(colours["text"], colours["card"]) >= 4.5
    assert contrast(colours["label"], colours["card"]) >= 4.5
    assert contrast(colours["link"], colours["page"]) >= 4.5
    assert contrast(colours["button"], colours["buttonFace"]) >= 4.5
    assert tab.console_errors() == []
    assert tab.errors == []


def luminance(colour: str) -> float:
    """The relative luminance of a CSS ``rgb(r, g, b)``, as WCAG 2 defines it."""
    channels = [int(c) / 255 for c in re.findall(r"\d+", colour)[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)
