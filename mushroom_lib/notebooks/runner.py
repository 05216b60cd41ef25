"""Run the project's notebooks with papermill (train.ipynb, report.ipynb) and keep the executed copies.

Executed copies go to ``reports/runs/<UTC time>-<kind>-<model version>.ipynb``. The kernel is always
this interpreter (the venv's python), whatever kernelspecs the machine has: a user-level ``python3``
kernelspec pointing at another Python cannot hijack the run, and a clean machine needs no
``ipykernel install`` (ipykernel must be importable here, which the project's dependencies ensure).

The notebooks are found, in order: ``$MUSHROOM_NOTEBOOKS``; the package ``mushroom_lib.notebooks.files``
through importlib.resources (the checkout's ``notebooks/`` folder, which setup.py maps there: in a checkout
or an editable install that folder itself, in a wheel or the image its copy in site-packages).
MUSHROOM_HOME does not matter: the notebooks get the home as a parameter.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..core.fileio import package_folder, read_json
from ..core.settings import Settings, get_settings
from ..core.vocab import utc_iso, utc_stamp
from ..registry.versions import Registry
from . import run_files

TRAIN, REPORT, EXPLORATION = "train", "report", "exploration"
PACKAGED = "mushroom_lib.notebooks.files"


from ..core.errors import NotebookError  # noqa: E402,F401 (defined in errors.py; kept importable here)


# ------------------------------------------------------------------------------------------ locating
def notebook_dirs(settings: Settings | None = None) -> list[Path]:
    """Folders searched for the notebooks, in order (MUSHROOM_NOTEBOOKS first)."""
    folder = (settings or get_settings()).notebooks_dir
    return ([folder.expanduser()] if folder else []) + [package_folder(PACKAGED)]


def notebook_path(kind: str, settings: Settings | None = None) -> Path:
    """Path of notebooks/<kind>.ipynb (train, report or exploration)."""
    for folder in notebook_dirs(settings):
        path = folder / f"{kind}.ipynb"
        if path.is_file():
            return path
    looked = ", ".join(str(d) for d in notebook_dirs(settings))
    raise NotebookError(f"{kind}.ipynb not found (looked in {looked}); set MUSHROOM_NOTEBOOKS to the folder "
                        "holding the project's notebooks")


def notebook_parameters(path: Path) -> dict:
    """The parameters of a notebook's ``parameters`` cell (name -> default as written)."""
    with _lean_jsonschema():
        import papermill as pm  # lazy: papermill and nbformat (~1 s); see _lean_jsonschema

    return {name: p["default"] for name, p in pm.inspect_notebook(str(path)).items()}


# ------------------------------------------------------------------------------------------ kernel
def kernel_manager_class(run_dir: Path | None = None):
    """An AsyncKernelManager whose kernel is this interpreter running ipykernel (DO_NOT_TRACK set, IPC).

    The IPC sockets and the connection file live in ``run_dir``, a private folder of this run (a new
    temporary folder when None): jupyter_client's default names them ``kernel-ipc-1..5`` in the kernel's
    working directory (the home), picking numbers by which files exist, so two reports started together
    on one home bound the same sockets ("Invalid Signature", then "Kernel didn't respond").
    """
    # lazy: the Jupyter stack (~0.3 s) only when a notebook runs
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec
    from traitlets import default

    folder = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="mushroom-kernel-"))

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self):
            return "ipc"  # Unix sockets in a private folder: local only, no unencrypted TCP port

        @default("ip")
        def _ip_default(self):
            return str(folder / "kernel-ipc")

        @default("connection_file")
        def _connection_file_default(self):
            return str(folder / "kernel.json")

        @property
        def kernel_spec(self):
            if self._kernel_spec is None:
                spec = get_kernel_dict()  # argv = [sys.executable, -m, ipykernel_launcher, -f, {connection_file}]
                self._kernel_spec = KernelSpec(resource_dir=RESOURCES, name="python3",
                                               env={"DO_NOT_TRACK": "1"}, **spec)
            return self._kernel_spec

    return ThisPythonKernelManager


