"""`mushroom predict 'parts/*.csv' --engine dask` on a real cluster: `dask scheduler` and two `dask worker`
processes on loopback, reached through DASK_SCHEDULER_ADDRESS (dask's own variable), give the same bytes as
the local engine on the same rows in one file, and the partitions ran on the workers.

Needs dask[distributed] (the `dask` extra, installed by `make install`): missing, the test fails.
"""

from __future__ import annotations

import pandas as pd
import pytest
from helpers.cli import run
from helpers.cluster import DaskCluster

PARTS = 8

pytestmark = pytest.mark.slow


def _write_parts(real_data, folder, whole) -> int:
    """PARTS files of 4,000 rows resampled from the dataset (a header each), and ``whole``: all of them in
    one file, in name order (what the local engine scores)."""
    df = pd.read_csv(real_data, dtype=str)
    folder.mkdir()
    parts = [df.sample(n=4000, replace=True, random_state=i) for i in range(PARTS)]
    for i, part in enumerate(parts):
        part.to_csv(folder / f"part{i:02d}.csv", index=False)
    pd.concat(parts).to_csv(whole, index=False)
    return sum(map(len, parts))


def test_dask_cluster_gives_the_local_engines_bytes(trained_home, real_data, tmp_path):
    import distributed  # noqa: F401  (the extra: an ImportError fails the test)

    rows = _write_parts(real_data, tmp_path / "parts", tmp_path / "whole.csv")
    pattern = str(tmp_path / "parts" / "*.csv")
    local = run("--home", str(trained_home), "predict", str(tmp_path / "whole.csv"), "-o", str(tmp_path / "local.csv"))
    assert local.returncode == 0, local.stderr
    with DaskCluster(workers=2, log_dir=tmp_path / "cluster") as cluster:
        assert len(cluster.client.scheduler_info()["workers"]) == 2
        before = sum(cluster.executed().values())
        res = run("--home", str(trained_home), "predict", pattern, "--engine", "dask",
                  "-o", str(tmp_path / "dask.csv"), env_extra={"DASK_SCHEDULER_ADDRESS": cluster.address})
        assert res.returncode == 0, res.stderr
        ran = sum(cluster.executed().values()) - before
    assert ran >= PARTS, f"the workers ran {ran} tasks for {PARTS} partitions: the cluster was not used"
    out = (tmp_path / "dask.csv").read_bytes()
    assert out == (tmp_path / "local.csv").read_bytes()
    assert out.count(b"\n") == rows + 1  # one header, every row once
