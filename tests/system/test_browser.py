"""End to end in headless Chromium (Debian's chromium through Python Playwright) against `mushroom dashboard`.

The server runs in a subprocess on a free 127.0.0.1 port with MUSHROOM_HOME set to a trained home and is
stopped at the end of each test. Without chromium the browser tests are skipped locally and fail in CI.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from helpers.server import CHROMIUM_ARGS, POOL_FILLED, ServerProcess, chromium_path

from mushroom_lib.dashboard.handlers import PAGE_COOKIE
from mushroom_lib.dashboard.handlers import V1_SUBPROTOCOL
from mushroom_lib.data.schema import LABELS

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")
ROW_HEADER_W, HEADER_H, ROW_H, TRUE_LABEL_W = 64, 20, 20, 128  # ipydatagrid sizes the dashboard uses
#: the tests open a page or two at a time: a small pool (the default is sized for a class) keeps start-up light
SMALL_POOL = {"MUSHROOM_DASHBOARD_POOL": "2"}


def _need_browser():
    """(sync_playwright, chromium path); a loud failure in CI when either is missing."""
    exe = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        sync_playwright = None
    if exe and sync_playwright:
        return sync_playwright, exe
    msg = ("headless browser tests need Debian's chromium (apt-get install chromium) and the playwright "
           f"package; chromium={exe!r}, playwright={'ok' if sync_playwright else 'missing'}")
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def browser():
    sync_playwright, exe = _need_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def server(trained_home, tmp_path):
    srv = ServerProcess.dashboard(trained_home, log_path=tmp_path / "dashboard.log", env=SMALL_POOL)
    srv.start()
    yield srv
    srv.stop()


def _page(browser, outside: list):
    """A page whose requests leaving 127.0.0.1 are recorded and refused (the dashboard must work offline)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})

    def route(r):
        if r.request.url.startswith(LOCAL):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()

    context.route("**/*", route)
    return context, context.new_page()


APP_TEXT = "t => { const a = document.querySelector('.mushroom-app'); return !!a && a.innerText.includes(t); }"


def _wait_text(page, text: str, timeout: float = 30_000) -> None:
    """Wait until the app's text holds ``text`` (the app may not be on the page yet)."""
    page.wait_for_function(APP_TEXT, arg=text, timeout=timeout)


def _upload(page, path: Path, rows: int) -> None:
    with page.expect_file_chooser() as chooser:
        page.click(".mushroom-upload")
    chooser.value.set_files(str(path))
    _wait_text(page, f"{rows} rows scored")
    page.wait_for_selector(".mushroom-grid canvas", state="visible")


def _type_true_label(page, row: int, label: str, wait: bool = True) -> None:
    """Double-click the row's 'true label' cell (the first grid column), type, Enter."""
    box = page.locator(".mushroom-grid").bounding_box()
    x = box["x"] + ROW_HEADER_W + TRUE_LABEL_W / 2
    y = box["y"] + HEADER_H + ROW_H * row + ROW_H / 2
    page.mouse.dblclick(x, y)
    page.keyboard.type(label)
    page.keyboard.press("Enter")
    if wait:
        _wait_text(page, f"row {row + 1}: true label {label}")


def _sample(trained_home: Path, tmp_path: Path, n: int, *, with_class: bool = False) -> tuple[Path, list[str]]:
    """n rows of the dataset as a file (without their class unless asked) and their true labels."""
    df = pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False).head(n)
    path = tmp_path / "field.csv"
    (df if with_class else df.drop(columns=["class"])).to_csv(path, index=False)
    return path, [LABELS[c] for c in df["class"]]


def _wait_event(page, event: str, timeout: float = 120_000) -> None:
    """Wait until the page's recorded sequence of states holds ``event`` (a state that passed still counts)."""
    page.wait_for_function("e => (document.querySelector('.mushroom-events') || {textContent: ''})"
                           ".textContent.split(' ').includes(e)", arg=event, timeout=timeout)


def _ready(page, url: str, timeout: float = 90_000) -> None:
    page.goto(url, timeout=timeout)
    page.wait_for_selector(".mushroom-upload:not([disabled])", state="visible", timeout=timeout)


