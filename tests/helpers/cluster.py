"""A real dask cluster on loopback for the tests and benchmarks: `dask scheduler` and N `dask worker`
processes, each in its own session, stopped (their process groups) when the context ends.

    with DaskCluster(workers=2, log_dir=tmp_path) as cluster:
        env = {"DASK_SCHEDULER_ADDRESS": cluster.address}
        cluster.executed()   # {worker address: tasks it has run}
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from mushroom_lib.core.ports import free_port


def dask_command() -> list[str]:
    """The venv's `dask` command (dask[distributed], the `dask` extra)."""
    script = Path(sys.executable).with_name("dask")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dask"]


class DaskCluster:
    """``dask scheduler`` + ``workers`` × ``dask worker`` (one thread each) on 127.0.0.1."""

    def __init__(self, workers: int = 2, *, log_dir: str | Path, threads: int = 1, start_timeout: float = 90.0):
        self.workers, self.threads, self.start_timeout = workers, threads, start_timeout
        self.log_dir = Path(log_dir)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self._logs: list = []
        self.client = None

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop)
        self._logs.append(log)
        self.procs.append(subprocess.Popen([*dask_command(), *args], stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True))

    def __enter__(self) -> DaskCluster:
        from distributed import Client

        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--no-dashboard"])
            for i in range(self.workers):
                self._start(f"worker{i}", ["worker", self.address, "--host", "127.0.0.1", "--nworkers", "1",
                                           "--nthreads", str(self.threads), "--no-dashboard",
                                           "--memory-limit", "2GiB", "--name", f"w{i}"])
            # Client retries the connection until its timeout; wait_for_workers returns once all have joined
            self.client = Client(self.address, timeout=self.start_timeout)
            self.client.wait_for_workers(self.workers, timeout=self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def executed(self) -> dict[str, int]:
        """Tasks each worker has run so far."""
        return self.client.run(lambda dask_worker: dask_worker.state.executed_count)

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                self.client.close(timeout=10)
            self.client = None
        for proc in reversed(self.procs):  # workers first, then the scheduler
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __exit__(self, *exc) -> None:
        self.stop()
