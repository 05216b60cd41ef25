"""A room full of people: N headless-Chromium visitors open the dashboard together on a warm server.

For N = 1, 5, 10, 20 (a fresh ``mushroom dashboard`` per N, its pre-heated pool filled and settled), from the
common start, p50 / p90 / max of three moments of each visitor:

* **upload usable**: an enabled upload button is on the page (the first-paint bar's, or the widget's);
  the visitor then clicks "Try a sample" at once;
* **widgets ready**: the upload *widget* is enabled (Voila's bundle, the kernel's websocket and the widgets
  have loaded);
* **sample scored**: the visitor's sample rows are in the grid (what the visitor came for).

Also the p50 of the page's first byte, the median RSS of the server's kernels once every page is usable,
and the kernels left 60 s after every tab closed. The load average (1 and 5 minutes)
is recorded before and after each burst (the machine is shared: compare figures taken at similar load).
The browsers run on the same machine, one Chromium with one context (no shared cache) per visitor.

``.venv/bin/python benchmarks/bench_burst.py [N ...]`` prints one JSON line per N and a table. Server
settings come from the environment (MUSHROOM_DASHBOARD_POOL, MUSHROOM_DASHBOARD_MAX_KERNELS; the row says
which pool and cap were in force).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
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
from helpers.server import (  # noqa: E402
    CHROMIUM_ARGS,
    POOL_FILLED,
    ServerProcess,
    chromium_path,
    rss_mib,
)

USABLE = "#mushroom-first .mushroom-first-upload, .mushroom-app .mushroom-upload:not([disabled])"
READY = ".mushroom-app .mushroom-upload:not([disabled])"
CLICK_SAMPLE = ("() => (document.querySelector('#mushroom-first .mushroom-first-sample') || "
                "document.querySelector('.mushroom-app .mushroom-sample')).click()")
SCORED = ("() => { const a = document.querySelector('.mushroom-app'); "
          "return !!a && a.textContent.includes('rows scored'); }")
SHOWN = "s => { const e = document.querySelector(s); return !!e && e.offsetParent !== null; }"
#: the pages are polled every POLL_MS (Playwright's default polls every animation frame: ten pages polling at
#: 60 Hz used CPU the visitors' own pages needed, and a real visitor does not poll)
POLL_MS = 100
SIZES = (1, 5, 10, 20)
QUIET_CPU_S = 0.05    # a warm server: its kernels used less than this much CPU in the last second
QUIET_WITHIN_S = 120.0
FREED_WITHIN_S = 60.0
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")


def load1() -> float:
    return loadavg()[0]


def loadavg() -> tuple[float, float]:
    """The 1- and 5-minute load averages (what `uptime` shows)."""
    with open("/proc/loadavg") as fh:
        one, five = fh.read().split()[:2]
    return float(one), float(five)


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        except (OSError, ValueError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def server_limits(server: ServerProcess) -> dict:
    """The pool, cap and delays the server chose (it prints them as JSON on its first line)."""
    match = re.search(r"\(home [^;]*; (\{.*?\}); Ctrl-C stops\)", server.log_text())
    return json.loads(match.group(1)) if match else {}


def wait_until_warm(server: ServerProcess) -> float:
    """Wait until the pool's kernels have run the notebook (their CPU use falls quiet); seconds waited."""
    start = time.monotonic()
    before = _cpu_seconds(server.kernel_pids() + [server.proc.pid])
    while time.monotonic() - start < QUIET_WITHIN_S:
        time.sleep(1.0)  # sampling CPU use, not synchronising
        now = _cpu_seconds(server.kernel_pids() + [server.proc.pid])
        if now - before < QUIET_CPU_S:
            break
        before = now
    return round(time.monotonic() - start, 1)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _visit(browser, url: str, start: float):
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    await context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(LOCAL) else r.abort())
    page = await context.new_page()
    try:
        await page.goto(url, wait_until="commit", timeout=240_000)
        first_byte = time.perf_counter() - start
        await page.wait_for_function(SHOWN, arg=USABLE, polling=POLL_MS, timeout=240_000)
        usable = time.perf_counter() - start
        await page.evaluate(CLICK_SAMPLE)
        await page.wait_for_function(SHOWN, arg=READY, polling=POLL_MS, timeout=240_000)
        ready = time.perf_counter() - start
        await page.wait_for_function(SCORED, polling=POLL_MS, timeout=240_000)
        return {"usable": usable, "ready": ready, "scored": time.perf_counter() - start,
                "first_byte": first_byte}, context
    except Exception as exc:  # a visitor who never got a usable page is counted, not hidden
        return exc, context


