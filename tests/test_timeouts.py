"""One ordering of timeouts across the stack, read from the files that set them.

longest request the contract allows < nginx proxy_read_timeout < gunicorn timeout
<= gunicorn graceful_timeout < supervisord stopwaitsecs, and gunicorn keepalive > nginx's
upstream keepalive_timeout. If any one value moves out of order, this fails.
"""

from __future__ import annotations

import configparser
import re
import runpy
from pathlib import Path

import yaml

from native.settings import StackSettings, deployed
from twinstack_contract.models import MAX_DELAY_MS, MAX_REQUEST_MS
from twinstack_runtime.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent


def nginx_seconds(path: Path, directive: str) -> list[int]:
    values = re.findall(rf"^\s*{directive}\s+(\d+)s;", path.read_text(), re.M)
    assert values, f"{directive} not found in {path}"
    return [int(v) for v in values]


def test_timeouts_are_in_one_order():
    timeouts = (ROOT / "nginx/templates/timeouts.conf.template").read_text()
    assert re.search(r"^proxy_read_timeout \$\{TWINSTACK_PROXY_TIMEOUT_S\}s;", timeouts, re.M)
    proxy_read = StackSettings.model_fields["proxy_timeout_s"].default
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert (
        compose["services"]["nginx"]["environment"]["TWINSTACK_PROXY_TIMEOUT_S"]
        == f"${{TWINSTACK_PROXY_TIMEOUT_S:-{proxy_read}}}"
    )
    supervisor = configparser.RawConfigParser()
    supervisor.read(sorted((ROOT / "native/programs").glob("*.conf")))

    for half in deployed():
        upstream_keepalive = max(
            nginx_seconds(ROOT / f"nginx/templates/{half.prefix}.conf.template", "keepalive_timeout")
        )
        conf = runpy.run_path(str(ROOT / half.package / "gunicorn.conf.py"))
        assert MAX_REQUEST_MS / 1000 < proxy_read < conf["timeout"] <= conf["graceful_timeout"], half
        assert conf["keepalive"] > upstream_keepalive, half
        for program in (half.program, "nginx"):
            assert int(supervisor[f"program:{program}"]["stopwaitsecs"]) > conf["graceful_timeout"], program


def test_downstream_timeout_outlasts_the_longest_wait():
    assert ServiceSettings().downstream_timeout_s > MAX_DELAY_MS / 1000
