"""Importing locust would gevent-monkey-patch the whole test process (threads, sockets) and
break the other layers; the gate's unit tests do no I/O, so they import it unpatched. The
variable is removed again at once: real load runs (tests/integration/test_loadtest.py) start
Locust as its own process, which must be patched."""

import os

os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
try:
    import locust  # noqa: F401  (the one import that reads the variable)
finally:
    del os.environ["LOCUST_SKIP_MONKEY_PATCH"]
