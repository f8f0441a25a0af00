"""The CI guard: under CI=true every kind of skip fails the run, a whole module skipped while
it is collected included; elsewhere it stays a skip."""

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
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # only the guard: the run starts in a fraction
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest_subprocess("-p", "tests.ci_guard", "-p", "no:cacheprovider")
    result.assert_outcomes(**outcomes)
    if ci:
        result.stdout.fnmatch_lines(["*skipped in CI, where a skip is a failure*no thing*"])


MODULE_SKIPS = {
    "skip": "import pytest\npytest.skip('no thing here', allow_module_level=True)\n\ndef test_never():\n    pass\n",
    "importorskip": "import pytest\npytest.importorskip('no_such_module_anywhere')\n\ndef test_never():\n    pass\n",
}


@pytest.mark.parametrize("how", sorted(MODULE_SKIPS))
@pytest.mark.parametrize("ci", ["true", ""])
def test_a_module_skipped_at_collection_fails_only_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str, ci: str
):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_skipped_module=MODULE_SKIPS[how], test_other="def test_passes():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "tests.ci_guard", "-p", "no:cacheprovider")
    if ci:  # a collection error: pytest runs nothing and fails
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*skipped in CI, where a skip is a failure*"])
        assert result.ret != 0
    else:
        result.assert_outcomes(passed=1, skipped=1)
        assert result.ret == 0