@pytest.mark.browser
def test_upload_label_in_the_grid_send_until_retrain_and_see_the_new_version(browser, server, trained_home,
                                                                             tmp_path):
    outside, page_errors = [], []
    context, page = _page(browser, outside)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    try:
        page.goto(server.url, timeout=90_000)
        page.wait_for_selector(".mushroom-upload:not([disabled])", state="visible", timeout=90_000)
        assert "model v0001" in page.inner_text(".mushroom-model-version")
        page.get_by_text("Enter one mushroom by hand", exact=True).click()  # built when opened
        page.wait_for_function("() => document.querySelectorAll('.mushroom-manual-form select').length == 22",
                               timeout=30_000)
        assert "odor" in page.inner_text(".mushroom-manual-form")
        page.get_by_text("Enter one mushroom by hand", exact=True).click()
        csv_path, labels = _sample(trained_home, tmp_path, 30)
        _upload(page, csv_path, 30)
        assert page.locator(".mushroom-errors").is_hidden()

        # one row labelled in the grid and sent on its own
        _type_true_label(page, 0, labels[0])
        page.fill(".mushroom-row-number input", "1")
        page.click("button.mushroom-submit-row")
        _wait_text(page, "9 of 10 until the next retrain")

        # nine more labelled in the grid, sent together: the tenth row starts a background retrain
        for row in range(1, 10):
            _type_true_label(page, row, labels[row])
        _wait_text(page, "9 labelled row(s) ready to send")
        page.click(".mushroom-submit-feedback")
        _wait_event(page, "retraining")  # recorded by the page, so a quick retrain cannot hide it
        _type_true_label(page, 11, labels[11], wait=False)  # the grid stays usable meanwhile
        _wait_event(page, "promoted-v0002")
        page.wait_for_function("() => document.querySelector('.mushroom-model-version').innerText"
                               ".includes('v0002')", timeout=30_000)
        assert page.locator(".mushroom-pending").is_hidden()
        assert "10 of 10 until the next retrain" in page.inner_text(".mushroom-app")

        # the scored grid as the download link carries it: labels typed in the grid, the new model
        page.click(".mushroom-download button")
        link = page.wait_for_selector(".mushroom-download a[download]", timeout=30_000)
        data = base64.b64decode(link.get_attribute("href").split("base64,", 1)[1]).decode()
        table = pd.read_csv(io.StringIO(data), dtype=str, keep_default_na=False)
        assert list(table["true label"][:10]) == labels[:10] and table["true label"][11] == labels[11]
        assert list(table["sent"][:10]) == ["yes"] * 10 and set(table["model_version"]) == {"v0002"}

        page.get_by_text("3-D PCA view", exact=True).click()  # the plot is only built when its section opens
        page.wait_for_selector(".mushroom-scatter .main-svg", state="visible", timeout=60_000)
        page.set_viewport_size({"width": 1400, "height": 1500})
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        (ROOT / "reports").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "reports" / "dashboard.png"), full_page=True)

        # an invalid edit is refused with a visible message
        _type_true_label_invalid = page.locator(".mushroom-grid").bounding_box()
        page.mouse.dblclick(_type_true_label_invalid["x"] + ROW_HEADER_W + TRUE_LABEL_W / 2,
                            _type_true_label_invalid["y"] + HEADER_H + ROW_H * 12 + ROW_H / 2)
        page.keyboard.type("maybe")
        page.keyboard.press("Enter")
        page.wait_for_selector(".mushroom-errors", state="visible")
        assert "not a label" in page.inner_text(".mushroom-errors")
    except Exception:
        (ROOT / "reports").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "reports" / "dashboard-failure.png"), full_page=True)
        raise
    finally:
        context.close()
    assert outside == [], f"the page asked for resources outside 127.0.0.1: {outside[:5]}"
    assert page_errors == []
    from mushroom_lib.service import ModelService

    svc = ModelService(trained_home)
    assert svc.model_version == "v0002"
    assert svc.store.count() == 10


def _kernel_id(page) -> str:
    return json.loads(page.evaluate("document.getElementById('jupyter-config-data').textContent"))["kernelId"]


def _legacy(msg_type: str, content: dict, session: str, metadata: dict | None = None) -> str:
    """A kernel message in the legacy JSON websocket protocol (no subprotocol)."""
    return json.dumps({"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session,
                                  "username": "raw", "date": "2024-01-01T00:00:00Z", "version": "5.3"},
                       "parent_header": {}, "metadata": metadata or {}, "content": content,
                       "channel": "shell", "buffers": []})


