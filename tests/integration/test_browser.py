"""A real browser (Debian's chromium driven by Playwright) on the landing page and the Locust
web UI that `make up` runs: start a swarm against the stack, see requests counted, stop it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support import require_binary

pytestmark = pytest.mark.integration

# As root, in a container, with no network but loopback: no sandbox, no background services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    chromium = require_binary(shutil.which("chromium") or shutil.which("chromium-browser"), "chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def test_landing_page_renders_and_its_websocket_works(stack, page: Page):
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(stack.base_url + "/")
    expect(page).to_have_title(re.compile("twinstack"))
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    page.get_by_role("button", name="Send “hello”").click()
    expect(page.locator("#ws-out")).to_contain_text("echoed “hello”")
    assert errors == []  # the CSP allows everything the page itself uses


def test_every_landing_page_link_resolves_in_the_browser(stack, page: Page):
    page.goto(stack.base_url + "/")
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    assert len(hrefs) > 20
    for href in sorted(set(hrefs)):
        assert page.request.get(href).status == 200, href


def test_start_and_stop_a_swarm_from_the_locust_ui(stack, page: Page):
    # Reach the UI the way a user does: the landing page's link.
    page.goto(stack.base_url + "/")
    page.get_by_role("link", name="Locust web UI").click()
    expect(page.locator("input[name=host]")).to_have_value(stack.base_url)
    page.locator("input[name=userCount]").fill("4")
    page.locator("input[name=spawnRate]").fill("4")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("RUNNING")).to_be_visible()
    # Requests counted: rows for both backends appear in the statistics table.
    expect(page.get_by_role("cell", name="/async/io", exact=True)).to_be_visible(timeout=20_000)
    expect(page.get_by_role("cell", name="/sync/io", exact=True)).to_be_visible(timeout=20_000)
    locust_url = page.url.split("#")[0].rstrip("/")
    counted = httpx.get(f"{locust_url}/stats/requests").json()
    assert counted["state"] == "running"
    assert next(s for s in counted["stats"] if s["name"] == "Aggregated")["num_requests"] > 0
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("STOPPED")).to_be_visible()
    assert httpx.get(f"{locust_url}/stats/requests").json()["state"] == "stopped"
