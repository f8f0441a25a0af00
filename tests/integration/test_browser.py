"""A real browser (Debian's chromium driven by Playwright) on the landing page, the API docs
(served from the app's own assets, no CDN) and the Locust web UI that `make up` runs: start a
swarm against the stack, see requests counted, stop it."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.sync_api import Page, expect

from native.settings import deployed

pytestmark = pytest.mark.integration


def test_landing_page_renders_and_its_websocket_works(stack, page: Page):
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(stack.base_url + "/")
    expect(page).to_have_title(re.compile("twinstack"))
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    for half in ("async", "sync"):  # both halves deployed: both columns shown
        expect(page.locator(f'th[data-half="{half}"]')).to_be_visible()
    page.get_by_role("button", name="Send “hello”").click()
    expect(page.locator("#ws-out")).to_contain_text("echoed “hello”")
    assert errors == []  # the CSP allows everything the page itself uses


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
        if "async" in {h.prefix for h in deployed()}:
            page.get_by_role("button", name="Send “hello”").click()
            expect(page.locator("#ws-out")).to_contain_text("echoed “hello”")
    finally:
        pinned.close()
    assert errors == []


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
    # Preset to the stack's public entry: HTTPS, which the suite's stack serves (Locust over TLS).
    expect(page.locator("input[name=host]")).to_have_value(stack.https_url.replace("localhost", "127.0.0.1"))
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


# The one thing ReDoc fetches from elsewhere: the logo in its "API docs by Redocly" footer.
# The docs CSP blocks it, so it never leaves the machine; the footer's text link remains.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@dataclass
class Traffic:
    """What a page did: every request it made, those its CSP blocked, errors and violations."""

    page: Page
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.blocked.append(r.url) if r.failure == "csp" else None)
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        # Injected by the browser, not the page, so the page's own CSP does not stop it.
        self.page.add_init_script(
            "window.cspViolations = [];"
            "document.addEventListener('securitypolicyviolation',"
            " e => window.cspViolations.push(e.effectiveDirective + ' ' + e.blockedURI));"
        )

    def violations(self) -> list[str]:
        return self.page.evaluate("window.cspViolations")

    def left_origin(self, base_url: str) -> list[str]:
        # A worker's blob: URL belongs to the page's origin.
        sent = [u for u in self.requests if u not in self.blocked]
        return [u for u in sent if not u.removeprefix("blob:").startswith(base_url + "/")]


def test_swagger_ui_runs_try_it_out_from_its_own_assets(stack, page: Page):
    traffic = Traffic(page)
    page.goto(stack.base_url + "/async/docs")
    health = page.locator(".opblock", has=page.locator('.opblock-summary-path[data-path="/health"]'))
    expect(health).to_be_visible()
    expect(page.locator(".opblock-post", has=page.locator('[data-path="/orders"]'))).to_be_visible()
    health.locator(".opblock-summary").click()
    health.get_by_role("button", name="Try it out").click()
    health.get_by_role("button", name="Execute").click()
    live = health.locator(".live-responses-table")
    expect(live.get_by_role("cell", name="200", exact=True)).to_be_visible()
    expect(live).to_contain_text('"status": "ok"')
    page.wait_for_load_state("networkidle")
    assert traffic.left_origin(stack.base_url) == []
    assert stack.base_url + "/async/health" in traffic.requests  # the Execute, through nginx
    assert traffic.blocked == traffic.errors == traffic.violations() == []


def test_redoc_renders_the_api_from_its_own_assets(stack, page: Page):
    traffic = Traffic(page)
    page.goto(stack.base_url + "/async/redoc")
    expect(page.get_by_role("heading", name="twinstack async service (0.1.0)")).to_be_visible()
    # An operation: its heading (after ReDoc's anchor link) and its method and path.
    expect(page.get_by_role("heading", name=re.compile(r"health_health_get Health$"))).to_be_visible()
    expect(page.get_by_role("button", name="get /health", exact=True)).to_be_visible()
    expect(page.get_by_text("API docs by Redocly")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert traffic.left_origin(stack.base_url) == []
    assert traffic.blocked == [REDOCLY_LOGO]
    assert traffic.violations() == [f"img-src {REDOCLY_LOGO}"]
    assert len(traffic.errors) == 1 and REDOCLY_LOGO in traffic.errors[0]
