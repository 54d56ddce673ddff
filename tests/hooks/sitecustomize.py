"""Breaks the sandbox router's health checking on cue, for tests/test_first_drill.py only.

Python imports `sitecustomize` at start-up from the first folder on its path that has one; the
test puts this folder first on PYTHONPATH of a drill it runs, so every process of that drill
(harness, router, links, apps) loads this file. It does nothing unless
DRILLKIT_TEST_BREAK_HEALTH names a flag file, and then only in the router process: from the
moment the flag file exists, the router's next health check raises an error its checker does
not expect, and so the checker's thread dies, the failure the router must make loud.
"""

import os
import sys

_flag = os.environ.get("DRILLKIT_TEST_BREAK_HEALTH")
if _flag:
    import http.client

    _request = http.client.HTTPConnection.request

    def _breakable_request(self, method, url, *args, **kwargs):
        in_router = bool(sys.argv) and sys.argv[0].endswith(os.path.join("sandbox", "router.py"))
        if in_router and url == "/health" and os.path.exists(_flag):
            raise RuntimeError("health checking broken by the test")
        return _request(self, method, url, *args, **kwargs)

    http.client.HTTPConnection.request = _breakable_request
