"""Serving the page: Voila's configuration and the handlers that keep a room full of visitors bounded.

* one kernel per page, shut down ``close_grace`` seconds after its websocket closed (pool kernels never
  had one); no REST route stops a kernel (the page's own beforeunload call failed its XSRF check, and a
  valid one would let any client stop any page's kernel);
* at most ``max_kernels`` page kernels: past that a plain page says the workbench is full and retries;
* the kernel websocket speaks only the v1 subprotocol and drops control-channel and shutdown messages;
* 127.0.0.1 unless a token is given (then every request needs it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..core.fileio import package_folder
from ..core.ports import ensure_port_free
from ..core.settings import Settings, get_settings
from .handlers import one_refill_at_a_time, replace_handlers
from .values import WEBSOCKET_LIMIT

#: front-end extensions installed in the environment that this page never uses (less code to load)
UNUSED_EXTENSIONS = ("jupyterlab_pygments",)  # (bqplot stays: ipydatagrid needs it)
#: the page and its Voila template: the checkout's dashboards/ folder, shipped as this package (setup.py)
PAGE_PACKAGE = "mushroom_lib.dashboard.files"
TEMPLATE_NAME = "mushroom"
KERNEL_BUDGET_MIB = 300  # what one page's kernel may grow to (scoring a large upload included)
POOL_MAX = 16  # pre-heated kernels at most by default (MUSHROOM_DASHBOARD_POOL sets any number)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class DashboardRefused(ValueError):
    """A setting that would make the dashboard unsafe or unusable (one sentence)."""


def page_folder() -> Path:
    """The folder of app.ipynb and share/voila/templates/mushroom (importlib.resources; dashboards/ in a
    checkout, its copy in site-packages in a wheel or the image)."""
    return package_folder(PAGE_PACKAGE)


def notebook_path() -> Path:
    """The dashboard notebook, app.ipynb."""
    path = page_folder() / "app.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall mushroom-workbench (its wheel ships the page)")
    return path


def default_max_kernels() -> int:
    """Page kernels that fit in half of the memory available now (at least 2, at most 64)."""
    try:
        with open("/proc/meminfo") as fh:
            avail_kib = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return 8
    return max(2, min(64, avail_kib // 1024 // 2 // KERNEL_BUDGET_MIB))


def default_pool(max_kernels: int) -> int:
    """Pre-heated kernels: half the cap, at most POOL_MAX (a class arriving together takes a ready kernel each;
    an idle one holds ~140 MiB), at least 1."""
    return max(1, min(POOL_MAX, max_kernels // 2))


def dashboard_limits(settings: Settings) -> dict:
    """pool, max_kernels, close_grace, fill_delay and cull_idle_seconds from the settings (MUSHROOM_DASHBOARD_*)."""
    max_kernels = settings.dashboard_max_kernels or default_max_kernels()
    pool = settings.dashboard_pool if settings.dashboard_pool is not None else default_pool(max_kernels)
    return {"pool": pool, "max_kernels": max_kernels, "close_grace": settings.dashboard_close_grace,
            "fill_delay": settings.dashboard_fill_delay, "cull_idle_seconds": settings.dashboard_cull_seconds}


def check_host(host: str, token: str | None) -> None:
    """Anything but loopback needs a token."""
    if host not in LOOPBACK and not token:
        raise DashboardRefused(f"refusing to serve on {host} without a token: pass --token or set "
                               "MUSHROOM_DASHBOARD_TOKEN (every request will need it)")


def voila_config(port: int, *, host: str = "127.0.0.1", token: str | None = None, pool: int = 2,
                 max_kernels: int = 8, close_grace: int = 10, cull_idle_seconds: int = 120, fill_delay: float = 15.0):
    """The traitlets configuration ``serve`` runs Voila with."""
    from traitlets.config import Config

    c = Config()
    c.Voila.ip = host
    c.Voila.port = int(port)
    c.Voila.port_retries = 0
    c.Voila.open_browser = False
    c.Voila.token = token or None
    c.Voila.tornado_settings = {"websocket_max_message_size": WEBSOCKET_LIMIT,
                                "mushroom": {"max_kernels": int(max_kernels), "close_grace": int(close_grace),
                                             "pool": int(pool)}}
    c.VoilaConfiguration.template = TEMPLATE_NAME
    c.VoilaConfiguration.theme = "light"
    c.VoilaConfiguration.show_tracebacks = False
    c.VoilaConfiguration.preheat_kernel = pool > 0
    c.VoilaConfiguration.default_pool_size = int(pool)
    c.VoilaConfiguration.file_allowlist = []  # nothing next to the notebook is served
    c.VoilaConfiguration.extension_denylist = list(UNUSED_EXTENSIONS)
    # refill the pool after a burst, not during it: starting a kernel renders the notebook in the server
    # process, which blocks the websockets of the pages being served (all of a burst waited for it)
    c.VoilaKernelManager.fill_delay = float(fill_delay)
    # kernels whose page never connected (a tab closed while loading) are culled when idle
    c.MappingKernelManager.cull_idle_timeout = int(cull_idle_seconds)
    c.MappingKernelManager.cull_interval = max(1, min(60, int(cull_idle_seconds) // 4))
    c.MappingKernelManager.cull_connected = False
    c.MappingKernelManager.cull_busy = False
    return c


def _voila_class():
    from voila.app import Voila


    class MushroomVoila(Voila):
        """Voila with the handlers of :mod:`.handlers` in place of its kernel, shutdown and page handlers."""

        def init_handlers(self):
            return replace_handlers(super().init_handlers())

        def init_settings(self):
            settings = super().init_settings()
            one_refill_at_a_time(self.kernel_manager)
            return settings

    return MushroomVoila


def prepare_scoring_plan(settings: Settings) -> None:
    """Save the champion's scoring plan once here, so page kernels score without scikit-learn."""
    from ..scoring.loader import (  # lazy: the scorer stack loads when serving starts
        champion_scorer,
        remember_plan,
    )

    remember_plan(settings, champion_scorer(settings))


def serve(settings: Settings | None = None, port: int = 8866, *, host: str = "127.0.0.1",
          token: str | None = None) -> int:
    """Serve dashboards/app.ipynb with Voila on host:port until interrupted. Returns an exit code."""
    from ..registry.versions import Registry
    from ..service import NoChampionError

    settings = settings or get_settings()
    token = token or settings.dashboard_token
    check_host(host, token)
    limits = dashboard_limits(settings)
    if Registry(settings).champion() is None:
        raise NoChampionError(f"no trained model in {settings.artifacts_dir}; run `mushroom train` first")
    nb = notebook_path()
    ensure_port_free(port)
    prepare_scoring_plan(settings)
    # kernels inherit this environment: the home decides which models and data the page uses
    os.environ["MUSHROOM_HOME"] = str(settings.home)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    jp = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(page_folder() / "share") + (os.pathsep + jp if jp else "")
    cfg = voila_config(port, host=host, token=token, **limits)
    shown = "127.0.0.1" if host in LOOPBACK else host
    print(f"mushroom dashboard: http://{shown}:{port}/{'?token=…' if token else ''} (home {settings.home}; "
          f"{json.dumps(limits)}; Ctrl-C stops)", file=sys.stderr, flush=True)
    app = _voila_class()(config=cfg)
    app.initialize([str(nb)])
    app.start()
    return 0