# ------------------------------------------------------------------------------------------ running
@contextlib.contextmanager
def _lean_jsonschema():
    """Import papermill without jsonschema's optional IRI checker (rfc3987_syntax).

    nbformat imports jsonschema, whose format module imports rfc3987_syntax when installed (it comes with
    jupyter-events); that compiles a Lark grammar at import, about 1 s of CPU on every `mushroom report`,
    and notebooks never hold IRI-formatted fields. Only when jsonschema is not imported yet (the CLI
    process); a process that already has it is left alone.
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        yield
        return
    sys.modules["rfc3987_syntax"] = None  # makes `import rfc3987_syntax` raise ImportError
    try:
        import jsonschema._format  # noqa: F401  (registers the format checkers it can; must run inside here)
    finally:
        if sys.modules.get("rfc3987_syntax", 0) is None:
            del sys.modules["rfc3987_syntax"]
    yield


def _free_name(folder: Path, stem: str) -> Path:
    path = folder / f"{stem}.ipynb"
    i = 1
    while path.exists():
        path = folder / f"{stem}-{i}.ipynb"
        i += 1
    return path


@dataclass
class Executed:
    """One run's executed copy, what the notebook reported (``outcome_path`` JSON) and its error if any."""

    path: Path | None
    outcome: dict | None = None
    error: BaseException | None = None


def _check_parameters(source: Path, parameters: dict) -> None:
    known = notebook_parameters(source)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise NotebookError(f"{source.name} has no parameter(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(known)}")


def run_notebook(settings: Settings, kind: str, parameters: dict, *, progress: bool = True, version=None,
                 outcome: bool = False) -> Executed:
    """Execute notebooks/<kind>.ipynb in a run of its own; never raises for the run's own failure.

    Leftovers of killed runs are removed first. The kernel's sockets and connection file sit in the run's
    private folder. With ``outcome`` the notebook gets ``outcome_path`` and its JSON is returned. The
    executed copy is named ``<UTC>-<kind>-<version>[-failed].ipynb``, version being the outcome's
    ``model_version`` when the notebook reported one, else ``version`` (a value or a callable).
    """
    with _lean_jsonschema():  # lazy: papermill (~1 s) only when a notebook runs
        import papermill as pm
        from papermill.exceptions import PapermillExecutionError

    source = notebook_path(kind, settings)
    _check_parameters(source, parameters)
    settings.home.mkdir(parents=True, exist_ok=True)
    run_files.clean_leftovers(settings)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    with run_files.Run(settings.runs_dir) as run:
        stamp = utc_stamp()
        work = settings.runs_dir / f"{stamp}-{kind}-running-{run.token}.ipynb"
        if outcome:
            parameters = {**parameters, "outcome_path": str(run.outcome_path)}
        error: BaseException | None = None
        try:
            pm.execute_notebook(str(source), str(work), parameters=parameters, progress_bar=progress,
                                cwd=str(settings.home), kernel_name="python3", language="python",
                                start_timeout=120, kernel_manager_class=kernel_manager_class(run.dir),
                                shutdown_kernel="immediate")  # every output is saved by then; a graceful
            # shutdown of a kernel holding Evidently takes seconds
        except PapermillExecutionError as exc:
            error = NotebookError(f"{source.name} failed ({exc.ename}: {exc.evalue})")
        except Exception as exc:  # noqa: BLE001 (the kernel died or never answered: recorded, then raised)
            error = exc
        reported = read_json(run.outcome_path, None) if outcome else None
    name = (reported or {}).get("model_version") or (version() if callable(version) else version)
    final = _free_name(settings.runs_dir, f"{stamp}-{kind}-{name or 'none'}" + ("-failed" if error else ""))
    if work.exists():
        os.replace(work, final)
    if isinstance(error, NotebookError):
        error = NotebookError(f"{error}; the executed copy is {final}")
    return Executed(final if final.exists() else None, reported, error)


def execute(settings: Settings, kind: str, parameters: dict, *, progress: bool = True,
            version=None) -> Path:
    """Execute notebooks/<kind>.ipynb with ``parameters``; return the executed copy in reports/runs/.

    ``version`` is the model version for the file name, or a callable returning it after the run.
    """
    done = run_notebook(settings, kind, parameters, progress=progress, version=version)
    if done.error is not None:
        raise done.error
    run_files.prune_history(settings)
    return done.path


