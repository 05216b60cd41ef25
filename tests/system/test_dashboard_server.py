"""`mushroom dashboard` as a server: with a token every request needs it (no browser needed)."""

from __future__ import annotations

from helpers.server import ServerProcess


def test_with_a_token_every_request_needs_it(trained_home, tmp_path):
    import requests

    srv = ServerProcess.dashboard(trained_home, log_path=tmp_path / "token.log",
                                  args=["--host", "127.0.0.1", "--token", "s3cret-token"],
                                  env={"MUSHROOM_DASHBOARD_POOL": "0"})
    with srv:
        for path in ("", "api/kernels/00000000-0000-0000-0000-000000000000", "voila/api/shutdown/x"):
            r = requests.get(srv.url + path, timeout=60, allow_redirects=False)
            assert r.status_code in (302, 403, 405) and "mushroom-app" not in r.text, (path, r.status_code)
        r = requests.get(srv.url + "?token=wrong", timeout=60, allow_redirects=False)
        assert r.status_code in (302, 403) and "jupyter-config-data" not in r.text
        r = requests.get(srv.url + "?token=s3cret-token", timeout=120)
        assert r.status_code == 200 and "jupyter-config-data" in r.text
