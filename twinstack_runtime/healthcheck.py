"""``python -m twinstack_runtime.healthcheck [URL]``: the container HEALTHCHECK, without curl.

Exits 0 when URL (default: $TWINSTACK_HEALTH_URL) answers 200 within 3 s, 1 otherwise, as
Docker expects. The slim images ship no curl or wget; Python is already there.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if args else os.environ.get("TWINSTACK_HEALTH_URL", "")
    if not url:
        print("healthcheck: no URL (argument or TWINSTACK_HEALTH_URL)", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
