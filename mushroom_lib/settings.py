"""Paths and knobs in one place. Everything lives under one home folder (MUSHROOM_HOME, else the cwd).

Standard library only and no file reads: every process imports this first, the CLI's `--help` too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """Where files live and how the model is trained and guarded."""

    home: Path
    k: int = 10                      #: feedback rows between retrains
    seed: int = 42
    test_size: float = 0.2           #: holdout share of the stratified split
    n_components: int = 3
    accuracy_margin: float = 0.005   #: the gate refuses a candidate losing more accuracy than this
    size_cap_bytes: int = 200 * 1024 * 1024   #: CLI input cap
    upload_cap_bytes: int = 20 * 1024 * 1024  #: dashboard upload cap
    report_on_promote: bool = True   #: build an Evidently report in the background after a promotion
    data_source: str | None = None   #: MUSHROOM_DATA
    reports_keep: int = 50           #: HTML reports and executed notebooks (per kind) kept (MUSHROOM_REPORTS_KEEP)
    worker_idle_seconds: float = 300.0  #: the background worker exits after this long with nothing to do
    retrain_timeout: float = 900.0    #: how long a waiting submit_feedback waits for its retrain's outcome
    keep_rejected_models: int = 3     #: refused candidates keep their model file for the newest N only

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def models_dir(self) -> Path:
        return self.artifacts_dir / "models"

    @property
    def champion_path(self) -> Path:
        return self.artifacts_dir / "champion.json"

    @property
    def dataset_path(self) -> Path:
        return self.data_dir / "mushrooms.csv"

    @property
    def split_path(self) -> Path:
        return self.data_dir / "split.json"

    @property
    def ref_path(self) -> Path:
        return self.data_dir / "ref_data.csv"

    @property
    def prod_path(self) -> Path:
        return self.data_dir / "prod_data.csv"

    @property
    def quarantine_path(self) -> Path:
        return self.data_dir / "prod_data.quarantine.csv"

    @property
    def state_path(self) -> Path:
        """Feedback-loop bookkeeping: rows trained up to, rows claimed by queued retrains, the job queue."""
        return self.artifacts_dir / "loop_state.json"

    @property
    def worker_dir(self) -> Path:
        """The background worker's lock, log and outcome files."""
        return self.artifacts_dir / "worker"

    @property
    def lock_path(self) -> Path:
        return self.artifacts_dir / "feedback.lock"

    @property
    def workspace_dir(self) -> Path:
        return self.reports_dir / "workspace"

    @property
    def runs_dir(self) -> Path:
        return self.reports_dir / "runs"

    @property
    def last_report_path(self) -> Path:
        """The outcome of the last report run (runner.run_report_notebook writes it, also on failure)."""
        return self.reports_dir / "last_report.json"

    def with_(self, **changes) -> "Settings":
        """A copy with some fields changed."""
        return replace(self, **changes)


def get_settings(home: str | Path | None = None, **overrides) -> Settings:
    """Settings from arguments, then environment (MUSHROOM_HOME, MUSHROOM_DATA, MUSHROOM_K, ...)."""
    root = Path(home or os.environ.get("MUSHROOM_HOME") or Path.cwd()).expanduser().resolve()
    env: dict = {}
    if os.environ.get("MUSHROOM_K"):
        env["k"] = int(os.environ["MUSHROOM_K"])
    if os.environ.get("MUSHROOM_SEED"):
        env["seed"] = int(os.environ["MUSHROOM_SEED"])
    keep = os.environ.get("MUSHROOM_REPORTS_KEEP", "").strip()
    if keep:
        if not keep.isdigit():
            raise ValueError(f"MUSHROOM_REPORTS_KEEP must be a whole number of reports to keep, not {keep[:40]!r}")
        env["reports_keep"] = int(keep)
    env["report_on_promote"] = _env_bool("MUSHROOM_REPORT_ON_PROMOTE", True)
    env["data_source"] = os.environ.get("MUSHROOM_DATA") or None
    for name, key in (("MUSHROOM_WORKER_IDLE", "worker_idle_seconds"), ("MUSHROOM_RETRAIN_TIMEOUT", "retrain_timeout")):
        if os.environ.get(name):
            env[key] = float(os.environ[name])
    env.update({k: v for k, v in overrides.items() if v is not None})
    if env.get("k", 10) < 1:
        raise ValueError("K (rows between retrains) must be at least 1")
    if env.get("reports_keep", 50) < 1:
        raise ValueError("MUSHROOM_REPORTS_KEEP (reports kept) must be at least 1")
    return Settings(home=root, **env)
