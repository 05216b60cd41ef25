"""REST API speed over loopback: one-row /predict latency, throughput beside a seed-style anchor, and
latency while a retrain runs.

* latency: one kept-alive connection, one-row JSON ``POST /predict``, p50/p99 over LATENCY_N requests after
  a warm-up, against `mushroom api` (1 worker).
* throughput: 8 client threads, each on its own kept-alive connection, for THROUGHPUT_S seconds, against
  `mushroom api` (1 worker) and against the anchor in the same run: the seed's style of service (FastAPI,
  a pydantic body of 22 label-encoded integers, a pandas DataFrame per request, a scikit-learn
  StandardScaler -> PCA(3) -> KNN pipeline fitted at start-up), also 1 uvicorn worker.
* during a retrain: one client sends one-row /predict back to back while a retrain runs and its model is
  swapped in; every request from the trigger until the new version answers (plus one second) counts; the
  slowest and the p99 are reported. Two triggers: 10 feedback rows over HTTP (the retrain runs wherever
  ``submit_feedback(wait=False)`` puts it), and `mushroom train` in another process (the server only swaps).
* server CPU per request (from /proc, during the throughput run), ours and the anchor's: the figure the
  machine's other load moves least.

``run() -> list[dict(figure, naive, ours, ratio, goal)]`` for benchmarks/run_all.py; runnable alone:
``.venv/bin/python benchmarks/bench_api.py``. The machine's load (``os.getloadavg``) is reported with it:
clients and servers share its cores with whatever else runs.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from common import dataset_path, trained_home  # noqa: E402
from helpers.server import ServerProcess  # noqa: E402

from mushroom_lib.core.ports import free_port  # noqa: E402

LATENCY_N, WARMUP = 2000, 200
THROUGHPUT_S, THREADS = 5.0, 8

ANCHOR = textwrap.dedent('''
    """The seed's style of model service: a DataFrame per request through a Pipeline fitted at start-up."""
    import pandas as pd
    from fastapi import FastAPI
    from pydantic import BaseModel
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import LabelEncoder, StandardScaler

    data = pd.read_csv({data!r}, dtype=str)
    features = [c for c in data.columns if c != "class"]
    X = pd.DataFrame({{c: LabelEncoder().fit_transform(data[c]) for c in features}})
    model = make_pipeline(StandardScaler(), PCA(3), KNeighborsClassifier(10, weights="distance"))
    model.fit(X, data["class"])
    app = FastAPI()

    class Observation(BaseModel):
        observation: list[int]

    @app.post("/predict")
    def predict(body: Observation):
        frame = pd.DataFrame([body.observation], columns=features)
        return {{"prediction": "Poisonous" if model.predict(frame)[0] == "p" else "Edible"}}
