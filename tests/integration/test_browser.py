"""A real browser (Debian's chromium driven by Playwright) on the landing page and the Locust web
UI that `make up` runs: start a swarm against the stack, see requests counted, stop it. The async
half's own pages (its WebSocket on the landing page, the API docs served from the app's own
assets, no CDN) are in async_half/test_browser_async.py."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess

import httpx
import pytest
from playwright.sync_api import Page, expect

from native import settings
from tests.support import HALVES, PREFIXES

pytestmark = pytest.mark.integration


def open_landing_page(stack, page: Page) -> list[str]:
    """The page, loaded; returns the list its console errors and uncaught exceptions go to."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(stack.base_url + "/")
    expect(page).to_have_title(re.compile("twinstack"))
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    return errors


def test_landing_page_shows_the_columns_of_the_deployed_halves_only(stack, page: Page):
    """A project of one half serves its own page (Copier renders it from the page's .jinja twin):
    every cell of each half it has, none of the other's, and no error in the console."""
    errors = open_landing_page(stack, page)
    for half in settings.HALVES:
        cells = page.locator(f'[data-half="{half.prefix}"]')
        if half in HALVES:
            assert cells.count() > 1, half.prefix
            for i in range(cells.count()):
                expect(cells.nth(i)).to_be_visible()
        else:
            expect(cells).to_have_count(0)
    assert errors == []


def test_the_landing_page_over_https_and_http2(stack, browser):
    """Once over HTTPS: Chromium trusts exactly the stack's certificate (its key's SPKI pin, no
    blanket ignoring of errors), loads the page over HTTP/2 and runs its WebSocket over wss://."""
    from tests.conftest import CHROMIUM_ARGS

    public_key = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout", "-in", stack.certificate], capture_output=True, check=True
    ).stdout
    spki = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], input=public_key, capture_output=True, check=True
    ).stdout
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    errors: list[str] = []
    pinned = browser.browser_type.launch(
        executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
        args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"],
    )
    try:
        page = pinned.new_context().new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        response = page.goto(stack.https_url + "/")
        assert response.status == 200
        assert response.header_value("strict-transport-security") == "max-age=31536000"
        assert page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
        expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
        if "/async" in PREFIXES:
            page.get_by_role("button", name="Send “hello”").click()
            expect(page.locator("#ws-out")).to_contain_text("echoed “hello”")
    finally:
        pinned.close()
    assert errors == []


def test_every_landing_page_link_resolves_in_the_browser(stack, page: Page):
    page.goto(stack.base_url + "/")
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    # Each half's routes, seven at least (with its docs where it has them), and Locust's.
    assert len(hrefs) > 7 * len(HALVES)
    # A half the project does not have has no link on its page.
    missing = tuple(f"{stack.base_url}/{half.prefix}/" for half in settings.HALVES if half not in HALVES)
    assert not [href for href in hrefs if href.startswith(missing)]
    for href in sorted(set(hrefs)):
        assert page.request.get(href).status == 200, href


def test_start_and_stop_a_swarm_from_the_locust_ui(stack, page: Page):
    # Reach the UI the way a user does: the landing page's link.
    page.goto(stack.base_url + "/")
    page.get_by_role("link", name="Locust web UI").click()
    # Preset to the stack's public entry: HTTPS, which the suite's stack serves (Locust over TLS).
    expect(page.locator("input[name=host]")).to_have_value(stack.https_url.replace("localhost", "127.0.0.1"))
    page.locator("input[name=userCount]").fill("4")
    page.locator("input[name=spawnRate]").fill("4")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("RUNNING")).to_be_visible()
    # Requests counted: rows for each backend appear in the statistics table.
    for prefix in PREFIXES:
        expect(page.get_by_role("cell", name=f"{prefix}/io", exact=True)).to_be_visible(timeout=20_000)
    locust_url = page.url.split("#")[0].rstrip("/")
    counted = httpx.get(f"{locust_url}/stats/requests").json()
    assert counted["state"] == "running"
    assert next(s for s in counted["stats"] if s["name"] == "Aggregated")["num_requests"] > 0
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("STOPPED")).to_be_visible()
    assert httpx.get(f"{locust_url}/stats/requests").json()["state"] == "stopped"
