"""The README is the front door: what the project is, how to start it, how to start your own,
and one link to each page of docs/. Everything else lives in those pages."""

from __future__ import annotations

import re

from tests.support import ROOT

LIMIT = 150


def test_the_readme_is_short_and_links_every_page_of_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= LIMIT, f"README.md has {len(readme.splitlines())} lines (at most {LIMIT})"
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)", readme))
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, sorted(pages - linked)


def test_the_readme_carries_no_machines_figures():
    """Measured figures belong to the lab's report of the run that made them (docs/lab.md)."""
    readme = (ROOT / "README.md").read_text()
    assert not re.findall(r"\d[\d ,.]* ?(?:req/s|ms\b|µs|MiB|KiB)", readme)
