#!/opt/venv/bin/python
"""The image's HEALTHCHECK: GET a URL on this container and exit 0 if it answers, 1 if not.

    mushroom-healthcheck                                   # http://127.0.0.1:8080/health must answer 200
    mushroom-healthcheck http://127.0.0.1:8081/ --any-status   # any HTTP answer counts (a token-guarded page)

Standard library only (the image has no curl); at most 4 s. Reads no secret: a server guarded by a token
answers 403 without it, and --any-status counts that as alive.
"""

import http.client
import sys
import urllib.error
import urllib.request

url = next((a for a in sys.argv[1:] if not a.startswith("--")), "http://127.0.0.1:8080/health")
any_status = "--any-status" in sys.argv[1:]
try:
    with urllib.request.urlopen(url, timeout=4) as resp:
        status = resp.status
except urllib.error.HTTPError as exc:
    status = exc.code
except (OSError, http.client.HTTPException) as exc:
    print(f"unhealthy: {url}: {exc}")
    sys.exit(1)
if status == 200 or any_status:
    print(f"healthy: {url} answered {status}")
    sys.exit(0)
print(f"unhealthy: {url} answered {status}")
sys.exit(1)
