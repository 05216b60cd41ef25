"""A room full of people: N headless-Chromium visitors open the dashboard together on a warm server.

For N = 1, 5, 10, 20 (a fresh ``mushroom dashboard`` per N, its pre-heated pool filled and settled): the
time from the common start until each visitor's upload widget is enabled (p50, p90, max), the median RSS of
the server's kernels once every page is usable, and the kernels left 60 s after every tab closed. The
1-minute load average is recorded before each burst (the machine is shared). The browsers run on the
same machine, one Chromium with one context (no shared cache) per visitor.

``.venv/bin/python benchmarks/bench_burst.py [N ...]`` prints one JSON line per N and a table. Extra
server settings come from the environment (MUSHROOM_DASHBOARD_POOL, MUSHROOM_DASHBOARD_MAX_KERNELS).
"""

from __future__ import annotations

import asyncio
import json
import math
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
from helpers.server import CHROMIUM_ARGS, POOL_FILLED, ServerProcess, chromium_path, rss_mib  # noqa: E402

READY = ".mushroom-upload:not([disabled])"
SIZES = (1, 5, 10, 20)
SETTLE_S = 8.0        # after the pool reports filled, the notebook still runs in its kernel
FREED_WITHIN_S = 60.0
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")


def load1() -> float:
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _visit(browser, url: str, start: float):
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    await context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(LOCAL) else r.abort())
    page = await context.new_page()
    try:
        await page.goto(url, wait_until="commit", timeout=240_000)
        await page.wait_for_selector(READY, state="visible", timeout=240_000)
        return time.perf_counter() - start, context
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
            times = [r for r, _ in results if isinstance(r, float)]
            failures = [repr(r)[:200] for r, _ in results if not isinstance(r, float)]
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
    return {"n": n, "ok": len(times), "failures": failures,
            "p50_s": round(statistics.median(times), 2) if times else None,
            "p90_s": round(nearest_rank(times, 0.9), 2) if times else None,
            "max_s": round(max(times), 2) if times else None,
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
                time.sleep(SETTLE_S)  # a warm server: the pool's kernels have run the notebook
                load = load1()
                row = asyncio.run(_burst(exe, server, n))
                row["load1_before"] = load
                row["load1_after"] = load1()
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or list(SIZES)
    rows = run(sizes)
    print("\n| N | p50 s | p90 s | max s | ok | median kernel RSS MiB | kernels 60 s after close (before) | load |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['p50_s']} | {r['p90_s']} | {r['max_s']} | {r['ok']}/{r['n']} | "
              f"{r['median_kernel_rss_mib']} | {r['kernels_60s_after_close']} ({r['kernels_before']}) | "
              f"{r['load1_before']}→{r['load1_after']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
