"""``python -m loadtest PROFILE --host URL [--workers N] [locust options ...]``: what `make loadtest` runs.

Runs Locust headless with loadtest/profiles/PROFILE.conf against the stack's nginx at URL (make
passes it: ``python -m native url`` natively, http://nginx:8080 under Compose), writes an HTML
report, CSV stats and the gate's verdict (JSON) to reports/, and exits with the gate's code.
Extra options go to Locust as they are, e.g. ``--tags io`` or ``--max-p95-sync-ms 500``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "loadtest" / "profiles"


def main(argv: list[str] | None = None) -> int:
    profiles = sorted(p.stem for p in PROFILES.glob("*.conf"))
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.split("\n\n")[1])
    parser.add_argument("profile", choices=profiles, nargs="?", default="mixed")
    parser.add_argument("--workers", type=int, default=0, help="Distributed: a master plus N worker processes.")
    parser.add_argument(
        "--host", required=True, help="The stack's base URL, e.g. http://127.0.0.1:8080 (python -m native url)."
    )
    parser.add_argument("--reports", type=Path, default=ROOT / "reports")
    args, locust_args = parser.parse_known_args(argv)

    host = args.host.strip()
    if not host.startswith(("http://", "https://")):
        parser.error(f"--host: expected the stack's base URL (http://HOST:PORT), not {args.host!r}")
    base = args.reports / f"locust-{args.profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [
        sys.executable, "-m", "locust",
        "--config", str(PROFILES / f"{args.profile}.conf"),
        "--host", host,
        "--html", f"{base}.html",
        "--csv", str(base),
        "--verdict-json", f"{base}-verdict.json",
    ]  # fmt: skip
    if args.workers:
        # Locust's own distributed mode: fork N workers that connect to this master.
        cmd += ["--processes", str(args.workers)]
    cmd += locust_args
    print(f"Load test '{args.profile}' against {host}; report: {base}.html", flush=True)
    # Become Locust: its exit code is the gate's, and signals (Ctrl-C, a CI timeout) reach it.
    os.chdir(ROOT)
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    raise SystemExit(main())