@pytest.mark.browser
def test_a_raw_websocket_client_cannot_hang_the_server(browser, server, trained_home, tmp_path):
    import requests
    import websocket

    outside = []
    # a warm server first: the page must take a pre-heated kernel, whose refill is what the test waits for
    # below (a page that arrives before the pool filled gets a kernel of its own and nothing is refilled)
    assert server.wait_for_log(POOL_FILLED, count=1, timeout=180)
    # the page stays open: the raw client goes after a live page's kernel (a closed page's kernel is
    # shut down a few seconds after its websocket closed)
    owner, page = _page(browser, outside)
    page.goto(server.url, timeout=90_000)
    page.wait_for_selector(".mushroom-upload:not([disabled])", state="visible", timeout=90_000)
    csv_path, _ = _sample(trained_home, tmp_path, 50)
    _upload(page, csv_path, 50)  # the widget state now carries binary buffers (the grid's numbers)
    kernel = _kernel_id(page)
    # a warm server: the pre-heated kernel taken by that page has been replaced
    assert server.wait_for_log(POOL_FILLED, count=2, timeout=90)
    url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel}/channels?session_id={uuid.uuid4().hex}"

    # the sequence that hangs plain Voila: no subprotocol, open the widget control comm, ask for the state
    start = time.monotonic()
    refused = None
    try:
        ws = websocket.create_connection(url, timeout=10)
    except websocket.WebSocketBadStatusException as exc:
        refused = exc
    else:
        session, comm = uuid.uuid4().hex, uuid.uuid4().hex
        ws.send(_legacy("comm_open", {"comm_id": comm, "target_name": "jupyter.widget.control", "data": {}},
                        session, {"version": "1.0.0"}))
        ws.send(_legacy("comm_msg", {"comm_id": comm, "data": {"method": "request_states"}}, session))
        ws.close()
    assert refused is not None and refused.status_code == 400

    # the server still answers and the page still loads, within 10 s
    assert requests.get(f"{server.url}voila/static/voila.js", timeout=10).status_code == 200
    context, page = _page(browser, outside)
    try:
        page.goto(server.url, timeout=10_000)
        page.wait_for_selector(".mushroom-upload", state="visible",
                               timeout=max(100, 10_000 - (time.monotonic() - start) * 1000))
    finally:
        context.close()
    assert time.monotonic() - start < 10

    # the page's own key with the v1 subprotocol (as the page connects) is accepted
    ws = websocket.create_connection(url, timeout=10, subprotocols=[V1_SUBPROTOCOL],
                                     cookie=_page_cookie(owner, server, kernel))
    assert ws.getsubprotocol() == V1_SUBPROTOCOL
    ws.close()
    owner.close()


def _page_cookie(context, server, kernel: str) -> str:
    """The Cookie header a page's browser sends with its kernel's websocket (the page's key among them)."""
    cookies = context.cookies(f"{server.url}api/kernels/{kernel}/channels")
    assert any(c["name"] == PAGE_COOKIE for c in cookies)
    return "; ".join(f"{c['name']}={c['value']}" for c in cookies)


def _v1_request(msg_type: str, content: dict, session: str) -> tuple[str, bytes]:
    from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": msg_type, "session": session, "username": "raw",
              "date": "2024-01-01T00:00:00Z", "version": "5.3"}
    msg = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "buffers": []}
    return msg_id, serialize_msg_to_ws_v1(msg, "shell", pack=lambda part: json.dumps(part).encode())


@pytest.mark.browser
def test_only_the_page_served_a_kernel_opens_its_websocket_and_no_one_runs_code_through_it(browser, server,
                                                                                          tmp_path):
    import websocket
    from jupyter_server.services.kernels.connection.base import (
        deserialize_msg_from_ws_v1,
    )

    owner, page = _page(browser, [])
    other, page2 = _page(browser, [])
    try:
        _ready(page, server.url)
        _ready(page2, server.url)
        kernel, kernel2 = _kernel_id(page), _kernel_id(page2)
        url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel}/channels?session_id={uuid.uuid4().hex}"
        # a client that knows the kernel id, with no key or with another page's key, is refused
        for cookie in (None, f"{PAGE_COOKIE}={_page_cookie_value(other, server, kernel2)}"):
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                websocket.create_connection(url, timeout=10, subprotocols=[V1_SUBPROTOCOL], cookie=cookie)
            assert refused.value.status_code == 403
        # the page's own key opens it, but code sent through it never runs: the kernel answers the
        # kernel_info_request sent after it, and nothing was executed before that answer
        marker = tmp_path / "ran"
        ws = websocket.create_connection(url, timeout=30, subprotocols=[V1_SUBPROTOCOL],
                                         cookie=_page_cookie(owner, server, kernel))
        session = uuid.uuid4().hex
        _, execute = _v1_request("execute_request", {"code": f"open({str(marker)!r}, 'w').close()", "silent": False,
                                                     "store_history": False, "user_expressions": {},
                                                     "allow_stdin": False, "stop_on_error": True}, session)
        info_id, info = _v1_request("kernel_info_request", {}, session)
        ws.send_binary(execute)
        ws.send_binary(info)
        seen = []
        while True:
            _channel, parts = deserialize_msg_from_ws_v1(ws.recv())
            header, parent = json.loads(parts[0]), json.loads(parts[1])
            seen.append(header["msg_type"])
            if header["msg_type"] == "kernel_info_reply" and parent.get("msg_id") == info_id:
                break
        ws.close()
        assert "execute_reply" not in seen and "execute_input" not in seen and not marker.exists()
        # the page still works after all that
        page.click(".mushroom-sample")
        _wait_text(page, "20 rows scored")
    finally:
        owner.close()
        other.close()


