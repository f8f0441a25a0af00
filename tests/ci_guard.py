"""A pytest plugin: in CI (CI=true, which .ci/run sets) nothing may skip quietly."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    return report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """A skipped test (pytest.skip, a skipif marker, a missing binary) is reported as a failure."""
    report = yield
    if report.skipped and _in_ci() and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where a skip is a failure: {_reason(report)}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[pytest.CollectReport]:
    """A module skipped while it is collected (``pytest.skip(allow_module_level=True)``,
    ``pytest.importorskip``) never reaches the hook above: its tests are not items at all. The
    collection report is turned into a collection error instead, which fails the run."""
    report = yield
    if report.skipped and _in_ci():
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where a skip is a failure: {_reason(report)}"
    return report
