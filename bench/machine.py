"""What the lab ran on: CPUs, memory, OS, and the version of every component measured."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from importlib import metadata

import psutil

from .records import Machine

PACKAGES = (
    "fastapi", "starlette", "uvicorn", "uvicorn-worker", "gunicorn", "flask", "werkzeug", "gevent",
    "granian", "pydantic", "httpx", "websockets", "locust", "matplotlib",
)  # fmt: skip


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tool_version(argv: list[str], pattern: str) -> str:
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        return "not installed"
    result = subprocess.run(argv, capture_output=True, text=True)
    match = re.search(pattern, result.stdout + result.stderr)
    return match.group(1) if match else "unknown"


def machine_info(nginx: str) -> Machine:
    """The machine, and the version of every component measured (``nginx``: its binary)."""
    try:
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        os_name = platform.system()
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["nginx"] = _tool_version([nginx, "-v"], r"nginx/(\S+)")
    versions["wrk"] = _tool_version(["wrk", "-v"], r"wrk (\S+)")
    return Machine(
        cpu_model=_cpu_model(),
        cpus=os.cpu_count() or 1,
        usable_cpus=len(os.sched_getaffinity(0)),
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        os=os_name,
        kernel=platform.release(),
        versions=versions,
    )
