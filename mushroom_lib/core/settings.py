"""Every setting in one place: one pydantic-settings class, each ``MUSHROOM_*`` variable declared here once.

Nothing else in mushroom_lib reads a ``MUSHROOM_*`` variable. Paths all live under one home folder: the
``home`` argument, else ``MUSHROOM_HOME``, else the first folder at or above the working folder that holds the
project's data or models (so a notebook opened in ``notebooks/`` finds the project), else the working folder.
No file is read here: every process, the CLI's ``--help`` too, builds its settings first.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import one_line

ENV_PREFIX = "MUSHROOM_"
#: what marks a folder as a workbench home when it is found by walking up from the working folder
HOME_MARKERS = ("data/mushrooms.csv", "artifacts/models", "mushroom.db")


def _env(name: str, field: str | None = None) -> AliasChoices:
    """A field read from ``MUSHROOM_<name>`` (and given by its field name in code)."""
    return AliasChoices(field or name.lower(), ENV_PREFIX + name)


class Settings(BaseSettings):
    """Where files live, how the model is trained and guarded, and how the servers run."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, populate_by_name=True,
                                      extra="forbid", validate_default=False)

    # ------------------------------------------------------------------ the home and its data
    home: Path = Field(None, validate_default=True, description="project folder (MUSHROOM_HOME); see the module docstring")
    data_source: str | None = Field(None, validation_alias=_env("DATA", "data_source"),
                                    description="MUSHROOM_DATA: where `mushroom data` takes the dataset from")
    notebooks_dir: Path | None = Field(None, validation_alias=_env("NOTEBOOKS", "notebooks_dir"),
                                       description="MUSHROOM_NOTEBOOKS: a folder of notebooks used before the "
                                                   "packaged ones")
    # ------------------------------------------------------------------ training and the feedback loop
    k: int = Field(10, ge=1, description="MUSHROOM_K: feedback rows between retrains")
    seed: int = Field(42, description="MUSHROOM_SEED: the split's and the model's seed")
    test_size: float = Field(0.2, gt=0, lt=1, description="holdout share of the stratified split")
    n_components: int = Field(3, ge=1, le=22, description="PCA components")
    accuracy_margin: float = Field(0.005, ge=0, le=1,
                                   description="the gate refuses a candidate losing more holdout accuracy")
    keep_rejected_models: int = Field(3, ge=0, description="refused candidates keep their model file for the "
                                                            "newest N only")
    report_on_promote: bool = Field(True, description="MUSHROOM_REPORT_ON_PROMOTE: build an Evidently report in "
                                                      "the background after a promotion")
    reports_keep: int = Field(50, ge=1, description="MUSHROOM_REPORTS_KEEP: HTML reports and executed notebooks "
                                                     "(per kind) kept")
    worker_idle_seconds: float = Field(300.0, gt=0, validation_alias=_env("WORKER_IDLE", "worker_idle_seconds"),
                                       description="MUSHROOM_WORKER_IDLE: the background worker exits after "
                                                   "this long with nothing to do")
    retrain_timeout: float = Field(900.0, gt=0, description="MUSHROOM_RETRAIN_TIMEOUT: how long a waiting "
                                                            "submit_feedback waits for its retrain's outcome")
    upload_cap_bytes: int = Field(20 * 1024 * 1024, ge=1, description="dashboard upload and API body cap")
    debug: bool = Field(False, description="MUSHROOM_DEBUG: the CLI shows a bug's traceback")
    # ------------------------------------------------------------------ the dashboard server
    dashboard_token: str | None = Field(None, repr=False, description="MUSHROOM_DASHBOARD_TOKEN: every "
                                        "request to the dashboard must carry it")
    dashboard_max_kernels: int | None = Field(None, ge=1, le=1024, description="MUSHROOM_DASHBOARD_MAX_KERNELS:"
                                              " pages open at once (default: what fits in half the memory)")
    dashboard_pool: int | None = Field(None, ge=0, le=64, description="MUSHROOM_DASHBOARD_POOL: pre-heated "
                                       "kernels (default: half the kernel cap, at most 16)")
    dashboard_close_grace: int = Field(10, ge=1, le=3600, description="MUSHROOM_DASHBOARD_CLOSE_GRACE: seconds "
                                       "a closed page's kernel lives on")
    dashboard_fill_delay: int = Field(15, ge=0, le=3600, description="MUSHROOM_DASHBOARD_FILL_DELAY: seconds "
                                      "before the pool is refilled after use")
    dashboard_cull_seconds: int = Field(120, ge=2, le=86400, description="MUSHROOM_DASHBOARD_CULL_SECONDS: "
                                        "kernels whose page never connected are culled after this idle time")
    # ------------------------------------------------------------------ the monitoring UI
    ui_token: str | None = Field(None, repr=False, description="MUSHROOM_UI_TOKEN: `mushroom ui` serves "
                                 "Evidently behind a proxy that needs it on every request (required beyond "
                                 "loopback)")
    # ------------------------------------------------------------------ the REST API
    api_key: str | None = Field(None, repr=False, description="MUSHROOM_API_KEY: writes (and with "
                                "api_key_for_reads, reads) need the header X-API-Key with it")
    api_key_for_reads: bool = Field(False, description="MUSHROOM_API_KEY_FOR_READS: reads need the key too")
    api_max_bytes: int | None = Field(None, ge=1, description="MUSHROOM_API_MAX_BYTES: request body cap "
                                      "(default upload_cap_bytes)")
    api_max_connections: int = Field(1000, ge=1, le=100_000, description="MUSHROOM_API_MAX_CONNECTIONS: open "
                                     "connections per API worker; past it a new one gets 503 and is closed")
    api_max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024, description="MUSHROOM_API_MAX_HEADER_"
                                      "BYTES: a request line and headers over this many bytes get 431")
    api_max_headers: int = Field(100, ge=10, le=10_000, description="MUSHROOM_API_MAX_HEADERS: a request with "
                                 "more headers gets 431")
    api_header_timeout: float = Field(10.0, gt=0, le=3600, description="MUSHROOM_API_HEADER_TIMEOUT: seconds "
                                      "a request's line and headers may take to arrive (then 408, closed)")
    api_body_timeout: float = Field(30.0, gt=0, le=3600, description="MUSHROOM_API_BODY_TIMEOUT: seconds a "
                                    "request's body may take to arrive after its headers (then 408, closed)")
    api_keepalive_timeout: float = Field(5.0, gt=0, le=3600, description="MUSHROOM_API_KEEPALIVE_TIMEOUT: an "
                                         "idle kept-alive connection is closed after this many seconds")

    @field_validator("home", mode="before")
    @classmethod
    def _home(cls, value):
        return find_home() if value in (None, "") else Path(value).expanduser().resolve()

    @field_validator("data_source", "dashboard_token", "ui_token", "api_key", mode="before")
    @classmethod
    def _blank_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    # ------------------------------------------------------------------ paths under the home
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
        """The outcome of the last report run (the runner writes it, also on failure)."""
        return self.reports_dir / "last_report.json"

    def with_(self, **changes) -> "Settings":
        """A copy with some fields changed (validated like the original)."""
        return _build({**self.model_dump(), **changes})


def find_home(start: Path | None = None) -> Path:
    """The first folder at or above ``start`` (the working folder) holding the project's data or models; else
    ``start`` itself (a new home)."""
    here = (start or Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in HOME_MARKERS):
            return folder
    return here


def env_name(field: str) -> str:
    """The environment variable of a Settings field."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return next((c for c in alias.choices if isinstance(c, str) and c.startswith(ENV_PREFIX)), field)
    return ENV_PREFIX + field.upper()


def _build(values: dict) -> Settings:
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else "?"
        name = env_name(field) if field in Settings.model_fields else field
        value = str(err.get("input"))[:40]
        raise ValueError(one_line(f"setting {name}={value!r} is not valid: {err['msg']}")) from None


def get_settings(home: str | Path | None = None, **overrides) -> Settings:
    """Settings from arguments (None means "not given"), then the environment, then the defaults."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if home not in (None, ""):
        values["home"] = home
    return _build(values)