async def _burst(exe: str, server: ServerProcess, n: int) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            before = len(server.kernel_pids())
            start = time.perf_counter()
            results = await asyncio.gather(*[_visit(browser, server.url, start) for _ in range(n)])
            phases = [r for r, _ in results if isinstance(r, dict)]
            failures = [repr(r)[:200] for r, _ in results if not isinstance(r, dict)]
            pids = server.kernel_pids()
            rss = [m for m in (rss_mib(pid) for pid in pids) if m is not None]
            for _, context in results:
                await context.close()
        finally:
            await browser.close()
    closed = time.monotonic()
    left = len(server.kernel_pids())
    while time.monotonic() - closed < FREED_WITHIN_S:
        await asyncio.sleep(2)  # sampling the kernel count, not synchronising
        left = len(server.kernel_pids())
    row = {"n": n, "ok": len(phases), "failures": failures}
    for moment in ("usable", "ready", "scored"):
        times = [r[moment] for r in phases]
        row.update({f"{moment}_p50_s": round(statistics.median(times), 2) if times else None,
                    f"{moment}_p90_s": round(nearest_rank(times, 0.9), 2) if times else None,
                    f"{moment}_max_s": round(max(times), 2) if times else None})
    return {**row, "p50_first_byte_s": round(statistics.median(r["first_byte"] for r in phases), 2) if phases else None,
            "kernels_before": before, "kernels_at_peak": len(pids),
            "median_kernel_rss_mib": round(statistics.median(rss), 1) if rss else None,
            "kernels_60s_after_close": left}


def run(sizes=SIZES) -> list[dict]:
    exe = chromium_path()
    if not exe:
        raise SystemExit("bench_burst: chromium is not installed (apt-get install chromium)")
    data = dataset_path("bench_burst")
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        base = Path(tmp)
        home = trained_home(base, data)
        os.environ["MUSHROOM_REPORT_ON_PROMOTE"] = "0"
        for n in sizes:
            server = ServerProcess.dashboard(home, log_path=base / f"burst-{n}.log")
            with server:
                if not server.wait_for_log(POOL_FILLED, timeout=180):
                    raise SystemExit(f"bench_burst: the pool never filled: {server.log_tail()}")
                warmed = wait_until_warm(server)
                load = loadavg()
                row = asyncio.run(_burst(exe, server, n))
                limits = server_limits(server)
                row.update(pool=limits.get("pool"), max_kernels=limits.get("max_kernels"), warm_wait_s=warmed,
                           load1_before=load[0], load5_before=load[1], load1_after=load1())
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or list(SIZES)
    rows = run(sizes)
    print("\nSeconds from the burst's start, p50 / p90 / max: upload usable (first-paint bar or widget), widgets ready "
          "(the upload widget enabled), sample scored (the visitor clicked 'Try a sample' as soon as it was usable).")
    print("| N | upload usable | widgets ready | sample scored | ok | p50 first byte s | median kernel RSS MiB | "
          "kernels 60 s after close (before) | pool / cap | load 1 min before→after (5 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = " | ".join(f"{r[m + '_p50_s']} / {r[m + '_p90_s']} / {r[m + '_max_s']}"
                           for m in ("usable", "ready", "scored"))
        print(f"| {r['n']} | {cells} | {r['ok']}/{r['n']} | "
              f"{r['p50_first_byte_s']} | {r['median_kernel_rss_mib']} | "
              f"{r['kernels_60s_after_close']} ({r['kernels_before']}) | {r['pool']} / {r['max_kernels']} | "
              f"{r['load1_before']}→{r['load1_after']} ({r['load5_before']}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
