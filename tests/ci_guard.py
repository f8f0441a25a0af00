"""A pytest plugin: in CI (CI=true, which .ci/run sets) nothing may skip quietly."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """In CI (CI=true, which .ci/run sets) nothing may skip quietly: a skipped test, whatever
    skipped it (pytest.skip, a skipif marker, a missing binary), is reported as a failure."""
    report = yield
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where a skip is a failure: {reason}"
    return report
