"""`mushroom ui` beyond loopback: a token is required, and behind it every request is checked by our proxy
(Evidently's own secret guards writes only). On loopback with --token: an unauthenticated GET of the page or
of the API is refused, the token once in the address (then a cookie) or in an Authorization header lets the
reads through, writes are refused by Evidently itself, and Evidently listens on 127.0.0.1 only and stops
with the command.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers.cli import cli_env, mushroom_cmd, one_error_line, run
from helpers.server import ServerProcess

from mushroom_lib.core.ports import free_port

TOKEN = "ui-test-token-0123456789"

pytestmark = pytest.mark.slow


def _status(url: str, headers: dict | None = None, data: bytes | None = None, opener=None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_beyond_loopback_needs_a_token(home):
    res = run("--home", str(home), "ui", "--host", "0.0.0.0", "--port", str(free_port()))
    assert "without a token" in one_error_line(res) and "MUSHROOM_UI_TOKEN" in res.stderr


@pytest.fixture(scope="module")
def ui(_trained_template, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui")
    home = shutil.copytree(_trained_template, folder / "home")
    port = free_port()
    env = {**cli_env(), "MUSHROOM_UI_TOKEN": TOKEN}
    server = ServerProcess([*mushroom_cmd(), "--home", str(home), "ui", "--port", str(port)], port=port,
                           env=env, log_path=folder / "ui.log", start_timeout=120)
    with server:
        base = f"http://127.0.0.1:{port}"
        # the proxy listens at once; Evidently behind it answers a few seconds later (502 meanwhile)
        for _ in range(240):
            if _status(f"{base}/api/version", {"Authorization": f"Bearer {TOKEN}"})[0] == 200:
                break
            assert server.proc.poll() is None, server.log_tail()
            time.sleep(0.5)  # polling while Evidently starts, not synchronisation
        yield server, base


def test_an_unauthenticated_get_is_refused(ui):
    _server, base = ui
    for path in ("/", "/api/projects", "/api/version", "/static/js/x.js"):
        status, body = _status(base + path)
        assert status == 403, (path, status)
        assert b"needs its token" in body
    assert _status(base + "/?token=wrong")[0] == 403
    assert _status(base + "/api/projects", {"Authorization": "Bearer wrong"})[0] == 403
    assert _status(base + "/api/projects", {"Cookie": "mushroom_ui=ok"})[0] == 403  # an unsigned cookie


def test_the_token_lets_reads_through_and_evidently_refuses_writes(ui):
    _server, base = ui
    status, body = _status(base + "/api/projects", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and isinstance(json.loads(body), list)
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, page = _status(f"{base}/?token={TOKEN}", opener=browser)  # redirected to / with the cookie set
    assert status == 200 and b"<html" in page.lower()
    assert [c.name for c in jar] == ["mushroom_ui"] and TOKEN not in next(iter(jar)).value
    assert _status(base + "/api/projects", opener=browser)[0] == 200  # the cookie alone
    status, _ = _status(base + "/api/projects", {"Authorization": f"Bearer {TOKEN}",
                                                 "Content-Type": "application/json"}, data=b'{"name": "x"}')
    assert status in (401, 403)  # Evidently's random secret: nobody can write through the UI


def test_evidently_listens_on_loopback_only_and_stops_with_the_command(ui):
    server, _base = ui
    children = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True,
                              check=False).stdout.split()
    assert len(children) == 1
    cmdline = Path(f"/proc/{children[0]}/cmdline").read_bytes().split(b"\0")
    assert b"evidently.cli" in cmdline and cmdline[cmdline.index(b"--host") + 1] == b"127.0.0.1"
    server.stop()
    assert not os.path.exists(f"/proc/{children[0]}")  # stopped and reaped by `mushroom ui` before it exited