def run_train_notebook(settings: Settings, n_components: int = 3, seed: int = 42, promote: bool = True,
                       **params) -> Path:
    """Run notebooks/train.ipynb (train, register, promote by parameter, plots); returns the executed copy.

    Other parameters (data_source, test_size, encoder, classifier, n_neighbors, n_estimators, force,
    sweep) pass through to the notebook; ``progress=False`` hides papermill's progress bar.
    """
    registry = Registry(settings)
    before = set(registry.versions())

    def new_version():
        made = [v for v in registry.versions() if v not in before]
        return made[-1] if made else None

    progress = bool(params.pop("progress", True))
    parameters = {"home": str(settings.home), "n_components": int(n_components), "seed": int(seed),
                  "promote": bool(promote), **params}
    return execute(settings, TRAIN, parameters, progress=progress, version=new_version)


def _cut(text: str | None, limit: int = 300) -> str | None:
    return text if not text or len(text) <= limit else text[: limit - 1] + "…"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return _cut(text if isinstance(exc, NotebookError) else f"{type(exc).__name__}: {text}")


def _report_record(started: str, version: str | None, done: Executed | None) -> dict:
    """The last_report.json record of a run (status decided by the caller)."""
    out = dict((done.outcome or {}) if done else {})
    return {"status": "failed", "model_version": out.get("model_version") or version,
            "rows": out.get("rows"), "started": started, "finished": utc_iso(),
            "reason": _cut(out.get("error") or " ".join(out.get("notes") or [])) or None,
            "html": out.get("html"), "notebook": str(done.path) if done and done.path else None,
            "result": out.get("result"), "snapshot_id": out.get("snapshot_id"),
            "dataset_drift": out.get("dataset_drift"), "drifted": out.get("drifted")}


def run_report_notebook(settings: Settings, progress: bool = True, **params) -> Path:
    """Run notebooks/report.ipynb for the champion; returns the executed copy in reports/runs/.

    Parameters (reference_path, production_path, workspace_path, project_name, output_html) pass
    through. Always writes reports/last_report.json atomically: status "ok" or "failed", model_version
    (the champion the report itself covered), rows, started, finished, reason, html, notebook (plus
    result, snapshot_id, dataset_drift, drifted); on failure it re-raises. Raises NotebookError before
    starting a kernel when there is no model, and when the notebook could not make a report (e.g. no
    reference rows). Keeps the newest ``settings.reports_keep`` HTML reports and notebooks.
    """
    started, version, done = utc_iso(), None, None
    try:
        version = Registry(settings).champion()
        if version is None:  # (not NoChampionError: importing service.py would pull in scikit-learn here)
            raise NotebookError(f"no trained model in {settings.artifacts_dir}; run `mushroom train` first")
        done = run_notebook(settings, REPORT, {"home": str(settings.home), **params}, progress=progress,
                            version=version, outcome=True)
        if done.error is not None:
            raise done.error
        if (done.outcome or {}).get("error") or done.outcome is None:
            raise NotebookError("no report was written: " + ((done.outcome or {}).get("error")
                                                            or "the notebook reported no outcome"))
    except BaseException as exc:
        record = _report_record(started, version, done)
        record["reason"] = _reason(exc)
        run_files.write_last_report(settings, record)
        run_files.prune_history(settings)
        raise
    run_files.write_last_report(settings, {**_report_record(started, version, done), "status": "ok"})
    run_files.prune_history(settings)
    if progress:  # what was written (or why not), under papermill's progress bar
        print(notebook_markdown(done.path), file=sys.stderr)
    return done.path


def notebook_markdown(path: Path) -> str:
    """The Markdown outputs of an executed notebook (the report's summary), as plain text."""
    import nbformat  # lazy: loaded with papermill by the run this follows; not at import

    nb = nbformat.read(str(path), as_version=4)
    parts = [out["data"]["text/markdown"] for cell in nb.cells if cell.cell_type == "code"
             for out in cell.get("outputs", []) if "text/markdown" in out.get("data", {})]
    return "\n".join(parts).replace("**", "")


def run_exploration_notebook(settings: Settings, progress: bool = True, **params) -> Path:
    """Run notebooks/exploration.ipynb against a home; returns the executed copy in reports/runs/."""
    return execute(settings, EXPLORATION, {"home": str(settings.home), **params}, progress=progress,
                   version=Registry(settings).champion())
