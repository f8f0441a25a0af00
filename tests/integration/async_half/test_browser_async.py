"""The async half's own pages in a real browser (Debian's chromium driven by Playwright): the
landing page's WebSocket, and the API docs, served from the app's own assets (no CDN)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Page, expect

from tests.integration.test_browser import open_landing_page
from tests.support import HALVES

pytestmark = pytest.mark.integration


def test_landing_page_renders_and_its_websocket_works(stack, page: Page):
    errors = open_landing_page(stack, page)
    for half in HALVES:  # the halves deployed: their columns shown
        expect(page.locator(f'th[data-half="{half.prefix}"]')).to_be_visible()
    page.get_by_role("button", name="Send “hello”").click()
    expect(page.locator("#ws-out")).to_contain_text("echoed “hello”")
    assert errors == []  # the CSP allows everything the page itself uses


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
