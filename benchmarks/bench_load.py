"""A load test with Locust against `mushroom api --workers 2` on loopback: p50/p99 and errors at 50 and 200
simulated users, beside the seed-style anchor of bench_api.

* mixed: ``MixedUser`` of benchmarks/locust_users.py (one-row /predict, one /feedback per 50 predictions,
  0.5-1.5 s between requests) at USERS = 50 and 200, each for SECONDS (headless, spawned at SPAWN_RATE/s).
  The server has a key (feedback sends it) and K = 100, so a retrain runs now and then during the run,
  in the home's background worker, as it would for a busy team;
* seed protocol: ``SeedStyleUser`` (predictions only) at 200 users against ours and against the anchor
  (bench_api's seed-style FastAPI service), both with 2 uvicorn workers, in the same run.

Bounded: every Locust run stops by itself after SECONDS (its process is killed at SECONDS + 60), loopback
only. ``run() -> list[dict]`` for benchmarks/run_all.py; alone: ``.venv/bin/python benchmarks/bench_load.py
[--seconds 30]``. The clients (Locust, one process) and the servers share the machine's cores: the load
average is reported with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_api import start_anchor
from common import dataset_path, trained_home
from helpers.server import ServerProcess

USERS = (50, 200)
SECONDS = 30
SPAWN_RATE = 50
WORKERS = 2
LOCUSTFILE = ROOT / "benchmarks" / "locust_users.py"


def locust_bin() -> str:
    """The venv's locust (the `bench` extra), else a sentence."""
    path = Path(sys.executable).with_name("locust")
    if path.exists():
        return str(path)
    found = shutil.which("locust")
    if not found:
        raise SystemExit("bench_load: locust is missing; pip install -e '.[bench]' (make install does)")
    return found


def write_rows(data: Path, out: Path, n: int = 400) -> Path:
    """``n`` dataset rows (with class) and their seed-protocol integer encodings, as JSON for the users."""
    import pandas as pd

    df = pd.read_csv(data, dtype=str)
    features = [c for c in df.columns if c != "class"]
    codes = {c: sorted(df[c].unique()) for c in features}
    sample = df.sample(n=min(n, len(df)), random_state=0)
    observations = [[codes[c].index(row[c]) for c in features] for _, row in sample.iterrows()]
    out.write_text(json.dumps({"rows": sample.to_dict("records"), "observations": observations}))
    return out


def run_locust(port: int, users: int, user_class: str, folder: Path, rows: Path, key: str,
               seconds: int) -> dict:
    """One headless Locust run; returns {name: stats row} from its CSV (``Aggregated`` included)."""
    prefix = folder / f"locust-{user_class}-{users}-{port}"
    cmd = [locust_bin(), "-f", str(LOCUSTFILE), user_class, "--headless", "--only-summary",
           "-u", str(users), "-r", str(min(users, SPAWN_RATE)), "-t", f"{seconds}s", "--stop-timeout", "5",
           "--host", f"http://127.0.0.1:{port}", "--csv", str(prefix), "--loglevel", "WARNING"]
    env = {**os.environ, "LOAD_ROWS": str(rows), "LOAD_API_KEY": key}
    res = subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True, timeout=seconds + 60, check=False)
    stats = Path(f"{prefix}_stats.csv")
    if not stats.exists():
        raise RuntimeError(f"locust wrote no statistics (exit {res.returncode}): {res.stderr[-400:]}")
    with stats.open() as fh:
        return {row["Name"]: row for row in csv.DictReader(fh)}


def _figures(stats: dict, name: str) -> dict:
    row = stats[name]
    return {"n": int(row["Request Count"]), "errors": int(row["Failure Count"]), "p50": float(row["50%"]),
            "p99": float(row["99%"]), "rps": float(row["Requests/s"])}


def measure(folder: Path, seconds: int = SECONDS) -> dict:
    data = dataset_path("bench_load")
    home = trained_home(folder, data)
    rows = write_rows(data, folder / "rows.json")
    key = secrets.token_urlsafe(16)
    env = {"MUSHROOM_REPORT_ON_PROMOTE": "0", "DO_NOT_TRACK": "1", "MUSHROOM_API_KEY": key, "MUSHROOM_K": "100"}
    out: dict = {"load_before": os.getloadavg()}
    with ServerProcess.api(home, workers=WORKERS, env=env, log_path=folder / "api.log") as api:
        for users in USERS:
            stats = run_locust(api.port, users, "MixedUser", folder, rows, key, seconds)
            out[f"mixed{users}"] = {n: _figures(stats, n) for n in ("/predict", "/feedback", "Aggregated")}
        stats = run_locust(api.port, max(USERS), "SeedStyleUser", folder, rows, key, seconds)
        out["seed_ours"] = _figures(stats, "/predict (seed protocol)")
    out["load_mid"] = os.getloadavg()
    anchor, port = start_anchor(folder, data, workers=WORKERS)
    try:
        stats = run_locust(port, max(USERS), "SeedStyleUser", folder, rows, key, seconds)
        out["seed_anchor"] = _figures(stats, "/predict (seed protocol)")
    finally:
        anchor.terminate()
        anchor.wait(30)
    out["load_after"] = os.getloadavg()
    return out


def run(seconds: int = SECONDS) -> list[dict]:
    """Figures for benchmarks/run_all.py."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        m = measure(Path(tmp), seconds)
    load = (f"load {m['load_before'][0]:.1f} -> {m['load_mid'][0]:.1f} -> {m['load_after'][0]:.1f} on "
            f"{os.cpu_count()} cores")
    rows = []
    for users in USERS:
        p, f, a = (m[f"mixed{users}"][n] for n in ("/predict", "/feedback", "Aggregated"))
        rows += [
            {"figure": f"Locust {users} users, /predict p50 / p99 ms ({p['n']} requests, {p['rps']:.0f}/s; "
                       f"mushroom api --workers {WORKERS}; {seconds} s; {load})",
             "naive": None, "ours": f"{p['p50']:g} / {p['p99']:g}", "ratio": None, "goal": "p99 <= 100 ms"},
            {"figure": f"Locust {users} users, /feedback p50 / p99 ms ({f['n']} requests; K = 100)",
             "naive": None, "ours": f"{f['p50']:g} / {f['p99']:g}", "ratio": None, "goal": "information"},
            {"figure": f"Locust {users} users, errors of {a['n']} requests", "naive": None, "ours": a["errors"],
             "ratio": None, "goal": "0"},
        ]
    s, n = m["seed_ours"], m["seed_anchor"]
    rows += [
        {"figure": f"Locust {max(USERS)} users, seed protocol /predict p50 / p99 ms (anchor: the seed-style "
                   f"service; both {WORKERS} workers)", "naive": f"{n['p50']:g} / {n['p99']:g}",
         "ours": f"{s['p50']:g} / {s['p99']:g}", "ratio": round(s["p99"] / n["p99"], 2) if n["p99"] else None,
         "goal": "p99 below the anchor's"},
        {"figure": f"Locust {max(USERS)} users, seed protocol errors (of {n['n']} / {s['n']} requests)",
         "naive": n["errors"], "ours": s["errors"], "ratio": None, "goal": "0"},
    ]
    return rows


def main() -> int:
    from bench_speed import print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=SECONDS, help=f"each Locust run (default {SECONDS})")
    args = parser.parse_args()
    print_table(run(args.seconds))
    print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