def _page_cookie_value(context, server, kernel: str) -> str:
    return next(c["value"] for c in context.cookies(f"{server.url}api/kernels/{kernel}/channels")
                if c["name"] == PAGE_COOKIE)


def test_abandoned_kernels_are_culled(trained_home, tmp_path):
    """A page that never connects (a closed tab) leaves a kernel; idle culling shuts it down, never the pool's."""
    import re

    import requests

    srv = ServerProcess.dashboard(trained_home, log_path=tmp_path / "cull.log", cull_seconds=3, env=SMALL_POOL)
    with srv:
        assert srv.wait_for_log(POOL_FILLED, timeout=180)
        html = requests.get(srv.url, timeout=90).text
        kernel = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                      html, re.S).group(1))["kernelId"]
        api = f"{srv.url}api/kernels/{kernel}"
        assert requests.get(api, timeout=10).status_code == 200
        deadline = time.monotonic() + 45
        status = 200
        while time.monotonic() < deadline and status == 200:
            time.sleep(1)
            status = requests.get(api, timeout=10).status_code
        assert status == 404, srv.log_tail()
        assert "Culling" in srv.log_text()
        # the pre-heated kernel left in the pool was idle just as long, and is still there for the next visitor
        requests.get(srv.url, timeout=90)
        assert srv.log_text().count("Using pre-heated kernel") == 2, srv.log_tail()


@pytest.mark.browser
def test_the_sample_button_then_one_click_sends_its_labels_and_moves_the_badge(browser, server):
    outside = []
    context, page = _page(browser, outside)
    try:
        _ready(page, server.url)
        page.click(".mushroom-sample")
        _wait_text(page, "20 rows scored")
        _wait_text(page, "10 row(s) carry a true label")
        page.click(".mushroom-submit-feedback")
        _wait_event(page, "sent-10")
        _wait_text(page, "this batch against your labels: accuracy")
        _wait_event(page, "promoted-v0002")
        page.wait_for_function("() => document.querySelector('.mushroom-model-version').innerText.includes('v0002')",
                               timeout=30_000)
    finally:
        context.close()
    assert outside == []


def _big_file(trained_home: Path, tmp_path: Path) -> tuple[Path, str]:
    """A 12 MB CSV of dataset rows (past the websocket's message limit) and its size as the page words it."""
    rows = pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    big = tmp_path / "big.csv"
    body = rows.to_csv(index=False)
    with open(big, "w") as fh:
        fh.write(body)
        lines = body.split("\n", 1)[1]
        while fh.tell() < 12 * 1024 * 1024:
            fh.write(lines)
    return big, f"{big.stat().st_size / 1e6:.1f} MB"