''')


class Client:
    """One kept-alive HTTP/1.1 connection to 127.0.0.1:port."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: bytes) -> tuple[float, bytes]:
        start = time.perf_counter()
        self.conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        took = time.perf_counter() - start
        if resp.status != 200:
            raise RuntimeError(f"{path} answered {resp.status}: {data[:200]!r}")
        return took, data

    def close(self) -> None:
        self.conn.close()


def latency(port: int, path: str, body: bytes, n: int = LATENCY_N) -> list[float]:
    c = Client(port)
    try:
        for _ in range(WARMUP):
            c.post(path, body)
        return [c.post(path, body)[0] for _ in range(n)]
    finally:
        c.close()


def throughput(port: int, path: str, body: bytes, seconds: float = THROUGHPUT_S) -> float:
    """Requests per second with THREADS clients on kept-alive connections."""
    counts = [0] * THREADS
    ready = threading.Barrier(THREADS + 1)
    go = threading.Event()
    window = {"end": 0.0}

    def work(i: int) -> None:
        c = Client(port)
        try:
            c.post(path, body)  # connect and warm up
            ready.wait()
            go.wait()
            while time.perf_counter() < window["end"]:
                c.post(path, body)
                counts[i] += 1
        finally:
            c.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    ready.wait()
    began = time.perf_counter()
    window["end"] = began + seconds
    go.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - began)


def during_retrain(port: int, body: bytes, trigger, deadline_s: float = 180.0) -> dict:
    """Predict back to back while ``trigger()`` makes a retrain run; latencies until the new version answers."""
    c = Client(port)
    times, ended, version0 = [], [], json.loads(c.post("/predict", body)[1])["model_version"]
    threading.Thread(target=trigger, daemon=True).start()
    began = time.perf_counter()
    changed_at = None
    try:
        while time.perf_counter() - began < deadline_s:
            took, data = c.post("/predict", body)
            times.append(took)
            ended.append(time.perf_counter())
            if changed_at is None and json.loads(data)["model_version"] != version0:
                changed_at, first_new = ended[-1], took
            if changed_at is not None and time.perf_counter() - changed_at > 1.0:
                break
    finally:
        c.close()
    if changed_at is None:
        raise RuntimeError(f"the retrain did not promote a new version within {deadline_s:.0f}s")
    slowest = max(range(len(times)), key=times.__getitem__)
    ordered = sorted(times)
    return {"max": ordered[-1], "p99": ordered[int(0.99 * (len(times) - 1))], "n": len(times),
            "seconds": changed_at - began, "over_50ms": sum(t > 0.050 for t in times),
            # where the slowest request ended, from the first answer with the new version (negative: before)
            "max_from_swap": ended[slowest] - changed_at, "first_new": first_new}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served(pid: int, port: int, body: bytes) -> tuple[float, float]:
    """(requests/s, server CPU seconds per request) over one throughput window."""
    before = cpu_seconds(pid)
    start = time.perf_counter()
    rps = throughput(port, "/predict", body)
    requests = rps * (time.perf_counter() - start)
    return rps, (cpu_seconds(pid) - before) / max(requests, 1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def start_anchor(folder: Path, data: Path, workers: int = 1) -> tuple[subprocess.Popen, int]:
    script = folder / "seed_style_api.py"
    script.write_text(ANCHOR.format(data=str(data)))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "seed_style_api:app", "--host", "127.0.0.1",
                             "--port", str(port), "--no-access-log", "--log-level", "warning",
                             "--workers", str(workers)], cwd=folder,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            Client(port).post("/predict", json.dumps({"observation": [0] * 22}).encode())
            return proc, port
        except (OSError, http.client.HTTPException):
            if proc.poll() is not None:
                raise RuntimeError("the anchor server exited") from None
            time.sleep(0.2)  # polling while the anchor starts
    proc.kill()
    raise TimeoutError("the anchor server did not start")


def measure(folder: Path) -> dict:
    import pandas as pd

    data = dataset_path("bench_api")
    home = trained_home(folder, data)
    df = pd.read_csv(data, dtype=str)
    features = [c for c in df.columns if c != "class"]
    ours_body = json.dumps({"rows": [df[features].iloc[0].to_dict()]}).encode()
    feedback = json.dumps({"rows": df.iloc[1000:1010].to_dict("records")}).encode()
    anchor_body = json.dumps({"observation": [0] * 22}).encode()
    out: dict = {"load_before": os.getloadavg()}
    env = {"MUSHROOM_REPORT_ON_PROMOTE": "0", "DO_NOT_TRACK": "1"}
    with ServerProcess.api(home, workers=1, env=env, log_path=folder / "api.log") as api:
        lat = latency(api.port, "/predict", ours_body)
        out["p50"], out["p99"] = pct(lat, 0.5), pct(lat, 0.99)
        out["ours_rps"], out["ours_cpu"] = served(api.proc.pid, api.port, ours_body)
        anchor, port = start_anchor(folder, data)
        try:
            alat = latency(port, "/predict", anchor_body)
            out["anchor_p50"], out["anchor_p99"] = pct(alat, 0.5), pct(alat, 0.99)
            out["anchor_rps"], out["anchor_cpu"] = served(anchor.pid, port, anchor_body)
        finally:
            anchor.terminate()
            anchor.wait(30)
        out["retrain"] = during_retrain(api.port, ours_body, lambda: Client(api.port).post("/feedback", feedback))
        out["retrain_cli"] = during_retrain(api.port, ours_body, lambda: subprocess.run(
            [sys.executable, "-m", "mushroom_lib.cli", "--home", str(home), "train"], env={**os.environ, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True))
    out["load_after"] = os.getloadavg()
    return out


def _when(r: dict) -> str:
    return (f"new version served after {r['seconds']:.1f} s; p99 {r['p99'] * 1000:.1f} ms; {r['over_50ms']} over "
            f"50 ms; the slowest ended {r['max_from_swap'] * 1000:+.0f} ms from the first new-version answer, "
            f"which took {r['first_new'] * 1000:.1f} ms")


def run() -> list[dict]:
    """Figures for benchmarks/run_all.py."""
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        m = measure(Path(tmp))
    ms = 1000.0
    load = f"load {m['load_before'][0]:.1f} -> {m['load_after'][0]:.1f} on {os.cpu_count()} cores"
    r, rc = m["retrain"], m["retrain_cli"]
    return [
        {"figure": f"API one-row /predict p50, ms (kept-alive, {LATENCY_N} requests; {load})",
         "naive": round(m["anchor_p50"] * ms, 2), "ours": round(m["p50"] * ms, 2),
         "ratio": round(m["p50"] / m["anchor_p50"], 2), "goal": "<= 2 ms"},
        {"figure": "API one-row /predict p99, ms", "naive": round(m["anchor_p99"] * ms, 2),
         "ours": round(m["p99"] * ms, 2), "ratio": round(m["p99"] / m["anchor_p99"], 2), "goal": "<= 10 ms"},
        {"figure": f"API throughput, requests/s ({THREADS} kept-alive client threads, 1 worker each)",
         "naive": round(m["anchor_rps"]), "ours": round(m["ours_rps"]),
         "ratio": round(m["ours_rps"] / m["anchor_rps"], 1), "goal": ">= 5x the anchor"},
        {"figure": "API server CPU per one-row /predict, ms (user+system of the server process during the "
                   "throughput run; less sensitive to other load)", "naive": round(m["anchor_cpu"] * ms, 2),
         "ours": round(m["ours_cpu"] * ms, 2), "ratio": round(m["anchor_cpu"] / m["ours_cpu"], 1),
         "goal": "information (ratio = anchor / ours)"},
        {"figure": f"API /predict during a retrain via /feedback: slowest of {r['n']} requests, ms ({_when(r)})",
         "naive": None, "ours": round(r["max"] * ms, 1), "ratio": None, "goal": "<= 50 ms"},
        {"figure": f"API /predict during a retrain in another process (`mushroom train`): slowest of {rc['n']} "
                   f"requests, ms ({_when(rc)})", "naive": None, "ours": round(rc["max"] * ms, 1), "ratio": None,
         "goal": "<= 50 ms"},
    ]


def main() -> int:
    from bench_speed import print_table

    print_table(run())
    print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
