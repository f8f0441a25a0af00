"""Native Prometheus: the same monitoring/prometheus.yml as Docker, with loopback targets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .settings import ROOT, StackSettings, deployed

MONITORING = ROOT / "monitoring"


class MonitoringError(RuntimeError):
    pass


def render(settings: StackSettings) -> Path:
    """run/prometheus/: prometheus.yml as committed, targets/*.json pointing at this stack."""
    for binary in ("prometheus", "prometheus-nginx-exporter"):
        if shutil.which(binary) is None:
            raise MonitoringError(
                f"{binary} is not installed: sudo apt-get install prometheus prometheus-nginx-exporter "
                "(make up MONITORING=1 installs them when run as root)"
            )
    home = settings.run_dir.resolve() / "prometheus"
    (home / "targets").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MONITORING / "prometheus.yml", home / "prometheus.yml")
    # As targets/docker/*.json: a file a target, its job in its labels.
    targets = {half.program: (half.program, half.port(settings), half.prefix) for half in deployed()}
    targets["nginx-exporter"] = ("nginx", settings.nginx_exporter_port, "edge")
    for name, (job, port, pool) in targets.items():
        entry = [{"targets": [f"127.0.0.1:{port}"], "labels": {"job": job, "pool": pool}}]
        (home / "targets" / f"{name}.json").write_text(json.dumps(entry) + "\n")
    return home
