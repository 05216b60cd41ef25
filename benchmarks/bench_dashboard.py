"""Dashboard speed in headless Chromium: time to interactive and upload-to-grid, ours beside plain Voila.

* time to interactive: navigation -> a usable upload widget (``.mushroom-upload`` visible and enabled),
  median of 3 loads after one warm-up, on a warm server (for ours: the pre-heated kernel is ready),
  each load in a fresh browser context (no HTTP cache). Plain Voila serves the same notebook with its
  defaults in the same run.
* upload: the file chooser gets all 8124 rows -> the status line says they were scored and the grid
  has painted (two animation frames later). Median of 3 uploads.

Requests leaving 127.0.0.1 are aborted for both servers (the page must work offline; this also spares
plain Voila the CDN's network timeouts).

``run() -> list[dict(figure, naive, ours, ratio, goal)]`` for benchmarks/run_all.py; runnable alone:
``.venv/bin/python benchmarks/bench_dashboard.py``. Needs Debian's chromium and the real dataset
(MUSHROOM_DATA or ../shared/data/mushrooms.csv).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from common import dataset_path, trained_home  # noqa: E402
from helpers.server import CHROMIUM_ARGS, ServerProcess, chromium_path  # noqa: E402

READY = ".mushroom-upload:not([disabled])"
LOADS, WARMUP = 3, 1
POOL_LOG = "Kernel pool of app.ipynb is filled"
PREHEAT_SETTLE_S = 8.0  # after the pool's kernel starts, the notebook still runs in it


def _offline(context) -> None:
    local = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local)
                  else route.abort())


def _load_once(browser, url: str) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    _offline(context)
    page = context.new_page()
    try:
        start = time.perf_counter()
        page.goto(url, wait_until="commit", timeout=120_000)
        page.wait_for_selector(READY, state="visible", timeout=120_000)
        return time.perf_counter() - start
    finally:
        context.close()


def _upload_once(browser, url: str, csv: Path, rows: int, settle) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    _offline(context)
    page = context.new_page()
    try:
        page.goto(url, timeout=120_000)
        page.wait_for_selector(READY, state="visible", timeout=120_000)
        page.wait_for_selector(".mushroom-grid", state="visible", timeout=60_000)  # the empty grid is up
        settle()  # a person takes a few seconds to pick the file; the server finishes its own work
        with page.expect_file_chooser() as chooser:
            page.click(".mushroom-upload")
        start = time.perf_counter()
        chooser.value.set_files(str(csv))
        page.wait_for_function(f"document.querySelector('.mushroom-app') && "
                               f"document.querySelector('.mushroom-app').innerText.includes('{rows} rows scored')",
                               timeout=60_000, polling="raf")
        page.wait_for_selector(".mushroom-grid canvas", state="visible", timeout=60_000)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        return time.perf_counter() - start
    finally:
        context.close()


def _series(server: ServerProcess, browser, *, preheated: bool) -> list[float]:
    times = []
    for i in range(WARMUP + LOADS):
        if preheated:  # a warm server: the pool's kernel has started and run the notebook
            server.wait_for_log(POOL_LOG, count=i + 1, timeout=120)
            time.sleep(PREHEAT_SETTLE_S)
        t = _load_once(browser, server.url)
        if i >= WARMUP:
            times.append(t)
    return times


def _uploads(server: ServerProcess, browser, csv: Path, rows: int, *, preheated: bool) -> list[float]:
    """Upload timings; before choosing the file the server is let settle the same way for both servers
    (for ours that is the pool refilling its pre-heated kernel after the page took one)."""
    times = []
    done = server.log_text().count(POOL_LOG)

    def settle():
        if preheated:
            server.wait_for_log(POOL_LOG, count=done + 1, timeout=120)
        time.sleep(PREHEAT_SETTLE_S)

    for _ in range(LOADS):
        times.append(_upload_once(browser, server.url, csv, rows, settle))
        done += 1
    return times


def run() -> list[dict]:
    """Measure both servers in one run; one dict per figure."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if not exe:
        raise SystemExit("bench_dashboard: chromium is not installed (apt-get install chromium)")
    data = dataset_path("bench_dashboard")
    rows = sum(1 for line in data.read_text().splitlines()[1:] if line.strip())
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        base = Path(tmp)
        home = trained_home(base, data)
        os.environ["MUSHROOM_REPORT_ON_PROMOTE"] = "0"
        ours = ServerProcess.dashboard(home, log_path=base / "ours.log", cull_seconds=20)
        plain = ServerProcess.plain_voila(home, log_path=base / "plain.log")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                with ours:
                    tti_ours = _series(ours, browser, preheated=True)
                    up_ours = _uploads(ours, browser, data, rows, preheated=True)
                with plain:
                    tti_plain = _series(plain, browser, preheated=False)
                    up_plain = _uploads(plain, browser, data, rows, preheated=False)
            finally:
                browser.close()
    med = statistics.median
    load = os.getloadavg()
    results = []
    for figure, naive, mine, goal in (
            ("dashboard time to interactive (s, median of 3 warm loads)", tti_plain, tti_ours, "<= 3 s"),
            (f"dashboard upload of {rows} rows to painted grid (s, median of 3)", up_plain, up_ours, "<= 2 s")):
        results.append({"figure": figure, "naive": round(med(naive), 3), "ours": round(med(mine), 3),
                        "ratio": round(med(naive) / med(mine), 2) if med(mine) else None, "goal": goal,
                        "naive_runs": [round(t, 3) for t in naive], "ours_runs": [round(t, 3) for t in mine],
                        "load_1_5_min": [round(x, 2) for x in load[:2]]})
    return results


def main() -> int:
    results = run()
    for r in results:
        print(f"{r['figure']}: plain Voila {r['naive']:.2f}s, ours {r['ours']:.2f}s "
              f"(x{r['ratio']}), goal {r['goal']}; runs plain {r['naive_runs']} ours {r['ours_runs']}; "
              f"load {r['load_1_5_min']} (1/5 min, shared machine)")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
