"""The CI guard: under CI=true every kind of skip fails the run; elsewhere it stays a skip."""

from __future__ import annotations

import pytest

from tests.support import ROOT

pytest_plugins = ["pytester"]

SKIPPING = """
import pytest

def test_skip_call():
    pytest.skip("no thing")

@pytest.mark.skipif(True, reason="marker")
def test_skip_marker():
    pass

def test_passes():
    pass
"""


@pytest.mark.parametrize(
    ("ci", "outcomes"), [("true", {"passed": 1, "failed": 1, "errors": 1}), ("", {"passed": 1, "skipped": 2})]
)
def test_a_skip_fails_only_in_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcomes: dict):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the plugin is tests.ci_guard
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest_subprocess("-p", "tests.ci_guard", "-p", "no:cacheprovider")
    result.assert_outcomes(**outcomes)
    if ci:
        result.stdout.fnmatch_lines(["*skipped in CI, where a skip is a failure*no thing*"])