@pytest.mark.browser
def test_the_first_paint_bar_works_before_the_widgets_and_hands_over_to_them(browser, server, trained_home,
                                                                             tmp_path):
    """Voila's bundle is held back: the page shows only its first-paint bar, whose buttons already take a file
    or the sample; once the bundle is let through, the widgets score what was chosen and the bar hides. A file
    chooser opened from the bar and closed after the widgets arrived still delivers."""
    small, _ = _sample(trained_home, tmp_path, 5)
    big, size_mb = _big_file(trained_home, tmp_path)
    outside = []
    cases = [("sample", None, "20 rows scored"), ("file", small, "5 rows scored"),
             ("file", big, f"big.csv is {size_mb}"), ("chooser left open", small, "5 rows scored")]
    for how, path, expected in cases:
        context, page = _page(browser, outside)
        held = []
        page.route("**/voila/static/voila.js", lambda route: held.append(route))  # answered once chosen
        try:
            page.goto(server.url, wait_until="commit", timeout=90_000)
            page.wait_for_selector("#mushroom-first .mushroom-first-upload", state="visible", timeout=90_000)
            chooser = None
            if how == "sample":
                page.click("#mushroom-first .mushroom-first-sample")
            else:
                with page.expect_file_chooser() as opened:
                    page.click("#mushroom-first .mushroom-first-upload")
                chooser = opened.value
            if how == "file":
                chooser.set_files(str(path))
            if how != "chooser left open":
                assert "is waiting" in page.inner_text("#mushroom-first")
            assert page.query_selector(".mushroom-app") is None  # nothing but the bar has run so far
            deadline = time.monotonic() + 60
            while not held and time.monotonic() < deadline:
                page.wait_for_timeout(50)  # polling for the page's request of the bundle, not synchronising
            held[0].continue_()
            page.wait_for_selector("#mushroom-first", state="hidden", timeout=90_000)  # the widgets took over
            if how == "chooser left open":
                chooser.set_files(str(path))
            if path is big:
                page.wait_for_selector(".mushroom-errors", state="visible", timeout=90_000)
                text = page.inner_text(".mushroom-errors")
                assert expected in text and "mushroom predict" in text
                assert "rows scored" not in page.inner_text(".mushroom-app")
            else:
                _wait_text(page, expected, timeout=90_000)
        finally:
            context.close()
    assert outside == []


@pytest.mark.browser
def test_a_file_past_the_websocket_limit_gets_a_clear_message(browser, server, trained_home, tmp_path):
    big, size_mb = _big_file(trained_home, tmp_path)
    context, page = _page(browser, [])
    try:
        _ready(page, server.url)
        with page.expect_file_chooser() as chooser:
            page.click(".mushroom-upload")
        chooser.value.set_files(str(big))
        page.wait_for_selector(".mushroom-errors", state="visible", timeout=30_000)
        text = page.inner_text(".mushroom-errors")
        assert f"big.csv is {size_mb}" in text and "mushroom predict" in text
        # the page is still alive: a normal file is scored afterwards and the message goes away
        small, _ = _sample(trained_home, tmp_path, 5)
        _upload(page, small, 5)
        page.wait_for_selector(".mushroom-errors", state="hidden", timeout=30_000)
    finally:
        context.close()


def _kernel_of(html: str) -> str:
    import re

    return json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                html, re.S).group(1))["kernelId"]


def _gone(api: str, timeout: float) -> bool:
    """Poll the kernel's REST entry until it is gone (404) or the time is up."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(api, timeout=10).status_code == 404:
            return True
        time.sleep(0.5)  # polling the server for a state, not synchronising on time
    return False


@pytest.mark.browser
def test_a_full_workbench_says_so_and_a_closed_tab_frees_its_kernel(browser, trained_home, tmp_path):
    import requests

    env = {"MUSHROOM_DASHBOARD_MAX_KERNELS": "1", "MUSHROOM_DASHBOARD_POOL": "1",
           "MUSHROOM_DASHBOARD_CLOSE_GRACE": "1"}
    srv = ServerProcess.dashboard(trained_home, log_path=tmp_path / "full.log", env=env)
    with srv:
        first, page = _page(browser, [])
        _ready(page, srv.url)
        kernel = _kernel_id(page)
        api = f"{srv.url}api/kernels/{kernel}"
        # no client stops a page's kernel through REST, not even with a matching XSRF cookie and header
        s = requests.Session()
        s.get(srv.url + "voila/static/voila.js", timeout=10)
        xsrf = {"X-XSRFToken": s.cookies.get("_xsrf", "t")}
        s.cookies.set("_xsrf", xsrf["X-XSRFToken"])
        assert s.delete(api, headers=xsrf, timeout=10).status_code in (403, 405)
        assert s.post(f"{srv.url}voila/api/shutdown/{kernel}", headers=xsrf, timeout=10).status_code in (403, 405)
        assert requests.get(api, timeout=10).status_code == 200
        # a second visitor meets a plain page that retries by itself
        full = requests.get(srv.url, timeout=30)
        assert full.status_code == 503 and "the workbench is full, retrying in a few seconds" in full.text.lower()
        second, page2 = _page(browser, [])
        page2.goto(srv.url, timeout=30_000)
        page2.wait_for_selector(".mushroom-full", timeout=30_000)
        first.close()  # the first tab closes: its kernel is shut down, the second page gets in
        assert _gone(api, 60), srv.log_tail()
        page2.wait_for_selector(".mushroom-upload:not([disabled])", state="visible", timeout=90_000)
        assert _kernel_id(page2) != kernel
        second.close()
